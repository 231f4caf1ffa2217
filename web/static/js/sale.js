// The flash-sale page: the events with a countdown to their start, the
// stock left (live over the WebSocket's watch), a buy button, the ticket's
// outcome pushed on the socket, and the user's orders with pay and cancel.

import { $, el, api, session, humanError, reasonSentence, holdOff, showMessage, duration, money, newKey, renderSignIn } from "./common.js";
import { Push } from "./push.js";

const push = new Push($("#push-status"));
const events = new Map(); // id -> {ev, card nodes}
const tickets = new Map(); // ticket -> event id, for the tickets this page is waiting on
const outcomes = new Map(); // ticket -> pushed frame that came before the 202 was read
const bought = new Set(); // event ids the user has a ticket for

function phase(ev, now = Date.now()) {
  if (now >= Date.parse(ev.ends_at) || ev.status === "ended") return "ended";
  if (ev.stock_left <= 0 || ev.status === "sold_out") return "sold_out";
  if (now < Date.parse(ev.starts_at)) return "upcoming";
  return "live";
}

function card(ev) {
  const stock = el("span", { class: "stock-left" });
  const bar = el("progress", { max: ev.stock_total, value: ev.stock_left, "aria-hidden": "true" });
  const countdown = el("span", { class: "countdown" });
  const buy = el("button", { type: "button", class: "buy primary", onclick: () => buyEvent(ev.id) }, "Buy");
  const status = el("p", { class: "ticket-status", role: "status", "aria-live": "polite" });
  const li = el(
    "li",
    { class: "card", dataset: { eventId: String(ev.id) } },
    el("h3", {}, ev.name),
    el("p", { class: "price" }, money(ev.price)),
    el("p", { class: "when" }, countdown),
    el("p", { class: "stock" }, stock, " ", bar),
    buy,
    status,
  );
  return { li, stock, bar, countdown, buy, status };
}

function render(id) {
  const e = events.get(id);
  if (!e) return;
  const { ev, nodes } = e;
  const p = phase(ev);
  nodes.li.dataset.phase = p;
  nodes.stock.textContent = `${ev.stock_left} of ${ev.stock_total} left`;
  nodes.stock.dataset.stock = String(ev.stock_left);
  nodes.bar.value = Math.max(0, ev.stock_left);
  const now = Date.now();
  if (p === "upcoming") nodes.countdown.textContent = `Starts in ${duration(Date.parse(ev.starts_at) - now)}`;
  else if (p === "live") nodes.countdown.textContent = `On sale · ends in ${duration(Date.parse(ev.ends_at) - now)}`;
  else if (p === "sold_out") nodes.countdown.textContent = "Sold out";
  else nodes.countdown.textContent = "Ended";
  if (nodes.buy.dataset.retry) return; // holdOff owns the button meanwhile
  const label = { upcoming: "Buy (not started)", live: "Buy", sold_out: "Sold out", ended: "Ended" }[p];
  const mine = bought.has(id);
  nodes.buy.textContent = mine && p !== "ended" ? "Bought" : label;
  nodes.buy.dataset.label = nodes.buy.textContent;
  nodes.buy.disabled = p !== "live" || mine || !session.token || nodes.buy.dataset.busy === "1";
}

async function loadEvents() {
  const list = $("#events");
  const asked = Date.now();
  try {
    const r = await api("GET", "/api/v1/events", undefined, { auth: false });
    const seen = new Set();
    for (const ev of r.events) {
      seen.add(ev.id);
      const e = events.get(ev.id);
      if (e) {
        // The list's stock may be a second old: a push from that second wins.
        e.ev = (e.pushedAt || 0) > asked - 1000 ? { ...ev, stock_left: e.ev.stock_left, status: e.ev.status } : ev;
      } else {
        const nodes = card(ev);
        events.set(ev.id, { ev, nodes });
        list.append(nodes.li);
        push.watch(ev.id);
      }
      render(ev.id);
    }
    if (r.events.length === 0) list.replaceChildren(el("li", { class: "empty" }, "No sale is upcoming or live."));
    list.setAttribute("aria-busy", "false");
  } catch (e) {
    showMessage($("#sale-msg"), humanError(e), "error");
    if (e.retryAfter) setTimeout(loadEvents, e.retryAfter * 1000);
  }
}

async function buyEvent(id) {
  const e = events.get(id);
  const { buy, status } = e.nodes;
  buy.dataset.busy = "1";
  buy.disabled = true;
  buy.textContent = "Buying…";
  try {
    const r = await api("POST", `/api/v1/events/${id}/orders`, {}, { idempotencyKey: newKey() });
    bought.add(id);
    waitTicket(r.ticket, id);
  } catch (err) {
    if (err.code === "sold_out") e.ev.stock_left = 0;
    if (err.code === "ended") e.ev.status = "ended";
    if (err.code === "already_purchased") bought.add(id);
    showTicket(id, humanError(err, "order"), "failed");
    if (err.retryAfter) {
      delete buy.dataset.busy;
      holdOff(buy, err.retryAfter, () => phase(e.ev) !== "live" || bought.has(id));
      return;
    }
  } finally {
    delete buy.dataset.busy;
    render(id);
  }
}

function showTicket(id, text, state) {
  const s = events.get(id).nodes.status;
  s.textContent = text;
  s.dataset.status = state;
}

