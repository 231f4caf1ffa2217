// The live-room page: join a room, the gift catalog, the wallet, sending
// gifts (the balance drops at once from the 202), the room's feed pushed
// over the socket, the leaderboard, recharge and, for an anchor, earnings
// and withdrawals.

import { $, el, api, config, session, humanError, reasonSentence, holdOff, showMessage, coins, money, newKey, renderSignIn } from "./common.js";
import { Push } from "./push.js";

const push = new Push($("#push-status"));
const catalog = new Map(); // gift id -> gift
const seen = new Set(); // tickets in the feed
const pending = new Map(); // gift ticket -> count, waiting on their outcome
let room = 0;
const FEED_MAX = 50;

// ---- wallet

function setBalance(balance, earnings) {
  const b = $("#balance");
  b.textContent = coins(balance);
  b.dataset.balance = String(balance);
  if (earnings !== undefined) {
    const e = $("#earnings");
    e.textContent = coins(earnings);
    e.dataset.earnings = String(earnings);
  }
}

async function loadWallet() {
  if (!session.token) {
    $("#balance").textContent = "sign in to see it";
    $("#balance").dataset.balance = "";
    return;
  }
  try {
    const w = await api("GET", "/api/v1/wallet");
    setBalance(w.balance, w.earnings);
  } catch (e) {
    showMessage($("#gift-msg"), humanError(e), "error");
  }
}

// ---- catalog and sending

async function loadCatalog() {
  try {
    const r = await api("GET", "/api/v1/gifts", undefined, { auth: false });
    const box = $("#catalog");
    box.replaceChildren(
      ...r.gifts.map((g, i) => {
        catalog.set(g.id, g);
        const id = `gift-${g.id}`;
        return el(
          "label",
          { class: "gift", for: id },
          el("input", { type: "radio", name: "gift", id, value: String(g.id), checked: i === 0 }),
          el("span", { class: "gift-name" }, g.name),
          el("span", { class: "gift-price" }, coins(g.price)),
        );
      }),
    );
  } catch (e) {
    showMessage($("#gift-msg"), humanError(e), "error");
  }
}

async function sendGift(ev) {
  ev.preventDefault();
  const msg = $("#gift-msg");
  const button = $("#send-gift");
  if (!session.token) return showMessage(msg, "Sign in first.", "error");
  if (!room) return showMessage(msg, "Join a room first.", "error");
  const picked = document.querySelector('input[name="gift"]:checked');
  if (!picked) return showMessage(msg, "Pick a gift.", "error");
  const gift = catalog.get(Number(picked.value));
  const count = Number($("#gift-count").value);
  const receiver = Number($("#anchor-id").value);
  button.disabled = true;
  try {
    const r = await api("POST", `/api/v1/rooms/${room}/gifts`, { gift_id: gift.id, receiver_id: receiver, count }, { idempotencyKey: newKey() });
    setBalance(r.balance);
    pending.set(r.ticket, count);
    msg.dataset.ticket = r.ticket;
    msg.dataset.sentAt = String(Date.now());
    showMessage(msg, `Sent ${count} × ${gift.name} to user ${receiver} (${coins(gift.price * count)}); confirming…`, "info");
    msg.dataset.status = "pending";
    button.disabled = false;
  } catch (e) {
    // The line now speaks of this press: a late outcome of an earlier gift
    // must not overwrite the refusal (onTicket matches on dataset.ticket).
    delete msg.dataset.ticket;
    msg.dataset.status = "refused";
    showMessage(msg, humanError(e, "gift"), "error");
    if (e.retryAfter) holdOff(button, e.retryAfter);
    else button.disabled = false;
  }
}

function onTicket(f) {
  if (!pending.has(f.ticket)) return;
  pending.delete(f.ticket);
  const msg = $("#gift-msg");
  if (msg.dataset.ticket !== f.ticket) return;
  msg.dataset.status = f.status;
  if (f.status === "succeeded") showMessage(msg, "Your gift was delivered.", "ok");
  else {
    showMessage(msg, `Your gift did not go through: ${reasonSentence(f.reason, "gift")}`, "error");
    loadWallet(); // the coins came back
  }
}

// ---- feed and leaderboard

function feedItem(g, source) {
  const name = catalog.get(g.gift_id)?.name || `gift ${g.gift_id}`;
  const me = session.claims?.user === g.sender_id;
  return el(
    "li",
    { class: me ? "mine" : "", dataset: { ticket: g.ticket, sender: String(g.sender_id), source, receivedAt: String(Date.now()) } },
    el("strong", {}, me ? "You" : `User ${g.sender_id}`),
    ` sent ${g.count} × ${name} to user ${g.receiver_id}`,
  );
}

function addToFeed(g, { atTop = true } = {}) {
  if (seen.has(g.ticket)) return;
  seen.add(g.ticket);
  const feed = $("#feed");
  const item = feedItem(g, atTop ? "push" : "list");
  if (atTop) feed.prepend(item);
  else feed.append(item);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
}

async function loadRecent() {
  try {
    const r = await api("GET", `/api/v1/rooms/${room}/gifts`, undefined, { auth: false });
    for (const g of r.gifts) addToFeed(g, { atTop: false });
    // Anything pushed while the list was on its way is newer: keep order by id.
  } catch (e) {
    showMessage($("#gift-msg"), humanError(e), "error");
  }
}

