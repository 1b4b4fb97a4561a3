-- wrk script: one request per (device, round) for devices BENCH-0 … BENCH-(DEVICES-1), devices first, then rounds.
-- METHOD (default GET), PATH and BODY are templates: {device} is the device's index, {round} the round,
-- {percent} the round modulo 101. The default is the command poll, GET /commands/BENCH-{device}/poll.
-- Each wrk thread takes the requests whose sequence number is congruent to its id; with an even DEVICES and two
-- threads a device's requests stay on one thread, in order. With ROUNDS set, a thread stops after the last round
-- (each request is sent once), but wrk runs on until its -d ends, so a rate is only right while rounds remain;
-- without ROUNDS, the rounds go on.
local counter = 0
function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
end

function init(args)
   devices = tonumber(os.getenv("DEVICES") or "4000")
   rounds = tonumber(os.getenv("ROUNDS") or "0")
   threads = tonumber(os.getenv("WRK_THREADS") or "2")
   method = os.getenv("METHOD") or "GET"
   path = os.getenv("PATH_TEMPLATE") or "/commands/BENCH-{device}/poll"
   body = os.getenv("BODY_TEMPLATE")
   headers = {}
   if body then headers["Content-Type"] = "application/json" end
   sequence = id
end

local function fill(template, device, round)
   return (template:gsub("{device}", tostring(device)):gsub("{round}", tostring(round))
      :gsub("{percent}", tostring(round % 101)))
end

function request()
   local device = sequence % devices
   local round = math.floor(sequence / devices)
   if rounds > 0 and round >= rounds then
      wrk.thread:stop()
   end
   sequence = sequence + threads
   return wrk.format(method, fill(path, device, round), headers, body and fill(body, device, round) or nil)
end
