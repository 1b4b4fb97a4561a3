-- wrk script: GET /ota/chunk/<DEVICE>?version=<VERSION>&chunk=<n>, cycling n through 0..TOTAL-1.
-- The device must have an active session (POST /ota/initiate/<DEVICE> first).
function init(args)
   device = os.getenv("DEVICE") or "BENCH-CHUNKS"
   version = os.getenv("VERSION") or "9.0.0"
   total = tonumber(os.getenv("TOTAL") or "512")
   index = 0
end

function request()
   local path = "/ota/chunk/" .. device .. "?version=" .. version .. "&chunk=" .. index
   index = (index + 1) % total
   return wrk.format("GET", path)
end
