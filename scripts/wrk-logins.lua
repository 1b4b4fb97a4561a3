-- wrk script: a login flood (issue 19). Wrong passwords for a few names; every answer should be 401 (a hash was
-- checked) or 429 (the hashing queue was full, or the address is backing off). LOGIN_DELAY_MS paces each connection
-- (an attacker's rate instead of as fast as the server answers).
local names = { "ada", "bob", "eve", "mallory" }
local position = 0
local pause = tonumber(os.getenv("LOGIN_DELAY_MS") or "0")

function request()
   position = position % #names + 1
   return wrk.format("POST", "/api/v1/auth/login", { ["Content-Type"] = "application/json" },
      '{"name":"' .. names[position] .. '","password":"not the password ' .. position .. '"}')
end

function delay()
   return pause
end
