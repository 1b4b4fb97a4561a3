-- wrk script: command polls from many devices (GET /commands/BENCH-<i>/poll), cycling through DEVICES ids.
-- Each wrk thread polls its own devices (index congruent to its id), so a device's polls never overlap.
local counter = 0
function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
end

function init(args)
   devices = tonumber(os.getenv("DEVICES") or "4000")
   threads = tonumber(os.getenv("WRK_THREADS") or "2")
   index = id
end

function request()
   local path = "/commands/BENCH-" .. index .. "/poll"
   index = index + threads
   if index >= devices then index = id end
   return wrk.format("GET", path)
end
