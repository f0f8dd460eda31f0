-- wrk script: POST /batch with 100 plays per request (the same bodies as play.lua),
-- 1,000 users taking turns; 50 distinct bodies built once, then cycled.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local EVENTS = 100
local bodies = {}
local counter = 0
for b = 1, 50 do
  local events = {}
  for e = 1, EVENTS do
    counter = counter + 1
    events[e] = string.format(
      '{"type":"play","body":{"clientId":"bench-user-%04d","clipId":%d,"method":"Stream","preview":false,"offline":false,"timestamp":"2026-11-26T10:00:00Z"}}',
      counter % 1000, 1 + counter % 5000)
  end
  bodies[b] = '{"events":[' .. table.concat(events, ",") .. ']}'
end
local turn = 0
request = function()
  turn = turn % #bodies + 1
  return wrk.format(nil, "/batch", nil, bodies[turn])
end
