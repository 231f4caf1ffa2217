// Shared by the pages: the API client, error sentences, the signed-in user
// and small DOM helpers. Everything goes through the public API, the way any
// client of flashgate would.

export const $ = (sel, root = document) => root.querySelector(sel);

// el builds an element: el("button", {type: "button", onclick: f}, "Buy").
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) e.append(c);
  }
  return e;
}

let configPromise;
// config is the deployment's /config.json: {dev, ws_url, internal}.
export function config() {
  configPromise ??= fetch("/config.json", { cache: "no-store" }).then((r) => {
    if (!r.ok) throw new Error("cannot read /config.json");
    return r.json();
  });
  return configPromise;
}

// ---- the signed-in user: one per tab (sessionStorage), so two tabs can be two users.

const TOKEN_KEY = "flashgate.token";

// decodeToken reads a flashgate token's payload (user id, role, expiry)
// without checking it: the server checks it on every request.
export function decodeToken(token) {
  try {
    const [p] = token.split(".");
    const b64 = p.replace(/-/g, "+").replace(/_/g, "/");
    const [id, role, exp] = atob(b64 + "===".slice((b64.length + 3) % 4)).split(".");
    const user = Number(id);
    if (!Number.isSafeInteger(user) || user <= 0) return null;
    return { user, role, expires: new Date(Number(exp) * 1000) };
  } catch {
    return null;
  }
}

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  },
  get claims() {
    const t = this.token;
    return t ? decodeToken(t) : null;
  },
  set(token) {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    window.dispatchEvent(new CustomEvent("flashgate:session"));
  },
};

// ---- the API

export class ApiError extends Error {
  constructor(status, code, message, extra = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = extra.retryAfter || 0;
    this.ticket = extra.ticket;
  }
}

