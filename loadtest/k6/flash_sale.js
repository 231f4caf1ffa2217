// flash_sale.js: a crowd of distinct buyers rushes one flash-sale event.
//
// setup() creates an event (or takes EVENT_ID) that opens LEAD_S seconds
// later, and mints one token per buyer. Buyers then arrive at a rate that
// ramps up to RATE a second: each iteration is one new user who connects the
// WebSocket, waits for the sale to open if it has not, buys, waits for the
// ticket's outcome on the socket (reading GET /tickets/{ticket} if the push
// is late or the socket is gone), then pays or cancels (PAY_RATIO).
// teardown() reads every buyer's orders back and counts oversold units and
// users holding two live orders of the event.
//
// The thresholds fail the run when the API breaks a promise: a 5xx, a 202
// ticket left undecided, an answer the API does not promise, more live
// orders than stock, a user with two. See loadtest/README.md.
//
//   k6 run loadtest/k6/flash_sale.js                  (against `make run`)
//   RATE=200 STOCK=500 k6 run loadtest/k6/flash_sale.js
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';
import { WebSocket } from 'k6/websockets';
import { setTimeout, clearTimeout } from 'k6/timers';
import { Counter, Trend } from 'k6/metrics';
import {
  env, num, WS_URL, countOnly5xxAsFailed, api, json, code, retryAfterMs, setupCall, expect,
  checkServices, mintTokens, mintToken, userBase, parseTokensCsv, wsParams, frame, rfc3339,
} from './lib/flashgate.js';

const RATE = num('RATE', 50, 1, 100000); // buyers arriving per second at the peak
const RAMP_S = num('RAMP_S', 5, 1, 600); // from 0 to RATE
const HOLD_S = num('HOLD_S', 20, 0, 600); // then at RATE
const LEAD_S = num('LEAD_S', RAMP_S, 0, 3600); // the sale opens this long after setup()
const STOCK = num('STOCK', 100, 1, 10000000);
const PRICE = num('PRICE', 9900, 0, 1e12);
const PAY_RATIO = num('PAY_RATIO', 0.5, 0, 1, false);
const DECIDE_S = num('DECIDE_S', 30, 1, 600); // a 202 ticket must be decided within this
const POLL_AFTER_S = num('POLL_AFTER_S', 5, 0, 600); // no push by then: read the ticket
const EVENT_ID = num('EVENT_ID', 0, 1, 2 ** 53);
const ADMIN_USER = num('ADMIN_USER', 1, 1, 2 ** 53);
// Admin routes are served on the gateway's internal listener only.
const ADMIN_URL = env('ADMIN_URL', 'http://127.0.0.1:9090');
const TOKENS_FILE = env('TOKENS_FILE', '');

// The most iterations the stages can start (the area under the rate), plus a
// little: one user and token each.
const PLANNED = Math.ceil(RATE * (RAMP_S / 2 + HOLD_S) * 1.02) + 10;
const USERS = num('USERS', PLANNED, 1, 1000000);
// Buyers who arrive before the sale opens wait for it, each holding a VU and
// a socket: all of them, plus two seconds of arrivals, are in flight at the
// opening. Past MAX_VUS k6 drops arrivals (dropped_iterations).
const PRE_VUS = num('PRE_VUS', Math.min(USERS, Math.ceil(arrivalsBy(LEAD_S) + 2 * RATE)), 1, 100000);
const MAX_VUS = num('MAX_VUS', Math.min(USERS, PRE_VUS + 4 * RATE), PRE_VUS, 100000);

// arrivalsBy is how many buyers the stages start in their first t seconds.
function arrivalsBy(t) {
  const ramp = Math.min(t, RAMP_S);
  return (RATE * ramp * ramp) / (2 * RAMP_S) + RATE * Math.max(0, Math.min(t, RAMP_S + HOLD_S) - RAMP_S);
}

const POLL_EVERY_MS = 1000;
const CONNECT_TIMEOUT_MS = 5000;
const JITTER_MS = 250; // buyers press "buy" within this of the opening
const NOT_STARTED_RETRIES = 40; // 409 not_started (clock skew): retry every 250 ms

