-- wrk script: replays pre-signed uploads written by `ecowatt bench make-uploads`.
-- Each wrk thread takes the devices whose index is congruent to its id, so one device's uploads stay in order.
local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local file = os.getenv("UPLOADS") or "uploads.tsv"
   local total = tonumber(os.getenv("WRK_THREADS") or "2")
   -- CLOSE=1: a new TCP connection per request, as the firmware's HTTPClient does.
   local headers = { ["Content-Type"] = "application/json" }
   if os.getenv("CLOSE") == "1" then headers["Connection"] = "close" end
   requests = {}
   local index = 0
   for line in io.lines(file) do
      local device = tonumber(line:match("BENCH%-(%d+)"))
      if device % total == id then
         local path, body = line:match("^([^\t]+)\t(.*)$")
         table.insert(requests, wrk.format("POST", path, headers, body))
      end
   end
   position = 0
end

function request()
   position = position + 1
   if position > #requests then
      wrk.thread:stop()
   end
   return requests[position]
end

response = function(status, headers, body)
   if status ~= 200 then
      failures = (failures or 0) + 1
   end
end
