"use strict";
// Restaurant search & order page. Vanilla JS, no dependencies.

const $ = (id) => document.getElementById(id);

// Order statuses: rank for ordering, label shown in #order-status.
const STATUS = {
  placed: { rank: 0, label: "placed" },
  paid: { rank: 1, label: "paid" },
  confirmed: { rank: 2, label: "confirmed" },
  email_sent: { rank: 3, label: "e-mail sent", final: true },
  rejected: { rank: 4, label: "rejected", final: true },
};
const rank = (s) => (STATUS[s] ? STATUS[s].rank : 99);
const label = (s) => (STATUS[s] ? STATUS[s].label : s);
const isFinal = (s) => Boolean(STATUS[s] && STATUS[s].final);

// Create an element with text (always textContent, never innerHTML).
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// fetch JSON; resolves to {ok, status, data}. Network errors become status 0.
async function api(url, opts) {
  try {
    const res = await fetch(url, opts);
    let data = null;
    try { data = await res.json(); } catch { /* empty or non-JSON body */ }
    return { ok: res.ok, status: res.status, data };
  } catch {
    return { ok: false, status: 0, data: { error: "Network error, please try again." } };
  }
}
const errText = (r) => (r.data && r.data.error) || `Request failed (${r.status})`;

function localTime(iso, withDate) {
  const d = new Date(iso);
  if (isNaN(d)) return iso || "";
  return withDate ? d.toLocaleString() : d.toLocaleTimeString();
}

/* ---------- Search ---------- */

function renderResults(list) {
  const ul = $("results");
  ul.replaceChildren();
  const n = list.length;
  $("results-count").textContent =
    n === 0 ? "No restaurants match." : `${n} restaurant${n === 1 ? "" : "s"}`;
  for (const r of list) {
    const li = el("li", null, "result");
    const info = el("div", null, "info");
    info.append(el("strong", r.name, "name"), el("span", r.style, "style"));
    const badges = el("span", null, "badges");
    if (r.vegetarian) badges.append(el("span", "vegetarian", "badge veg"));
    if (r.delivery) badges.append(el("span", "delivery", "badge del"));
    info.append(badges);
    const btn = el("button", "Order", "btn small");
    btn.type = "button";
    btn.setAttribute("aria-label", `Order from ${r.name}`);
    btn.addEventListener("click", () => {
      const sel = $("order-restaurant");
      if (![...sel.options].some((op) => op.value === r.name)) sel.append(new Option(r.name, r.name));
      sel.value = r.name;
      $("order-email").focus();
    });
    li.append(info, btn);
    ul.append(li);
  }
}

async function search(ev) {
  if (ev) ev.preventDefault();
  const p = new URLSearchParams();
  const name = $("search-name").value.trim();
  const style = $("search-style").value;
  if (name) p.set("restaurant_name", name);
  if (style) p.set("restaurant_style", style);
  if ($("search-vegetarian").checked) p.set("vegetarian", "true");
  if ($("search-delivery").checked) p.set("delivery", "true");
  const btn = $("search-button");
  btn.disabled = true;
  const r = await api(`/search?${p}`);
  btn.disabled = false;
  if (r.ok && Array.isArray(r.data)) renderResults(r.data);
  else {
    $("results").replaceChildren();
    $("results-count").textContent = errText(r);
  }
}

// Initial load: all restaurants fill the style and restaurant selects.
async function loadAll() {
  const r = await api("/search");
  if (!r.ok || !Array.isArray(r.data)) {
    $("results-count").textContent = errText(r);
    return;
  }
  const styles = [...new Set(r.data.map((x) => x.style))].sort();
  for (const s of styles) $("search-style").append(new Option(s, s));
  const names = r.data.map((x) => x.name).sort((a, b) => a.localeCompare(b));
  for (const n of names) $("order-restaurant").append(new Option(n, n));
  renderResults(r.data);
}

/* ---------- Order form ---------- */

const FIELDS = { email: "order-email", creditCard: "order-card", restaurant: "order-restaurant" };

function clearErrors() {
  $("order-form-error").hidden = true;
  for (const id of Object.values(FIELDS)) {
    const input = $(id);
    const err = $(`${id}-error`);
    err.hidden = true;
    err.textContent = "";
    input.removeAttribute("aria-invalid");
    // keep only non-error descriptions (e.g. the card hint)
    const rest = (input.getAttribute("aria-describedby") || "")
      .split(" ").filter((x) => x && x !== err.id).join(" ");
    if (rest) input.setAttribute("aria-describedby", rest);
    else input.removeAttribute("aria-describedby");
  }
}

function showError(msg, field) {
  const id = FIELDS[field];
  if (!id) {
    const top = $("order-form-error");
    top.textContent = msg;
    top.hidden = false;
    return;
  }
  const input = $(id);
  const err = $(`${id}-error`);
  err.textContent = msg;
  err.hidden = false;
  input.setAttribute("aria-invalid", "true");
  const d = input.getAttribute("aria-describedby");
  input.setAttribute("aria-describedby", d ? `${d} ${err.id}` : err.id);
  input.focus();
}