// A tokens file is read once into memory shared by all VUs; open() only
// works here, in the init context, and resolves a relative path against
// this script's directory (`make loadtest` passes an absolute one).
const FILE_USERS = TOKENS_FILE ? new SharedArray('tokens', () => parseTokensCsv(open(TOKENS_FILE), TOKENS_FILE)) : null;

countOnly5xxAsFailed();

const accepted = new Counter('accepted'); // 202
const soldOut = new Counter('sold_out'); // 410
const rateLimited = new Counter('rate_limited'); // 429
const notStarted = new Counter('not_started'); // 409 not_started, retried
const unexpected = new Counter('unexpected_answers'); // anything the API does not promise here
const ticketsSucceeded = new Counter('tickets_succeeded');
const ticketsFailed = new Counter('tickets_failed'); // tagged with the reason
const ticketsUndecided = new Counter('tickets_undecided'); // no outcome within DECIDE_S
const ticketsPolled = new Counter('tickets_polled'); // outcome read from the API, not pushed
const ticketPushLatency = new Trend('ticket_push_latency', true); // 202 → ticket push
const ordersPaid = new Counter('orders_paid');
const ordersCancelled = new Counter('orders_cancelled');
const payCancelErrors = new Counter('pay_cancel_errors');
const socketErrors = new Counter('socket_errors');
const usersExhausted = new Counter('users_exhausted'); // an iteration found no token left
const oversold = new Counter('oversold'); // teardown: live orders beyond stock_total
const duplicateBuyers = new Counter('duplicate_buyers'); // teardown: users with two live orders
const auditUnread = new Counter('audit_unread'); // teardown: users whose orders could not be read

