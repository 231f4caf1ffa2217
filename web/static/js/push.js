// The WebSocket to the ws service (docs/openapi.yaml, "WebSocket push"). It reconnects
// with exponential backoff and jitter when the socket drops, and sends again
// every join and watch it had, so a page keeps its rooms and events across
// a ws restart. Listeners get every server frame: {type: "ticket"|"gift"|"stock", ...}.

import { config, session } from "./common.js";

const MIN_BACKOFF = 500; // ms
const MAX_BACKOFF = 15000;

export class Push {
  constructor(statusNode) {
    this.statusNode = statusNode;
    this.rooms = new Set();
    this.events = new Set();
    this.listeners = new Set();
    this.reconnectListeners = new Set();
    this.attempt = 0;
    this.opens = 0; // how many times a socket opened; the tests read it
    this.ws = null;
    this.timer = null;
    this.closedByUs = false;
    window.addEventListener("flashgate:session", () => this.restart());
  }

  on(f) {
    this.listeners.add(f);
  }

  // onReconnect runs after a socket opened again following a drop: what
  // was pushed meanwhile is lost, so the page reads it back over HTTP.
  onReconnect(f) {
    this.reconnectListeners.add(f);
  }

  join(room) {
    this.rooms.add(room);
    this.send({ type: "join", room_id: room });
  }

  leave(room) {
    this.rooms.delete(room);
    this.send({ type: "leave", room_id: room });
  }

  watch(event) {
    this.events.add(event);
    this.send({ type: "watch", event_id: event });
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  setState(state, text) {
    const n = this.statusNode;
    if (!n) return;
    n.dataset.state = state;
    n.dataset.opens = String(this.opens);
    n.textContent = text;
  }

  async start() {
    if (!session.token) {
      this.setState("off", "Live updates: sign in to connect");
      return;
    }
    const cfg = await config();
    this.closedByUs = false;
    this.setState("connecting", "Live updates: connecting…");
    let ws;
    try {
      ws = new WebSocket(cfg.ws_url + "?token=" + encodeURIComponent(session.token));
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      const again = this.opens > 0;
      this.attempt = 0;
      this.opens++;
      for (const r of this.rooms) ws.send(JSON.stringify({ type: "join", room_id: r }));
      for (const e of this.events) ws.send(JSON.stringify({ type: "watch", event_id: e }));
      this.setState("open", "Live updates: connected");
      if (again) for (const f of this.reconnectListeners) f();
    };
    ws.onmessage = (m) => {
      let frame;
      try {
        frame = JSON.parse(m.data);
      } catch {
        return;
      }
      for (const f of this.listeners) f(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.closedByUs) return;
      // 4001: the token expired. Reconnecting with it would be refused.
      if (ev.code === 4001) {
        this.setState("off", "Live updates: your token expired; sign in again");
        return;
      }
      this.retry();
    };
  }

  retry() {
    const base = Math.min(MAX_BACKOFF, MIN_BACKOFF * 2 ** this.attempt);
    const wait = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt++;
    this.setState("reconnecting", `Live updates: disconnected, reconnecting in ${Math.ceil(wait / 1000)} s…`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), wait);
  }

  restart() {
    this.closedByUs = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, "signed in again");
    this.ws = null;
    this.attempt = 0;
    this.start();
  }
}
