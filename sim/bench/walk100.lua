-- Walk the users/search cursor chain, 100 expanded users per page, and
-- start over at the end: on a big org most pages are serialized afresh.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer bench-key"
wrk.headers["Content-Type"] = "application/json"
local first = '{"limit":100,"expand":["productAccess","groups","platformRoles"]}'
local body = first

request = function()
  return wrk.format(nil, nil, nil, body)
end

response = function(status, headers, resp)
  local nxt = string.match(resp, '"next":"([^"]+)"')
  if nxt then
    body = '{"cursor":"' .. nxt .. '"}'
  else
    body = first
  end
end
