// live_room.js: VIEWERS watch one live room while SENDERS send gifts in it.
//
// setup() mints tokens, reads the gift's price, gives each sender the coins
// for its gifts (dev mode: a pay order paid through the sandbox provider)
// and notes the anchor's earnings. Viewers connect and join ROOM at once;
// senders start JOIN_S seconds later, since a join is not acknowledged and a
// gift is pushed only to connections that joined before it was committed.
//
// Each sender sends exactly GIFTS gifts to ANCHOR at SEND_RATE a second,
// retrying a 429 or 503 with the same Idempotency-Key, so the room should see
// SENDERS*GIFTS gifts. A sender also joins the room on its own socket: it
// alone knows when its gift was accepted, so it measures push latency (202 →
// its own gift on the room socket) and notices a gift of its own that never
// came. VUs share no memory, so a viewer cannot know when another VU's gift
// was accepted; viewers count what they receive instead, and each must end
// with all SENDERS*GIFTS gifts. teardown() checks that the anchor's earnings
// grew by exactly the coins the senders' balances lost.
//
//   k6 run loadtest/k6/live_room.js                 (against `make run`)
//   VIEWERS=500 SENDERS=20 k6 run loadtest/k6/live_room.js
import exec from 'k6/execution';
import { sleep } from 'k6';
import { SharedArray } from 'k6/data';
import { WebSocket } from 'k6/websockets';
import { setTimeout, clearTimeout, setInterval, clearInterval } from 'k6/timers';
import { Counter, Trend } from 'k6/metrics';
import {
  env, num, WS_URL, countOnly5xxAsFailed, api, json, code, retryAfterMs, setupCall, expect,
  checkServices, mintTokens, mintToken, userBase, parseTokensCsv, wsParams, frame,
} from './lib/flashgate.js';

const VIEWERS = num('VIEWERS', 100, 1, 100000);
const SENDERS = num('SENDERS', 10, 1, 10000);
const GIFTS = num('GIFTS', 60, 1, 100000); // per sender
const SEND_RATE = num('SEND_RATE', 2, 0.1, 1000, false); // gifts a second, per sender
const GIFT_ID = num('GIFT_ID', 1, 1, 2 ** 53); // 1 = Rose, 1 coin, as sql/003_gifts.sql seeds it
const COUNT = num('COUNT', 1, 1, 9999);
const ROOM = num('ROOM', 1, 1, 2 ** 53);
const ANCHOR = num('ANCHOR', 7, 1, 2 ** 53);
const JOIN_S = num('JOIN_S', 3, 1, 600); // viewers join this long before senders start
const DECIDE_S = num('DECIDE_S', 30, 1, 600); // a 202 gift must be decided and pushed within this
const POLL_AFTER_S = num('POLL_AFTER_S', 5, 0, 600); // no outcome pushed by then: read the ticket
const TOKENS_FILE = env('TOKENS_FILE', '');

const SEND_S = Math.ceil(GIFTS / SEND_RATE);
const SLACK_S = 10; // room for retries after 429 and 503 before a gift counts as not sent
const SENDER_S = 1 + SEND_S + SLACK_S + DECIDE_S + 2;
const VIEWER_S = JOIN_S + SENDER_S + 2;
const EXPECTED = SENDERS * GIFTS; // gifts every viewer must see
const CONNECT_TIMEOUT_MS = 5000;
const JOIN_SETTLE_MS = 1000; // a sender's own join, before its first gift
const POLLS_PER_CHECK = 5; // keeps ticket reads under the per-user limit

// See flash_sale.js: a tokens file is read once, here, into shared memory.
const FILE_USERS = TOKENS_FILE ? new SharedArray('tokens', () => parseTokensCsv(open(TOKENS_FILE), TOKENS_FILE)) : null;

countOnly5xxAsFailed();

