-- wrk script: uploads the server must refuse, in rotation (bad MAC, replayed nonce, malformed body).
-- REJECTS names a file of `path<TAB>body` lines (scripts/bench.sh writes it); every response should be a 4xx.
function init(args)
   local headers = { ["Content-Type"] = "application/json" }
   requests = {}
   for line in io.lines(os.getenv("REJECTS") or "rejects.tsv") do
      local path, body = line:match("^([^\t]+)\t(.*)$")
      table.insert(requests, wrk.format("POST", path, headers, body))
   end
   position = 0
end

function request()
   position = position % #requests + 1
   return requests[position]
end

response = function(status, headers, body)
   if status < 400 or status >= 500 then
      unexpected = (unexpected or 0) + 1
   end
end
