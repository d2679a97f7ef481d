-- The same page of 100 expanded users, again and again (serialized users
-- come from the fragment cache after the first request).
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer bench-key"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"limit":100,"expand":["productAccess","groups","platformRoles"]}'