export const options = {
  scenarios: {
    buyers: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      preAllocatedVUs: PRE_VUS,
      maxVUs: MAX_VUS,
      stages: HOLD_S > 0
        ? [{ duration: `${RAMP_S}s`, target: RATE }, { duration: `${HOLD_S}s`, target: RATE }]
        : [{ duration: `${RAMP_S}s`, target: RATE }],
      // Iterations that are still waiting for an outcome get the full bound.
      gracefulStop: `${DECIDE_S + 15}s`,
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'], // no 5xx, no transport error
    tickets_undecided: ['count==0'],
    unexpected_answers: ['count==0'],
    pay_cancel_errors: ['count==0'],
    socket_errors: ['count==0'],
    oversold: ['count==0'],
    duplicate_buyers: ['count==0'],
    audit_unread: ['count==0'],
  },
  setupTimeout: '120s',
  teardownTimeout: '120s',
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

// buyers is this run's users, for teardown: the first USERS of the tokens
// file, or the tokens setup() minted.
function buyers(data) {
  return FILE_USERS ? FILE_USERS.slice(0, USERS) : data.users;
}

export function setup() {
  checkServices();
  const users = FILE_USERS ? null : mintTokens(userBase() + 1, USERS);
  if (FILE_USERS && FILE_USERS.length < USERS) {
    console.warn(`${TOKENS_FILE} has ${FILE_USERS.length} users; iterations past that are counted in users_exhausted`);
  }
  const ev = EVENT_ID ? existingEvent(EVENT_ID) : createEvent();
  const startsAt = Date.parse(ev.starts_at);
  console.log(`flash sale: event ${ev.id}, stock ${ev.stock_total} (${ev.stock_left} left), ` +
    `opens ${ev.starts_at}; ${FILE_USERS ? Math.min(FILE_USERS.length, USERS) : USERS} buyers, ` +
    `up to ${RATE}/s; users ${FILE_USERS ? 'from ' + TOKENS_FILE : users[0].id + '..' + users[users.length - 1].id}`);
  // Every metric a threshold watches gets a sample, so the summary shows it.
  for (const m of [ticketsUndecided, unexpected, payCancelErrors, socketErrors]) m.add(0);
  return { eventId: ev.id, startsAt, users };
}

function createEvent() {
  const token = env('ADMIN_TOKEN', '') || mintToken(ADMIN_USER, true);
  const opens = Math.ceil((Date.now() + LEAD_S * 1000) / 1000) * 1000;
  const res = setupCall('POST', '/admin/events', {
    base: ADMIN_URL,
    token,
    body: {
      name: `k6 flash sale ${rfc3339(opens)}`,
      price: PRICE,
      stock: STOCK,
      starts_at: rfc3339(opens),
      ends_at: rfc3339(opens + 3600 * 1000),
    },
  });
  return expect(res, 201, 'creating the event (ADMIN_TOKEN, or dev mode)');
}

function existingEvent(id) {
  const ev = expect(setupCall('GET', `/events/${id}`, { name: 'GET /events/{id}' }), 200, `reading event ${id}`);
  if (ev.status === 'ended') throw new Error(`event ${id} has ended`);
  return ev;
}

export default function (data) {
  // Index, do not slice: a SharedArray decodes every element it hands out.
  const i = exec.scenario.iterationInTest;
  const users = FILE_USERS || data.users;
  if (i >= Math.min(users.length, USERS)) {
    usersExhausted.add(1);
    return;
  }
  buy(data, users[i]);
}

// buy runs one buyer on k6's event loop: the iteration lasts until the
// socket is closed and no timer is left.
function buy(data, user) {
  const s = { started: false, ticket: '', acceptedAt: 0, decided: false, done: false, tries: 0, saw404: false };
  const timers = new Set();
  let pollTimer = null;

  const later = (ms, fn) => {
    const id = setTimeout(() => {
      timers.delete(id);
      fn();
    }, ms);
    timers.add(id);
    return id;
  };

  const ws = new WebSocket(WS_URL, null, wsParams(user.token, 'buyer'));
  let connectTimer = later(CONNECT_TIMEOUT_MS, () => {
    connectTimer = null;
    socketErrors.add(1, { why: 'connect_timeout' });
    start(); // buy anyway, and read the outcome from the API
  });
  const connected = () => {
    if (connectTimer !== null) {
      clearTimeout(connectTimer);
      timers.delete(connectTimer);
      connectTimer = null;
    }
  };

  ws.onopen = () => {
    connected();
    if (s.done) return ws.close();
    start();
  };
  ws.onerror = (e) => {
    connected();
    if (s.done) return;
    socketErrors.add(1, { why: 'error' });
    console.warn(`buyer ${user.id}: socket error ${e && e.error}`);
    if (!s.started) start();
    else if (s.ticket && !s.decided) schedulePoll(0);
  };
  ws.onclose = () => {
    // A socket lost before the outcome: read it from GET /api/v1/tickets/{ticket},
    // as docs/openapi.yaml ("Conventions") tells a client that reconnects to.
    if (!s.done && s.ticket && !s.decided) schedulePoll(0);
  };
  ws.onmessage = (m) => {
    const msg = frame(m.data);
    if (msg && msg.type === 'ticket' && msg.ticket === s.ticket) settle(msg, 'push');
  };

  // start waits for the opening, then everybody who waited presses at once.
  function start() {
    if (s.started || s.done) return;
    s.started = true;
    later(Math.max(0, data.startsAt - Date.now()) + Math.random() * JITTER_MS, order);
  }

  function order() {
    const res = api('POST', `/events/${data.eventId}/orders`, { token: user.token, body: {}, name: 'POST /events/{id}/orders' });
    const c = code(res);
    if (res.status === 202) {
      accepted.add(1);
      s.ticket = (json(res) || {}).ticket || '';
      s.acceptedAt = Date.now();
      if (!s.ticket) {
        unexpected.add(1, { what: 'no_ticket' });
        return finish();
      }
      later(DECIDE_S * 1000, () => {
        ticketsUndecided.add(1);
        console.warn(`buyer ${user.id}: ticket ${s.ticket} undecided after ${DECIDE_S}s`);
        finish();
      });
      schedulePoll(ws.readyState === 1 ? POLL_AFTER_S * 1000 : 0);
    } else if (res.status === 409 && c === 'not_started' && s.tries++ < NOT_STARTED_RETRIES) {
      notStarted.add(1);
      later(250, order);
    } else if (res.status === 410) {
      soldOut.add(1);
      finish();
    } else if (res.status === 429) {
      rateLimited.add(1);
      finish();
    } else {
      // A 5xx is counted by http_req_failed; any other answer (a second
      // purchase by a fresh user, 401, 404, ended...) breaks the scenario.
      if (res.status > 0 && res.status < 500) unexpected.add(1, { what: 'order', status: String(res.status), code: c || 'none' });
      finish();
    }
  }

  function schedulePoll(ms) {
    if (s.done || s.decided) return;
    if (pollTimer !== null) {
      clearTimeout(pollTimer);
      timers.delete(pollTimer);
    }
    pollTimer = later(ms, poll);
  }

  function poll() {
    pollTimer = null;
    if (s.done || s.decided) return;
    const res = api('GET', `/tickets/${encodeURIComponent(s.ticket)}`, { token: user.token, name: 'GET /tickets/{ticket}' });
    const t = res.status === 200 ? json(res) : null;
    if (t && (t.status === 'succeeded' || t.status === 'failed')) return settle(t, 'poll');
    if (res.status === 404 && !s.saw404) {
      s.saw404 = true; // our own ticket, answered 202: the API promises it exists
      unexpected.add(1, { what: 'ticket_404' });
    }
    schedulePoll(res.status === 429 || res.status === 503 ? retryAfterMs(res) : POLL_EVERY_MS);
  }

  function settle(t, via) {
    if (s.decided || s.done || (t.status !== 'succeeded' && t.status !== 'failed')) return;
    s.decided = true;
    if (via === 'push') ticketPushLatency.add(Date.now() - s.acceptedAt);
    else ticketsPolled.add(1);
    if (t.status === 'succeeded') {
      ticketsSucceeded.add(1);
      if (t.order_no) payOrCancel(t.order_no);
      else unexpected.add(1, { what: 'no_order_no' });
    } else {
      ticketsFailed.add(1, { reason: t.reason || 'none' });
    }
    finish();
  }

  function payOrCancel(orderNo) {
    const action = Math.random() < PAY_RATIO ? 'pay' : 'cancel';
    const res = api('POST', `/orders/${encodeURIComponent(orderNo)}/${action}`, {
      token: user.token, body: {}, name: `POST /orders/{order_no}/${action}`,
    });
    if (res.status === 200) (action === 'pay' ? ordersPaid : ordersCancelled).add(1);
    else if (res.status > 0 && res.status < 500) payCancelErrors.add(1, { action, status: String(res.status), code: code(res) || 'none' });
  }

  function finish() {
    s.done = true;
    for (const id of timers) clearTimeout(id);
    timers.clear();
    // Only an open socket is closed here: one still connecting is closed by
    // onopen, or fails on its own (k6 then fires error and close).
    if (ws.readyState === 1) ws.close();
  }
}

// teardown reads every buyer's orders back through the API: live orders
// (unpaid or paid) of the event must not exceed its stock, and no user may
// hold two. With EVENT_ID, only this run's buyers are counted.
export function teardown(data) {
  const ev = expect(setupCall('GET', `/events/${data.eventId}`, { name: 'GET /events/{id}' }), 200, 'reading the event');
  const users = buyers(data);
  const n = { unpaid: 0, paid: 0, cancelled: 0, expired: 0 };
  let dup = 0;
  let unread = 0;
  for (const u of users) {
    const res = setupCall('GET', '/orders', { token: u.token });
    const b = res.status === 200 ? json(res) : null;
    if (!b || !Array.isArray(b.orders)) {
      unread++;
      continue;
    }
    let live = 0;
    for (const o of b.orders) {
      if (o.event_id !== data.eventId) continue;
      n[o.status] = (n[o.status] || 0) + 1;
      if (o.status === 'unpaid' || o.status === 'paid') live++;
    }
    if (live > 1) dup++;
  }
  const live = n.unpaid + n.paid;
  oversold.add(Math.max(0, live - ev.stock_total));
  duplicateBuyers.add(dup);
  auditUnread.add(unread);
  console.log(`audit: event ${ev.id}: stock_total ${ev.stock_total}, stock_left ${ev.stock_left} (may lag 1 s); ` +
    `live orders ${live} (paid ${n.paid}, unpaid ${n.unpaid}), cancelled ${n.cancelled}, expired ${n.expired}; ` +
    `users with two live orders ${dup}; users not read ${unread}`);
}