let boardTimers = [];
async function loadBoard() {
  if (!room) return;
  try {
    const r = await api("GET", `/api/v1/rooms/${room}/leaderboard`, undefined, { auth: false });
    const ol = $("#board");
    ol.replaceChildren(...r.top.map((t) => el("li", { dataset: { user: String(t.user_id), coins: String(t.coins) } }, `User ${t.user_id}`, el("span", {}, coins(t.coins)))));
    if (r.top.length === 0) ol.replaceChildren(el("li", { class: "empty" }, "No gifts yet."));
  } catch {
    /* the board is a nicety; the next gift refreshes it */
  }
}

// The gateway caches a room's leaderboard for a second, and a request made
// while another one reads MySQL gets the last board at once: read it now,
// after the cache turned over, and once more after that read surely landed.
function refreshBoard() {
  for (const t of boardTimers) clearTimeout(t);
  loadBoard();
  boardTimers = [1200, 2500].map((ms) => setTimeout(loadBoard, ms));
}

push.on((f) => {
  if (f.type === "gift" && f.room_id === room) {
    addToFeed(f);
    refreshBoard();
    if (f.receiver_id === session.claims?.user || f.sender_id === session.claims?.user) loadWallet();
  } else if (f.type === "ticket" && f.kind === "gift") {
    onTicket(f);
  }
});
push.onReconnect(() => {
  if (room) {
    loadRecent();
    loadBoard();
  }
  loadWallet();
});

function join(ev) {
  ev?.preventDefault();
  const id = Number($("#room-id").value);
  if (!Number.isSafeInteger(id) || id <= 0) return;
  if (room && room !== id) push.leave(room);
  if (room !== id) {
    $("#feed").replaceChildren();
    seen.clear();
  }
  room = id;
  $("#room-title").textContent = `#${id}`;
  document.body.dataset.room = String(id);
  const u = new URL(location.href);
  u.searchParams.set("room", String(id));
  u.searchParams.set("anchor", $("#anchor-id").value);
  history.replaceState(null, "", u);
  push.join(id);
  loadRecent();
  loadBoard();
}

// ---- recharge

async function loadProducts() {
  const box = $("#products");
  try {
    const r = await api("GET", "/api/v1/pay/products", undefined, { auth: false });
    box.replaceChildren(
      ...r.products.map((p) => {
        const b = el("button", { type: "button", dataset: { product: String(p.id) } }, `${coins(p.coins)} for ${money(p.price)}`);
        b.addEventListener("click", () => recharge(p, b));
        return b;
      }),
    );
  } catch (e) {
    showMessage($("#recharge-msg"), humanError(e), "error");
  }
}

async function recharge(p, button) {
  const msg = $("#recharge-msg");
  if (!session.token) return showMessage(msg, "Sign in first.", "error");
  const cfg = await config();
  button.disabled = true;
  try {
    const o = await api("POST", "/api/v1/pay/orders", { product_id: p.id }, { idempotencyKey: newKey() });
    if (!cfg.dev) {
      showMessage(msg, `Payment order ${o.order_id} created: complete it with the payment provider; the coins arrive once it notifies us.`, "info");
      return;
    }
    showMessage(msg, `Paying ${money(o.amount)} through the dev sandbox…`, "info");
    await api("POST", `/api/v1/dev/pay/orders/${encodeURIComponent(o.order_id)}/complete`, {});
    for (let i = 0; i < 20; i++) {
      const s = await api("GET", `/api/v1/pay/orders/${encodeURIComponent(o.order_id)}`);
      if (s.status === "paid") {
        await loadWallet();
        showMessage(msg, `Paid: ${coins(o.coins)} added to your balance.`, "ok");
        return;
      }
      await new Promise((r) => setTimeout(r, 250 * (i + 1)));
    }
    showMessage(msg, "The payment is still being confirmed; your balance updates when it is.", "info");
  } catch (e) {
    showMessage(msg, humanError(e), "error");
    if (e.retryAfter) return holdOff(button, e.retryAfter);
  } finally {
    if (!button.dataset.retry) button.disabled = false;
  }
}

// ---- withdrawals

async function withdraw(ev) {
  ev.preventDefault();
  const msg = $("#withdraw-msg");
  const amount = Number($("#withdraw-amount").value);
  const button = ev.submitter || $("#withdraw-form button");
  button.disabled = true;
  try {
    const w = await api("POST", "/api/v1/withdrawals", { amount }, { idempotencyKey: newKey() });
    showMessage(msg, `Withdrawal ${w.withdrawal_id} of ${coins(amount)} requested; paying out…`, "info");
    loadWallet();
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 500 * (i + 1)));
      const s = await api("GET", `/api/v1/withdrawals/${w.withdrawal_id}`);
      if (s.status !== "pending") {
        showMessage(msg, s.status === "succeeded" ? `Withdrawal ${w.withdrawal_id} paid out.` : `Withdrawal ${w.withdrawal_id} failed; the coins are back in your earnings.`, s.status === "succeeded" ? "ok" : "error");
        loadWallet();
        return;
      }
    }
  } catch (e) {
    showMessage(msg, humanError(e, "withdrawal"), "error");
    if (e.retryAfter) return holdOff(button, e.retryAfter);
  } finally {
    if (!button.dataset.retry) button.disabled = false;
  }
}

window.addEventListener("flashgate:session", () => {
  loadWallet();
  if (room) loadRecent();
});

const params = new URLSearchParams(location.search);
if (params.get("room")) $("#room-id").value = params.get("room");
if (params.get("anchor")) $("#anchor-id").value = params.get("anchor");
$("#join-form").addEventListener("submit", join);
$("#gift-form").addEventListener("submit", sendGift);
$("#withdraw-form").addEventListener("submit", withdraw);
$("#wallet-refresh").addEventListener("click", loadWallet);
renderSignIn($("#signin"));
await loadCatalog();
loadWallet();
loadProducts();
push.start();
if (params.get("room")) join();
