-- wrk: appends of one event with a 256-byte payload to annal serve, spread over 1,000 streams.
-- ANNAL_BENCH_QUERY is added to each path ("?durable=false": answered once sequenced).
local query = os.getenv("ANNAL_BENCH_QUERY") or ""
local body = '{"type":"Bench","data":"' .. string.rep("x", 254) .. '"}'  -- the payload: 256 bytes of JSON
local headers = {["Content-Type"] = "application/json"}
local sent = 0

request = function()
  sent = sent + 1
  return wrk.format("POST", "/streams/bench-" .. (sent % 1000) .. query, headers, body)
end

-- Anything but 201/202 is counted by wrk as a non-2xx answer and printed; the run is then void.
