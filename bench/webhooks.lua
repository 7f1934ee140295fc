-- wrk script: POST pre-signed Linq webhooks to /webhooks/linq.
-- Usage: wrk -s bench/webhooks.lua URL -- REQUESTS_FILE THREADS
-- Each line of REQUESTS_FILE is "webhook-id<TAB>webhook-timestamp<TAB>webhook-signature<TAB>body".
-- Thread i takes lines i, i+THREADS, ...: no event is sent twice unless the
-- file runs out, which `done` reports as wraps (duplicates are cheaper to
-- answer, so a wrapped run would flatter the figure).

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  requests = {}
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == tid then
      local id, ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", "/webhooks/linq", {
        ["Content-Type"] = "application/json",
        ["webhook-id"] = id,
        ["webhook-timestamp"] = ts,
        ["webhook-signature"] = sig,
      }, body)
    end
    i = i + 1
  end
  index = 0
  wraps = 0
  not_ok = 0
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
    wraps = wraps + 1
  end
  return requests[index]
end

function response(status, headers, body)
  if status ~= 200 then
    not_ok = not_ok + 1
  end
end

function done(summary, latency, requests)
  local wrapped, bad = 0, 0
  for _, thread in ipairs(threads) do
    wrapped = wrapped + thread:get("wraps")
    bad = bad + thread:get("not_ok")
  end
  io.write(string.format("RESULT requests=%d seconds=%.3f not_ok=%d wraps=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, bad, wrapped,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
