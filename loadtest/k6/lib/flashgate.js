// Shared by the flashgate k6 scenarios: settings from the environment, a
// small client of the public API (docs/openapi.yaml) and tokens.
// Only k6's built-in modules are used.
import http from 'k6/http';
import { sleep } from 'k6';

// env returns the variable, or def when it is unset or empty.
export function env(name, def) {
  const v = __ENV[name];
  return v === undefined || v === '' ? def : v;
}

// num reads a number from the environment and refuses nonsense at start-up,
// naming the variable, rather than letting a typo turn into a silent NaN.
export function num(name, def, min, max, integer = true) {
  const raw = env(name, undefined);
  if (raw === undefined) return def;
  const v = Number(raw);
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    throw new Error(`${name}=${raw}: want ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`);
  }
  return v;
}

// Defaults are the addresses `make run` listens on; nothing else is assumed.
export const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const WS_URL = env('WS_URL', 'ws://127.0.0.1:8081/ws');
const API = `${BASE_URL}/api/v1`;

// Only 5xx and transport errors count in http_req_failed: 409, 410, 429 and
// friends are answers the API promises, not failures of the gateway.
export function countOnly5xxAsFailed() {
  http.setResponseCallback(http.expectedStatuses({ min: 200, max: 499 }));
}

// api calls /api/v1<path> on the gateway (or at opts.base: the internal
// listener, for admin routes). name groups requests whose path carries an id
// in k6's metrics, so a run does not create one time series per ticket.
export function api(method, path, opts = {}) {
  const headers = Object.assign({}, opts.headers);
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  let body = null;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  const base = opts.base ? `${opts.base.replace(/\/+$/, '')}/api/v1` : API;
  return http.request(method, base + path, body, {
    headers,
    tags: { name: opts.name || `${method} ${path}` },
    timeout: '10s',
  });
}

// json is the parsed body, or null when it is not JSON (a transport error).
export function json(res) {
  try {
    return JSON.parse(res.body);
  } catch (_) {
    return null;
  }
}

// code is the API error code of a non-2xx answer ("sold_out", ...).
export function code(res) {
  const b = json(res);
  return b && b.error && b.error.code ? b.error.code : '';
}

// retryAfterMs honours the Retry-After header of 429 and 503 answers.
export function retryAfterMs(res) {
  const s = Number(res.headers['Retry-After']);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 1000;
}

// setupCall is api for setup() and teardown(): it waits out 429 and 503 (the
// public routes share one per-IP limit, and every k6 request comes from one
// address) and a transport error, a few times, with plain sleep().
export function setupCall(method, path, opts = {}) {
  let res;
  for (let attempt = 0; attempt < 6; attempt++) {
    res = api(method, path, opts);
    if (res.status !== 429 && res.status !== 503 && res.status !== 0) return res;
    sleep(res.status === 0 ? 1 : retryAfterMs(res) / 1000);
  }
  return res;
}

// expect throws, with the answer, when a setup or teardown step fails: a
// load test that cannot set itself up must stop, not measure nonsense.
export function expect(res, status, what) {
  if (res.status !== status) {
    throw new Error(`${what}: ${res.request.method} ${res.url} answered ${res.status} ${res.body || res.error}`);
  }
  return json(res);
}

// checkServices fails early, with advice, when nothing listens.
export function checkServices() {
  const wsHealth = WS_URL.replace(/^ws/, 'http').replace(/^(https?:\/\/[^/]+).*$/, '$1/healthz');
  for (const [what, url, setting] of [['gateway', `${BASE_URL}/healthz`, 'BASE_URL'], ['ws', wsHealth, 'WS_URL']]) {
    const res = http.get(url, { tags: { name: `GET /healthz (${what})` }, timeout: '5s' });
    if (res.status !== 200) {
      throw new Error(`the ${what} at ${url} answered ${res.status || res.error}: start it with \`make run\`, or point ${setting} at it`);
    }
  }
}

// mintTokens gets tokens for users first..first+count-1 from the dev route,
// 10000 a request. A gateway without the range form ignores "count" and
// answers {"token"} for the first user only; then the rest are minted one by
// one (slow: that route is behind the per-IP limit).
export function mintTokens(first, count) {
  const users = [];
  let single = false;
  while (users.length < count) {
    const id = first + users.length;
    const n = Math.min(10000, count - users.length);
    const res = setupCall('POST', '/dev/token', { body: single ? { user_id: id } : { user_id: id, count: n } });
    if (res.status === 404) {
      throw new Error('POST /api/v1/dev/token answered 404: the gateway is not in dev mode. ' +
        'Make tokens with `flashgate token --users A-B --format csv --out tokens.csv` and set TOKENS_FILE.');
    }
    const b = expect(res, 200, 'minting tokens');
    if (b && Array.isArray(b.tokens)) {
      if (b.tokens.length !== n) throw new Error(`asked for ${n} tokens from user ${id}, got ${b.tokens.length}`);
      for (const t of b.tokens) users.push({ id: t.user_id, token: t.token });
    } else if (b && b.token) {
      single = true;
      users.push({ id, token: b.token });
    } else {
      throw new Error(`POST /api/v1/dev/token: no token in ${res.body}`);
    }
  }
  return users;
}

// mintToken gets one token from the dev route (admin for event creation).
export function mintToken(userId, admin) {
  const res = setupCall('POST', '/dev/token', { body: { user_id: userId, admin: !!admin } });
  if (res.status === 404) {
    throw new Error(`POST /api/v1/dev/token answered 404 (not dev mode): give user ${userId}'s token in the environment instead`);
  }
  const b = expect(res, 200, 'minting a token');
  return b.token;
}

// userBase is where this run's user ids start: USER_BASE, or a base drawn
// from the clock so that each run has users nobody used before (a user buys
// an event once). 100000 ids per second of wall time, far below 2^53.
export function userBase() {
  const b = env('USER_BASE', undefined);
  if (b !== undefined) return num('USER_BASE', 0, 0, 2 ** 52);
  return Math.floor(Date.now() / 1000) * 100000;
}

// parseTokensCsv reads the CSV of `flashgate token --users A-B --format csv`:
// a header naming user_id first, then "user_id,token" lines.
export function parseTokensCsv(text, path) {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length === 0 || !/^\s*user_id\s*,/i.test(lines[0])) {
    throw new Error(`${path}: want the CSV of \`flashgate token --users A-B --format csv\` (header user_id,token)`);
  }
  return lines.slice(1).map((line, i) => {
    const comma = line.indexOf(',');
    const id = Number(line.slice(0, comma));
    const token = line.slice(comma + 1).trim();
    if (comma < 0 || !Number.isSafeInteger(id) || id <= 0 || token === '') {
      throw new Error(`${path}:${i + 2}: want user_id,token`);
    }
    return { id, token };
  });
}

// wsParams authenticates a WebSocket with the header rather than ?token=, so
// that the URL, which k6 tags its metrics with, is the same for every user.
export function wsParams(token, role) {
  return { headers: { Authorization: `Bearer ${token}` }, tags: { role } };
}

// frame parses a server frame; anything else is null.
export function frame(data) {
  try {
    const m = JSON.parse(data);
    return m && typeof m.type === 'string' ? m : null;
  } catch (_) {
    return null;
  }
}

// rfc3339 formats a time as the API wants it, whole seconds in UTC.
export function rfc3339(ms) {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
