-- wrk script: one POST, the same bytes every time, built once (no Lua runs per request, as with a plain GET).
-- POST_FILE names a file of one `path<TAB>body` line; the URL given to wrk is only the host.
local line = io.open(os.getenv("POST_FILE") or "post.tsv"):read("*l")
local path, body = line:match("^([^\t]+)\t(.*)$")
wrk.method = "POST"
wrk.path = path
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
