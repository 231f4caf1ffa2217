-- requests.lua: wrk sends precomputed requests, one per line of a file, so
-- that the generator costs the same on flashgate and on the bare server.
--
--   wrk -t2 -c128 -d10s -s loadtest/wrk/requests.lua URL -- FILE THREADS
--
-- FILE holds one request per line, tab-separated: METHOD, PATH, TOKEN (may
-- be empty) and BODY (may be empty). Thread k of THREADS takes lines k,
-- k+THREADS, ... and cycles through them. At the end the script prints one
-- line, "wrk-result {json}", with the request count, the duration, the
-- latency percentiles and the count of each HTTP status.

local threads = {}
local next_id = 0

function setup(thread)
	thread:set("id", next_id)
	next_id = next_id + 1
	table.insert(threads, thread)
end

local reqs = {}
local i = 0
statuses = {} -- a global, so done() can read it with thread:get

function init(args)
	local file, nthreads = args[1], tonumber(args[2])
	local id = wrk.thread:get("id")
	local n = 0
	for line in io.lines(file) do
		if n % nthreads == id then
			local method, path, token, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
			local headers = {}
			if token ~= "" then
				headers["Authorization"] = "Bearer " .. token
			end
			if body ~= "" then
				headers["Content-Type"] = "application/json"
			else
				body = nil
			end
			reqs[#reqs + 1] = wrk.format(method, path, headers, body)
		end
		n = n + 1
	end
	if #reqs == 0 then
		error("no requests for thread " .. id .. " in " .. file)
	end
end

function request()
	i = i + 1
	if i > #reqs then
		i = 1
	end
	return reqs[i]
end

function response(status, headers, body)
	statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
	local counts = {}
	for _, t in ipairs(threads) do
		for status, n in pairs(t:get("statuses")) do
			counts[status] = (counts[status] or 0) + n
		end
	end
	local parts = {}
	for status, n in pairs(counts) do
		parts[#parts + 1] = string.format('"%d":%d', status, n)
	end
	local e = summary.errors
	io.write(string.format(
		'wrk-result {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
		'"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"statuses":{%s}}\n',
		summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
		e.connect, e.read, e.write, e.timeout, table.concat(parts, ",")))
end
