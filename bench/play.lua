-- wrk script: single-event POST /play with a JSON body, one user per connection-ish.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- The relay key of bench/tenants.toml (a bench-only key: its hash is in that file).
wrk.headers["Authorization"] = "Bearer rk_bench-key-not-a-secret"
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format(
    '{"clientId":"bench-user-%04d","clipId":%d,"method":"Stream","preview":false,"offline":false,"timestamp":"2026-11-26T10:00:00Z"}',
    counter % 1000, 1 + counter % 5000)
  return wrk.format(nil, "/play", nil, body)
end