async function placeOrder(ev) {
  ev.preventDefault();
  clearErrors();
  const btn = $("order-submit");
  btn.disabled = true;
  btn.textContent = "Placing order…";
  const body = {
    email: $("order-email").value.trim(),
    creditCard: $("order-card").value.replace(/[\s-]/g, ""),
    restaurant: $("order-restaurant").value,
  };
  const r = await api("/orders", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  btn.disabled = false;
  btn.textContent = "Place order";
  if (r.status === 202 && r.data && r.data.order_id) {
    $("order-card").value = "";
    location.hash = `#order=${encodeURIComponent(r.data.order_id)}`;
  } else {
    showError(errText(r), r.data && r.data.field);
  }
}

/* ---------- Order view ---------- */

let current = null; // { id, email, history: Map<status, entry>, es }

function sentence(status, o) {
  switch (status) {
    case "placed": return "Order received – checking your payment…";
    case "paid": return "Payment accepted – waiting for the restaurant to confirm…";
    case "confirmed": return `${o.restaurant || "The restaurant"} confirmed your order – sending the confirmation e-mail…`;
    case "email_sent": return `Confirmation e-mail sent to ${o.email}.`;
    case "rejected": return "Sorry, your order was rejected.";
    default: return "";
  }
}

// Redraw timeline and current status from current.history.
function renderStatus() {
  const o = current;
  const entries = [...o.history.values()].sort((a, b) => rank(a.status) - rank(b.status));
  const ol = $("timeline");
  ol.replaceChildren();
  for (const e of entries) {
    const li = el("li");
    li.dataset.status = e.status;
    const t = el("time", localTime(e.at));
    t.dateTime = e.at || "";
    li.append(el("span", label(e.status), "t-label"), t);
    if (e.reason) li.append(el("span", e.reason, "t-reason"));
    ol.append(li);
  }
  const last = entries[entries.length - 1];
  const st = $("order-status");
  const text = last ? label(last.status) : "";
  if (st.textContent !== text) st.textContent = text; // avoid repeat announcements
  st.dataset.status = last ? last.status : "";
  $("order-status-text").textContent = last ? sentence(last.status, o) : "";
  const reason = $("order-reason");
  const rej = o.history.get("rejected");
  reason.hidden = !rej;
  reason.textContent = rej ? rej.reason || "unknown" : "";
}

// Add a history entry (deduped by status); returns true if final.
function addEntry(e) {
  if (!e || !e.status) return false;
  if (!current.history.has(e.status)) {
    current.history.set(e.status, e);
    renderStatus();
  }
  return [...current.history.keys()].some(isFinal);
}

function stopStream() {
  if (current && current.es) current.es.close();
  if (current) current.es = null;
}

// Live updates via Server-Sent Events.
function listen(o) {
  const es = new EventSource(`/orders/${encodeURIComponent(o.id)}/events`);
  o.es = es;
  es.addEventListener("status", (ev) => {
    if (current !== o) return es.close();
    let e;
    try { e = JSON.parse(ev.data); } catch { return; }
    if (addEntry(e)) stopStream();
  });
  es.addEventListener("error", () => {
    // Stream ended after a final status: close. Otherwise EventSource
    // reconnects itself; if it gave up (CLOSED), reopen after a pause.
    if (current !== o || [...o.history.keys()].some(isFinal)) return es.close();
    if (es.readyState === EventSource.CLOSED) {
      setTimeout(() => { if (current === o && o.es === es) listen(o); }, 3000);
    }
  });
}

async function showOrder(id) {
  stopStream();
  const o = { id, email: "", restaurant: "", history: new Map(), es: null };
  current = o;
  $("home-view").hidden = true;
  $("order-view").hidden = false;
  $("order-load-error").hidden = true;
  $("order-body").hidden = true;
  $("order-view-title").focus();

  const r = await api(`/orders/${encodeURIComponent(id)}`);
  if (current !== o) return; // user navigated away meanwhile
  if (!r.ok || !r.data) {
    $("order-load-error").textContent =
      r.status === 404 ? `Order ${id} was not found.` : errText(r);
    $("order-load-error").hidden = false;
    return;
  }
  const d = r.data;
  o.email = d.email || "";
  o.restaurant = d.restaurant || "";
  $("order-id").textContent = d.order_id || id;
  $("order-restaurant-name").textContent = o.restaurant;
  $("order-email-value").textContent = o.email;
  $("order-card-value").textContent = `•••• ${d.card_last4 || ""}`;
  $("order-amount").textContent = d.amount || "";
  $("order-placed").textContent = localTime(d.placed_at, true);
  // Render the known history once, then follow live updates.
  const hist = d.history && d.history.length ? d.history : [{ status: d.status, at: d.placed_at }];
  for (const e of hist) if (e && e.status && !o.history.has(e.status)) o.history.set(e.status, e);
  renderStatus();
  $("order-body").hidden = false;
  if (!isFinal(d.status) && ![...o.history.keys()].some(isFinal)) listen(o);
}

function showHome() {
  stopStream();
  current = null;
  $("order-view").hidden = true;
  $("home-view").hidden = false;
}

// Route on the URL hash: "#order=<id>" shows an order, anything else the home view.
function route() {
  const id = new URLSearchParams(location.hash.slice(1)).get("order");
  if (id) {
    if (!current || current.id !== id) showOrder(id);
  } else if (current || $("home-view").hidden) {
    showHome();
    $("order-title").focus();
  }
}

$("search-form").addEventListener("submit", search);
$("order-form").addEventListener("submit", placeOrder);
window.addEventListener("hashchange", route);
loadAll();
route();