function waitTicket(ticket, id) {
  tickets.set(ticket, id);
  events.get(id).nodes.status.dataset.ticket = ticket;
  showTicket(id, "Pending: your unit is reserved, the order is being written…", "pending");
  const early = outcomes.get(ticket);
  if (early) onTicket(early);
}

function onTicket(f) {
  const id = tickets.get(f.ticket);
  if (id === undefined) {
    // The push can beat the 202's body: keep it for waitTicket.
    outcomes.set(f.ticket, f);
    return;
  }
  if (f.status === "succeeded") {
    showTicket(id, `Succeeded: order ${f.order_no} is yours. Pay it below before it expires.`, "succeeded");
    loadOrders();
  } else if (f.status === "failed") {
    bought.delete(id);
    showTicket(id, `Failed: ${reasonSentence(f.reason, "order")}`, "failed");
    render(id);
  } else return;
  tickets.delete(f.ticket);
  outcomes.delete(f.ticket);
}

push.on((f) => {
  if (f.type === "stock" && events.has(f.event_id)) {
    const e = events.get(f.event_id);
    e.ev.stock_left = f.stock_left;
    e.ev.status = f.status;
    e.pushedAt = Date.now();
    render(f.event_id);
  } else if (f.type === "ticket" && f.kind === "order") {
    onTicket(f);
  }
});

// After a drop, outcomes pushed meanwhile were lost: read them back.
push.onReconnect(async () => {
  loadEvents();
  for (const t of [...tickets.keys()]) {
    try {
      onTicket(await api("GET", `/api/v1/tickets/${encodeURIComponent(t)}`));
    } catch {
      /* still unknown: the next push or reconnect tells */
    }
  }
});

// ---- orders

const orderTimers = [];

async function loadOrders() {
  const ul = $("#orders");
  const msg = $("#orders-msg");
  if (!session.token) {
    ul.replaceChildren(el("li", { class: "empty" }, "Sign in to see your orders."));
    return;
  }
  try {
    const r = await api("GET", "/api/v1/orders");
    showMessage(msg, "");
    ul.replaceChildren(...r.orders.map(orderRow));
    if (r.orders.length === 0) ul.replaceChildren(el("li", { class: "empty" }, "No orders yet."));
    for (const o of r.orders) if (o.status === "unpaid" || o.status === "paid") bought.add(o.event_id);
    for (const id of events.keys()) render(id);
  } catch (e) {
    showMessage(msg, humanError(e), "error");
  }
}

function orderRow(o) {
  const expiry = el("span", { class: "expiry" });
  const pay = el("button", { type: "button", class: "primary", onclick: () => act(o, "pay", pay) }, "Pay");
  const cancel = el("button", { type: "button", onclick: () => act(o, "cancel", cancel) }, "Cancel");
  const unpaid = o.status === "unpaid";
  const li = el(
    "li",
    { class: "order", dataset: { orderNo: o.order_no, status: o.status } },
    el("span", { class: "order-no" }, `Order ${o.order_no}`),
    el("span", {}, `event ${o.event_id} · ${money(o.price)}`),
    el("span", { class: "order-status" }, o.status),
    unpaid ? expiry : null,
    unpaid ? el("span", { class: "actions" }, pay, cancel) : null,
  );
  if (unpaid) {
    const tick = () => {
      const left = Date.parse(o.expires_at) - Date.now();
      expiry.textContent = left > 0 ? `expires in ${duration(left)}` : "expiring…";
      if (left <= -1500 && !expiry.dataset.reread) {
        expiry.dataset.reread = "1";
        // Expired: the list says so, and the unit is back on sale.
        setTimeout(loadOrders, 1000);
        setTimeout(loadEvents, 1000);
      }
    };
    tick();
    orderTimers.push([expiry, tick]);
  }
  return li;
}

async function act(o, what, button) {
  button.disabled = true;
  try {
    await api("POST", `/api/v1/orders/${encodeURIComponent(o.order_no)}/${what}`, {});
    if (what === "cancel") bought.delete(o.event_id);
    showMessage($("#orders-msg"), what === "pay" ? `Order ${o.order_no} is paid.` : `Order ${o.order_no} is cancelled; the unit is back on sale.`, "ok");
    loadOrders();
    // A cancel puts the unit back on sale, which no push tells: read the
    // list now and once more when the gateway's copy surely has it.
    loadEvents();
    setTimeout(loadEvents, 1500);
  } catch (e) {
    showMessage($("#orders-msg"), humanError(e, "order"), "error");
    if (e.retryAfter) holdOff(button, e.retryAfter);
    else button.disabled = false;
  }
}

// One clock for every countdown on the page.
setInterval(() => {
  for (const id of events.keys()) render(id);
  for (let i = orderTimers.length - 1; i >= 0; i--) {
    const [node, tick] = orderTimers[i];
    if (!node.isConnected) orderTimers.splice(i, 1);
    else tick();
  }
}, 1000);
// The list brings new sales; stock comes over the socket.
setInterval(loadEvents, 30000);

window.addEventListener("flashgate:session", () => {
  bought.clear();
  loadOrders();
});

renderSignIn($("#signin"));
await loadEvents();
loadOrders();
push.start();