const giftsAccepted = new Counter('gifts_accepted'); // 202
const rateLimited = new Counter('rate_limited'); // 429, retried
const giftsRejected = new Counter('gifts_rejected'); // never accepted: another 4xx, or not sent in time
const giftsSucceeded = new Counter('gifts_succeeded');
const giftsFailed = new Counter('gifts_failed'); // a 202 gift that ended failed (tagged with the reason)
const giftsUndecided = new Counter('gifts_undecided'); // no outcome within DECIDE_S
const giftsPolled = new Counter('gifts_polled'); // outcome read from the API, not pushed
const giftPushLatency = new Trend('gift_push_latency', true); // 202 → the gift on the sender's room socket
const giftOutcomeLatency = new Trend('gift_outcome_latency', true); // 202 → the sender's ticket push
const giftPushMissing = new Counter('gift_push_missing'); // a succeeded gift its sender's room socket never got
const viewerPushes = new Counter('viewer_pushes'); // gifts received by viewers (one per viewer and ticket)
const viewerDuplicates = new Counter('viewer_duplicates'); // the same ticket again (allowed after a worker crash)
const viewerMissing = new Counter('viewer_pushes_missing'); // EXPECTED less what a viewer received
const viewerPushRate = new Trend('viewer_push_rate'); // per viewer: gifts/s between its first and last
const socketErrors = new Counter('socket_errors');
const earningsMismatch = new Counter('earnings_mismatch'); // teardown: |earned - spent| in coins

export const options = {
  scenarios: {
    viewers: {
      executor: 'per-vu-iterations',
      exec: 'viewer',
      vus: VIEWERS,
      iterations: 1,
      maxDuration: `${VIEWER_S + 10}s`,
    },
    senders: {
      executor: 'per-vu-iterations',
      exec: 'sender',
      vus: SENDERS,
      iterations: 1,
      startTime: `${JOIN_S}s`,
      maxDuration: `${SENDER_S + 10}s`,
    },
  },
  thresholds: {
    http_req_failed: ['rate==0'], // no 5xx, no transport error
    gifts_rejected: ['count==0'],
    gifts_failed: ['count==0'],
    gifts_undecided: ['count==0'],
    gift_push_missing: ['count==0'],
    viewer_pushes_missing: ['count==0'],
    socket_errors: ['count==0'],
    earnings_mismatch: ['count==0'],
  },
  setupTimeout: '120s',
  teardownTimeout: '60s',
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  checkServices();
  const all = FILE_USERS ? fileUsers() : mintTokens(userBase() + 1, SENDERS + VIEWERS);
  const senders = all.slice(0, SENDERS);
  const viewers = all.slice(SENDERS, SENDERS + VIEWERS);
  const anchorToken = env('ANCHOR_TOKEN', '') || fileToken(ANCHOR) || mintToken(ANCHOR, false);

  const gifts = expect(setupCall('GET', '/gifts'), 200, 'reading the gift catalog').gifts;
  const gift = gifts.find((g) => g.id === GIFT_ID);
  if (!gift) throw new Error(`GIFT_ID=${GIFT_ID} is not in the catalog: ${JSON.stringify(gifts)}`);
  const need = GIFTS * COUNT * gift.price;
  const balances = {};
  for (const s of senders) balances[s.id] = topUp(s, need);
  const anchorEarnings = wallet(anchorToken).earnings;

  console.log(`live room ${ROOM}: ${VIEWERS} viewers, ${SENDERS} senders x ${GIFTS} x ${gift.name} ` +
    `(${gift.price} coins) x ${COUNT} at ${SEND_RATE}/s each to anchor ${ANCHOR} (earnings ${anchorEarnings})`);
  for (const m of [giftsRejected, giftsFailed, giftsUndecided, giftPushMissing, viewerMissing, socketErrors]) m.add(0);
  return {
    run: Date.now(),
    senders,
    viewers,
    senderIds: senders.map((s) => s.id),
    anchorToken,
    anchorEarnings,
    balances,
  };
}

// fileUsers takes this run's users from the tokens file, skipping the anchor
// (a gift to oneself is refused).
function fileUsers() {
  const users = [];
  for (let i = 0; i < FILE_USERS.length && users.length < SENDERS + VIEWERS; i++) {
    if (FILE_USERS[i].id !== ANCHOR) users.push(FILE_USERS[i]);
  }
  if (users.length < SENDERS + VIEWERS) {
    throw new Error(`${TOKENS_FILE} has ${users.length} users besides the anchor; SENDERS+VIEWERS=${SENDERS + VIEWERS}`);
  }
  return users;
}

