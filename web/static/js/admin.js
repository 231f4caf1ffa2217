// The admin page, served on the gateway's internal listener: create a sale
// and add stock to a live one, with a pasted admin token.

import { $, api, session, humanError, holdOff, showMessage, renderSignIn } from "./common.js";

const iso = (local) => new Date(local).toISOString().replace(/\.\d{3}Z$/, "Z");
// datetime-local wants "YYYY-MM-DDTHH:MM" in local time.
const localInput = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);

function describe(ev) {
  return `Sale ${ev.id} "${ev.name}": ${ev.stock_left} of ${ev.stock_total} left, ${ev.status}, starts ${new Date(ev.starts_at).toLocaleString()}.`;
}

async function submit(form, msg, call) {
  const button = form.querySelector("button[type=submit]");
  if (!session.token) return showMessage(msg, "Paste an admin token first.", "error");
  button.disabled = true;
  try {
    showMessage(msg, describe(await call()), "ok");
  } catch (e) {
    showMessage(msg, humanError(e, "admin"), "error");
    if (e.retryAfter) return holdOff(button, e.retryAfter);
  } finally {
    if (!button.dataset.retry) button.disabled = false;
  }
}

$("#create-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  submit(ev.target, $("#create-msg"), () =>
    api("POST", "/api/v1/admin/events", {
      name: f.get("name"),
      price: Number(f.get("price")),
      stock: Number(f.get("stock")),
      starts_at: iso(f.get("starts_at")),
      ends_at: iso(f.get("ends_at")),
    }),
  );
});

$("#stock-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  submit(ev.target, $("#stock-msg"), () => api("POST", `/api/v1/admin/events/${Number(f.get("event"))}/stock`, { delta: Number(f.get("delta")) }));
});

const now = new Date();
$("#ev-start").value = localInput(new Date(now.getTime() + 60000));
$("#ev-end").value = localInput(new Date(now.getTime() + 3600000));
renderSignIn($("#signin"), { admin: true });