// api calls the gateway. It throws ApiError for every non-2xx answer, and
// for a network failure (code "network").
export async function api(method, path, body, { auth = true, idempotencyKey, base = "" } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && session.token) headers.Authorization = "Bearer " + session.token;
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  let resp;
  try {
    resp = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch {
    throw new ApiError(0, "network", "cannot reach the server");
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (resp.ok) return data;
  const e = (data && data.error) || {};
  const retry = parseInt(resp.headers.get("Retry-After") || "0", 10);
  throw new ApiError(resp.status, e.code || "http_" + resp.status, e.message || resp.statusText, {
    retryAfter: Number.isFinite(retry) && retry > 0 ? retry : 0,
    ticket: data && data.ticket,
  });
}

// newKey is an Idempotency-Key: a repeat of one request (a double click, a
// retry after a lost answer) is then answered once.
export function newKey() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// Every error code of the API (and every failure reason of a ticket) as a
// sentence a person understands. context picks the wording where one code
// means different things (insufficient_balance for a gift or a withdrawal).
const sentences = {
  invalid_request: (e) => `That request was not accepted: ${e.message}.`,
  self_gift: () => "You cannot send a gift to yourself; pick another receiver.",
  unauthorized: () => "You are not signed in, or your token has expired. Pick a user or paste a fresh token.",
  insufficient_balance: (e, ctx) =>
    ctx === "withdrawal"
      ? "Your earnings are not enough for that withdrawal."
      : "You don't have enough coins for that gift. Recharge, or send fewer.",
  forbidden: (e, ctx) => (ctx === "admin" ? "That token is not an admin token." : "You are not allowed to do that."),
  not_found: (e, ctx) =>
    ctx === "gift" ? "That gift is not in the catalog any more." : ctx === "order" ? "That sale does not exist any more." : "That does not exist (any more).",
  method_not_allowed: () => "The server does not accept this request here.",
  already_purchased: () => "You already have this one: one unit per person.",
  not_started: () => "The sale has not started yet. The button turns on when it does.",
  ended: () => "The sale has ended.",
  invalid_state: () => "This order can no longer be changed: it is already paid, cancelled or expired.",
  sold_out: () => "Sold out: every unit is taken.",
  body_too_large: () => "That request is too large.",
  request_timeout: () => "The request took too long to arrive. Try again.",
  rate_limited: (e) => `Too many requests. Wait ${e.retryAfter || 1} s and try again.`,
  unavailable: (e) => `The service is busy or partly down; nothing was reserved or charged. Try again in ${e.retryAfter || 1} s.`,
  network: () => "Cannot reach the server. Check your connection and try again.",
  // Failure reasons of tickets (pushed over the socket).
  aborted: () => "It was undone after a failure on our side; nothing was charged.",
  timeout: () => "It did not go through in time; nothing was charged.",
  invalid: () => "It was refused as invalid; nothing was charged.",
  duplicate: () => "The same request was already answered under another ticket.",
};

export function humanError(err, context) {
  const f = sentences[err.code];
  if (f) return f(err, context);
  if (err.status >= 500) return "Something went wrong on our side. Try again shortly.";
  return `Something went wrong (${err.code || err.message}).`;
}

// reasonSentence turns a ticket's failure reason into a sentence.
export function reasonSentence(reason, context) {
  return humanError({ code: reason, message: reason }, context);
}

// holdOff disables a control for an answer's Retry-After, counting down in
// its label, and re-enables it (unless stillDisabled() says otherwise).
export function holdOff(button, seconds, stillDisabled = () => false) {
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  button.disabled = true;
  let left = seconds;
  const tick = () => {
    if (left <= 0) {
      clearInterval(t);
      button.textContent = label;
      delete button.dataset.retry;
      button.disabled = stillDisabled();
      return;
    }
    button.dataset.retry = String(left);
    button.textContent = `${label} (${left} s)`;
    left--;
  };
  const t = setInterval(tick, 1000);
  tick();
}

// showMessage writes a status line; kind is "ok", "error" or "info".
export function showMessage(node, text, kind = "info") {
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = !text;
}

// duration formats milliseconds as 1d 02:03:04, 02:03:04 or 03:04.
export function duration(ms) {
  let s = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const p = (n) => String(n).padStart(2, "0");
  const hms = h > 0 || d > 0 ? `${p(h)}:${p(m)}:${p(s)}` : `${p(m)}:${p(s)}`;
  return d > 0 ? `${d}d ${hms}` : hms;
}

export const money = (cents) => (cents / 100).toLocaleString(undefined, { style: "currency", currency: "USD" });
export const coins = (n) => `${Number(n).toLocaleString()} coin${n === 1 ? "" : "s"}`;

// ---- sign-in: a user picker in dev mode (the gateway mints the token),
// a pasted token otherwise.

export async function renderSignIn(root, { admin = false } = {}) {
  const cfg = await config();
  const status = el("p", { class: "who", "aria-live": "polite", id: "who" });
  const update = () => {
    const c = session.claims;
    status.textContent = c ? `Signed in as user ${c.user}${c.role === "admin" ? " (admin)" : ""}` : "Not signed in";
    status.dataset.user = c ? String(c.user) : "";
  };
  const msg = el("p", { class: "msg", role: "alert", hidden: true });
  const forms = [];
  if (cfg.dev && !cfg.internal) {
    const input = el("input", { id: "pick-user", name: "user", type: "number", min: "1", step: "1", required: true, inputmode: "numeric", value: session.claims?.user || 1 });
    const f = el(
      "form",
      { class: "inline", id: "pick-form", "aria-label": "Pick a dev user" },
      el("label", { for: "pick-user" }, "Dev user"),
      input,
      el("button", { type: "submit" }, "Sign in"),
    );
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const r = await api("POST", "/api/v1/dev/token", { user_id: Number(input.value), admin }, { auth: false });
        session.set(r.token);
        showMessage(msg, "");
      } catch (e) {
        showMessage(msg, humanError(e), "error");
      }
    });
    forms.push(f);
  }
  const tok = el("input", { id: "paste-token", name: "token", type: "password", autocomplete: "off", spellcheck: "false", placeholder: "token" });
  const pf = el(
    "form",
    { class: "inline", id: "token-form", "aria-label": "Paste a token" },
    el("label", { for: "paste-token" }, admin ? "Admin token" : "Token"),
    tok,
    el("button", { type: "submit" }, "Use token"),
  );
  pf.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = tok.value.trim();
    if (!decodeToken(v)) {
      showMessage(msg, "That does not look like a flashgate token.", "error");
      return;
    }
    session.set(v);
    tok.value = "";
    showMessage(msg, "");
  });
  forms.push(pf);
  const out = el("button", { type: "button", class: "link", onclick: () => session.set("") }, "Sign out");
  // Signed in, the forms fold away behind "Switch user" (a phone's header
  // stays short); signed out, they are open.
  const box = el("details", { class: "switch" }, el("summary", {}, "Switch user"), ...forms, out);
  root.replaceChildren(status, box, msg);
  const fold = () => {
    update();
    box.open = !session.token;
  };
  fold();
  window.addEventListener("flashgate:session", fold);
}
