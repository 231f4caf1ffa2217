-- requests.lua: wrk sends precomputed requests, one per line of a file, so
-- that the generator costs the same on flashgate and on the bare server.
--
--   wrk -t2 -c128 -d10s -s loadtest/wrk/requests.lua URL -- FILE THREADS
--
-- FILE holds one request per line, tab-separated: METHOD, PATH, TOKEN (may
-- be empty) and BODY (may be empty). THREADS must be wrk's -t. Thread k
-- takes lines k, k+THREADS, ... and cycles through them; no thread sends
-- before every thread has read its lines (see the gate). At the end the script prints one
-- line, "wrk-result {json}", with the request count, the duration, the
-- latency percentiles and the count of each HTTP status.

local threads = {}
local next_id = 0

-- The gate: wrk runs each thread's init in its main thread, one after the
-- other, and starts a thread as soon as its own init is done, but starts
-- its clock only after the last one. A thread that sent at once would send
-- for as long as the later inits take (about a second for a 250,000-line
-- file), uncounted by the clock: a 3-second run read 15-25% fast. So the
-- main thread makes a file before the first init, the last init removes
-- it, and no thread sends a request while it is there. (wrk also calls
-- thread 0's request() once in its main thread, right after that thread's
-- init, to check the request; that call must not wait.)
local gate
local checked = false

function setup(thread)
	if next_id == 0 then
		gate = os.tmpname()
	end
	thread:set("id", next_id)
	thread:set("gate", gate)
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
	gate = wrk.thread:get("gate")
	checked = id ~= 0
	if id == nthreads - 1 then
		os.remove(gate)
		gate = nil
	end
end

-- waitGate returns once the last thread's init has removed the gate file,
-- or after 30 s, when THREADS is more than wrk's -t and no init ever will.
local function waitGate()
	local deadline = os.time() + 30
	while true do
		local f = io.open(gate, "r")
		if not f then
			break
		end
		f:close()
		if os.time() > deadline then
			io.stderr:write("requests.lua: the last thread never started; is THREADS wrk's -t?\n")
			os.remove(gate)
			break
		end
		os.execute("sleep 0.005")
	end
	gate = nil
end

function request()
	if gate then
		if checked then
			waitGate()
		end
		checked = true
	end
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
