-- wrk script: a login flood (issue 19). Wrong passwords for a few names; every answer should be 401 (a hash was
-- checked) or 429 (the hashing queue was full, or the address is backing off).
local names = { "ada", "bob", "eve", "mallory" }
local position = 0

function request()
   position = position % #names + 1
   return wrk.format("POST", "/api/v1/auth/login", { ["Content-Type"] = "application/json" },
      '{"name":"' .. names[position] .. '","password":"not the password ' .. position .. '"}')
end