function fileToken(id) {
  if (!FILE_USERS) return '';
  for (let i = 0; i < FILE_USERS.length; i++) if (FILE_USERS[i].id === id) return FILE_USERS[i].token;
  return '';
}

function wallet(token) {
  return expect(setupCall('GET', '/wallet', { token }), 200, 'reading a wallet');
}

let products = null; // read once: a public route, on the per-IP budget

// topUp buys coins until the sender can pay for all its gifts: a pay order
// for the smallest product that covers the shortfall (else the largest),
// paid through the dev sandbox provider, which sends the signed notify as a
// real provider would. It returns the balance the sender starts with.
function topUp(sender, need) {
  let balance = wallet(sender.token).balance;
  for (let round = 0; balance < need && round < 20; round++) {
    if (!products) {
      products = expect(setupCall('GET', '/pay/products'), 200, 'reading the coin products').products;
      products.sort((a, b) => a.coins - b.coins);
    }
    const short = need - balance;
    const p = products.find((x) => x.coins >= short) || products[products.length - 1];
    const order = expect(setupCall('POST', '/pay/orders', { token: sender.token, body: { product_id: p.id } }), 201, 'creating a pay order');
    const res = setupCall('POST', `/dev/pay/orders/${order.order_id}/complete`, { name: 'POST /dev/pay/orders/{order_id}/complete' });
    if (res.status === 404) {
      throw new Error(`sender ${sender.id} has ${balance} coins and needs ${need}; outside dev mode give the senders coins before the run`);
    }
    const paid = expect(res, 200, 'paying through the sandbox provider');
    if (paid.status !== 'paid') throw new Error(`pay order ${order.order_id} is ${paid.status} after the sandbox notify`);
    const want = balance + order.coins;
    balance = waitForBalance(sender.token, want);
    if (balance < want) throw new Error(`pay order ${order.order_id} is paid but sender ${sender.id} has ${balance} coins, not ${want}`);
  }
  if (balance < need) throw new Error(`sender ${sender.id} has ${balance} coins, needs ${need}`);
  return balance;
}

// waitForBalance allows for the credit reaching the hot balance a little
// after the notify (the worker repairs a missed one within seconds).
function waitForBalance(token, want) {
  let balance = 0;
  for (let i = 0; i < 40; i++) {
    balance = wallet(token).balance;
    if (balance >= want) break;
    sleep(0.5);
  }
  return balance;
}

// viewer holds one socket in the room and counts the gifts of this run's
// senders, once per ticket, until it has them all or time is up.
export function viewer(data) {
  const me = data.viewers[exec.scenario.iterationInTest];
  const senders = new Set(data.senderIds);
  const seen = new Set();
  let first = 0;
  let last = 0;
  let ended = false;

  const ws = new WebSocket(WS_URL, null, wsParams(me.token, 'viewer'));
  const deadline = setTimeout(() => end(), VIEWER_S * 1000);
  let connectTimer = setTimeout(() => {
    connectTimer = null;
    socketErrors.add(1, { role: 'viewer', why: 'connect_timeout' });
    end();
  }, CONNECT_TIMEOUT_MS);

  function end() {
    if (ended) return;
    ended = true;
    clearTimeout(deadline);
    if (connectTimer !== null) clearTimeout(connectTimer);
    viewerMissing.add(Math.max(0, EXPECTED - seen.size));
    if (seen.size > 1 && last > first) viewerPushRate.add((seen.size - 1) / ((last - first) / 1000));
    // Only an open socket is closed here: one still connecting is closed by
    // onopen, or fails on its own (k6 then fires error and close).
    if (ws.readyState === 1) ws.close();
  }

  ws.onopen = () => {
    if (connectTimer !== null) clearTimeout(connectTimer);
    connectTimer = null;
    if (ended) return ws.close();
    ws.send(JSON.stringify({ type: 'join', room_id: ROOM }));
  };
  ws.onmessage = (m) => {
    const msg = frame(m.data);
    if (!msg || msg.type !== 'gift' || msg.room_id !== ROOM || !senders.has(msg.sender_id)) return;
    if (seen.has(msg.ticket)) {
      viewerDuplicates.add(1); // clients de-duplicate by ticket (README, "Live-room gifts and the wallet")
      return;
    }
    seen.add(msg.ticket);
    viewerPushes.add(1);
    last = Date.now();
    if (first === 0) first = last;
    if (seen.size >= EXPECTED) end();
  };
  ws.onerror = (e) => {
    if (ended) return;
    socketErrors.add(1, { role: 'viewer', why: 'error' });
    console.warn(`viewer ${me.id}: socket error ${e && e.error}`);
    end();
  };
  ws.onclose = () => {
    if (ended) return;
    socketErrors.add(1, { role: 'viewer', why: 'closed_by_server' });
    end();
  };
}

// sender sends its GIFTS gifts at SEND_RATE and follows each ticket to its
// outcome and to its push on the sender's own room socket.
export function sender(data) {
  const me = data.senders[exec.scenario.iterationInTest];
  const gifts = new Map(); // ticket -> { at, outcome, pushedAt, missing, nextPoll }
  const st = { next: 0, holdUntil: 0, sending: false, sent: false, done: false, deadline: 0, socketLost: false };
  let ticker = null;
  let checker = null;

  const ws = new WebSocket(WS_URL, null, wsParams(me.token, 'sender'));
  let connectTimer = setTimeout(() => {
    connectTimer = null;
    socketErrors.add(1, { role: 'sender', why: 'connect_timeout' });
    startSending(); // outcomes then come from the API; the pushes count as missing
  }, CONNECT_TIMEOUT_MS);
  let settleTimer = null;
  const connected = () => {
    if (connectTimer !== null) clearTimeout(connectTimer);
    connectTimer = null;
  };

  ws.onopen = () => {
    connected();
    if (st.done) return ws.close();
    ws.send(JSON.stringify({ type: 'join', room_id: ROOM }));
    settleTimer = setTimeout(() => {
      settleTimer = null;
      startSending();
    }, JOIN_SETTLE_MS);
  };
  ws.onmessage = (m) => {
    const msg = frame(m.data);
    if (!msg) return;
    const g = gifts.get(msg.ticket);
    if (!g) return;
    if (msg.type === 'gift' && g.pushedAt === 0) {
      g.pushedAt = Date.now();
      giftPushLatency.add(g.pushedAt - g.at);
    } else if (msg.type === 'ticket') {
      decide(g, msg, 'push');
    }
  };
  ws.onerror = (e) => {
    connected();
    if (st.done || st.socketLost) return;
    st.socketLost = true;
    socketErrors.add(1, { role: 'sender', why: 'error' });
    console.warn(`sender ${me.id}: socket error ${e && e.error}`);
    startSending();
  };
  ws.onclose = () => {
    // k6 follows an error with a close; count the socket once.
    if (st.done || st.socketLost) return;
    st.socketLost = true;
    socketErrors.add(1, { role: 'sender', why: 'closed_by_server' });
    startSending();
  };

  function startSending() {
    if (st.sending || st.done) return;
    st.sending = true;
    st.deadline = Date.now() + (SEND_S + SLACK_S) * 1000;
    ticker = setInterval(send, 1000 / SEND_RATE);
    checker = setInterval(check, 500);
    send();
  }

  // send makes one attempt at the next gift. The Idempotency-Key is the
  // gift's own, so a retry after a lost answer cannot send it twice.
  function send() {
    if (st.sent) return;
    const now = Date.now();
    if (st.next >= GIFTS || now > st.deadline) {
      if (st.next < GIFTS) giftsRejected.add(GIFTS - st.next, { status: 'none', code: 'not_sent' });
      st.sent = true;
      clearInterval(ticker);
      ticker = null;
      return;
    }
    if (now < st.holdUntil) return;
    const res = api('POST', `/rooms/${ROOM}/gifts`, {
      token: me.token,
      body: { gift_id: GIFT_ID, receiver_id: ANCHOR, count: COUNT },
      headers: { 'Idempotency-Key': `k6-${data.run}-${me.id}-${st.next}` },
      name: 'POST /rooms/{room_id}/gifts',
    });
    if (res.status === 202) {
      const ticket = (json(res) || {}).ticket;
      giftsAccepted.add(1);
      if (ticket && !gifts.has(ticket)) gifts.set(ticket, { at: Date.now(), outcome: '', pushedAt: 0, missing: false, nextPoll: 0 });
      st.next++;
    } else if (res.status === 429 || res.status === 503 || res.status === 0) {
      // Nothing was held: wait as told and send the same gift again. A 503
      // or a transport error still counts in http_req_failed.
      if (res.status === 429) rateLimited.add(1);
      st.holdUntil = now + (res.status === 0 ? 1000 : retryAfterMs(res));
    } else {
      giftsRejected.add(1, { status: String(res.status), code: code(res) || 'none' });
      st.next++;
    }
  }

  // check reads late outcomes from the API, gives up on a gift after
  // DECIDE_S, and ends the sender once every gift is accounted for.
  function check() {
    const now = Date.now();
    let polls = 0;
    let open = !st.sent;
    for (const [ticket, g] of gifts) {
      const age = now - g.at;
      if (!g.outcome && age > DECIDE_S * 1000) {
        g.outcome = 'undecided';
        giftsUndecided.add(1);
        console.warn(`sender ${me.id}: gift ${ticket} undecided after ${DECIDE_S}s`);
      }
      if (!g.outcome && age >= POLL_AFTER_S * 1000 && now >= g.nextPoll && polls < POLLS_PER_CHECK) {
        polls++;
        poll(ticket, g);
      }
      if (g.outcome === 'succeeded' && g.pushedAt === 0 && !g.missing && age > DECIDE_S * 1000) {
        g.missing = true;
        giftPushMissing.add(1);
      }
      if (!g.outcome || (g.outcome === 'succeeded' && g.pushedAt === 0 && !g.missing)) open = true;
    }
    if (!open) finish();
  }

  function poll(ticket, g) {
    const res = api('GET', `/tickets/${encodeURIComponent(ticket)}`, { token: me.token, name: 'GET /tickets/{ticket}' });
    const t = res.status === 200 ? json(res) : null;
    if (t && (t.status === 'succeeded' || t.status === 'failed')) decide(g, t, 'poll');
    else g.nextPoll = Date.now() + (res.status === 429 || res.status === 503 ? retryAfterMs(res) : 1000);
  }

  function decide(g, t, via) {
    if (g.outcome || (t.status !== 'succeeded' && t.status !== 'failed')) return;
    g.outcome = t.status;
    if (via === 'push') giftOutcomeLatency.add(Date.now() - g.at);
    else giftsPolled.add(1);
    if (t.status === 'succeeded') giftsSucceeded.add(1);
    else giftsFailed.add(1, { reason: t.reason || 'none' });
  }

  function finish() {
    st.done = true;
    for (const id of [ticker, checker]) if (id !== null) clearInterval(id);
    for (const id of [connectTimer, settleTimer]) if (id !== null) clearTimeout(id);
    ticker = checker = connectTimer = settleTimer = null;
    // Only an open socket is closed here: one still connecting is closed by
    // onopen, or fails on its own (k6 then fires error and close).
    if (ws.readyState === 1) ws.close();
  }
}

// teardown: the anchor's earnings must have grown by exactly the coins the
// senders' balances lost, i.e. the coins of the gifts that succeeded (failed
// ones are given back). Balances settle just after the outcome is published,
// so a difference gets a few seconds to vanish. Nobody else may send gifts to
// ANCHOR during the run.
export function teardown(data) {
  let earned = 0;
  let spent = 0;
  for (let attempt = 0; attempt < 10; attempt++) {
    earned = wallet(data.anchorToken).earnings - data.anchorEarnings;
    spent = 0;
    for (const s of data.senders) spent += data.balances[s.id] - wallet(s.token).balance;
    if (earned === spent) break;
    sleep(1);
  }
  earningsMismatch.add(Math.abs(earned - spent));
  console.log(`audit: anchor ${ANCHOR} earned ${earned} coins; senders spent ${spent}`);
}
