// The console: live status over Server-Sent Events, dead letters on demand, replay buttons.
"use strict";

const $ = (sel) => document.querySelector(sel);
let shownTopic = null;

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function fill(tbody, items, draw) {
  tbody.replaceChildren();
  for (const item of items) draw(tbody.insertRow(), item);
}

function render(s) {
  const services = new Map();
  for (const c of s.checks) {
    const [service, check] = c.name.includes("/") ? c.name.split("/", 2) : [c.url, c.name];
    const row = services.get(service) || { checks: [], failing: [] };
    row.checks.push(check);
    if (c.error) row.failing.push(`${check}: ${c.error}`);
    services.set(service, row);
  }
  fill($("#services tbody"), [...services], (tr, [name, r]) => {
    tr.dataset.service = name;
    cell(tr, name);
    cell(tr, r.failing.length ? "failing: " + r.failing.join("; ") : "ready", r.failing.length ? "bad" : "ok");
    cell(tr, r.checks.join(", "));
  });

  const groups = new Map();
  for (const g of s.groups) {
    const key = `${g.group}\u0000${g.topic}`;
    const row = groups.get(key) || { group: g.group, topic: g.topic, end: 0, lag: 0, parts: [] };
    row.end += g.end; row.lag += g.lag; row.parts.push(g.lag);
    groups.set(key, row);
  }
  fill($("#groups tbody"), [...groups.values()], (tr, g) => {
    tr.dataset.group = g.group;
    tr.dataset.topic = g.topic;
    cell(tr, g.group);
    cell(tr, g.topic);
    cell(tr, String(g.end), "num");
    cell(tr, String(g.lag), g.lag > 0 ? "num lagging lag" : "num lag");
    cell(tr, g.parts.join(" "), "num");
  });

  const num = (v, digits = 1) => (v == null ? "–" : v.toFixed(digits));
  // A group's or a route's row: name, count (class `cls`), failures, rate, p50, p99.
  const counted = (tr, name, count, cls, failed, a) => {
    cell(tr, name);
    cell(tr, String(count), `num ${cls}`);
    cell(tr, String(failed), failed > 0 ? "num lagging" : "num");
    cell(tr, num(a.per_second), "num rate");
    cell(tr, num(a.p50_ms), "num");
    cell(tr, num(a.p99_ms), "num");
  };
  fill($("#activity tbody"), s.activity.groups, (tr, g) => {
    tr.dataset.group = g.group;
    counted(tr, g.group, g.processed, "handled", g.dead_lettered, g);
  });
  fill($("#routes tbody"), s.activity.routes, (tr, r) => {
    tr.dataset.route = r.route;
    counted(tr, r.route, r.requests, "requests", r.errors_5xx, r);
  });
  const pending = s.activity.outboxes.reduce((n, o) => n + o.pending, 0);
  $("#outbox").textContent = s.activity.outboxes.length
    ? `Outbox: ${pending} event(s) committed and not yet in Kafka` +
      (s.activity.outboxes.length > 1 ? ` (${s.activity.outboxes.map((o) => `${o.pending} at ${o.url}`).join(", ")})` : "")
    : "";

  fill($("#topics tbody"), s.topics, (tr, t) => {
    tr.dataset.topic = t.name;
    cell(tr, t.name);
    cell(tr, String(t.partitions), "num");
    cell(tr, String(t.records), "num");
    const td = cell(tr, "", "num dead");
    if (t.dead_letters == null) { td.textContent = "–"; return; }
    td.textContent = t.replayed ? `${t.dead_letters} (${t.replayed} replayed) ` : `${t.dead_letters} `;
    if (t.dead_letters > 0) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Show";
      b.setAttribute("aria-label", `Show the dead letters of ${t.name}`);
      b.addEventListener("click", () => showLetters(t.name));
      td.append(b);
    }
  });

  const failing = s.checks.filter((c) => c.error).length;
  const lag = s.groups.reduce((n, g) => n + g.lag, 0);
  const dead = s.topics.reduce((n, t) => n + (t.dead_letters || 0), 0);
  $("#summary").textContent =
    `${failing ? failing + " check(s) failing" : "All services ready"} · total lag ${lag} · ` +
    `${dead} dead letter(s) · outbox ${pending} · Kafka ${s.kafka} · ${new Date().toLocaleTimeString()}`;
  document.body.dataset.updated = String(Date.now());
}

// `said`: what the last action did, kept in front of the count.
async function showLetters(topic, said = "") {
  shownTopic = topic;
  const section = $("#letters");
  section.hidden = false;
  $("#letters-h").textContent = `Dead letters of ${topic}`;
  const r = await fetch(`/console/api/dlq/${encodeURIComponent(topic)}`);
  const body = await r.json();
  if (!r.ok) { $("#letters-note").textContent = body.error; return; }
  fill($("#letters tbody"), body.letters, (tr, l) => {
    tr.dataset.position = l.position;
    cell(tr, l.position);
    const o = l.origin;
    cell(tr, o.partition == null ? o.topic : `${o.topic} ${o.partition}:${o.offset}`);
    cell(tr, l.error);
    cell(tr, l.key ?? "");
    cell(tr, l.replayed ? "yes" : "no", "replayed");
    const td = tr.insertCell();
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "Replay";
    b.disabled = l.replayed;
    b.setAttribute("aria-label", `Replay ${l.position} to ${o.topic}`);
    b.addEventListener("click", () => replay(topic, { positions: [l.position] }));
    td.append(b);
  });
  $("#letters-note").textContent = `${said}${body.letters.length} letter(s) in ${body.topic}.`;
}

async function replay(topic, request) {
  const r = await fetch(`/console/api/dlq/${encodeURIComponent(topic)}/replay`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(request),
  });
  const body = await r.json();
  const said = r.ok
    ? `Replayed ${body.replayed.length}; ${body.already.length} replayed before, not sent again. `
    : `Replay failed: ${body.error}. `;
  $("#letters-note").textContent = said;
  await showLetters(topic, said);
}

$("#replay-all").addEventListener("click", () => shownTopic && replay(shownTopic, { all: true }));

const events = new EventSource("/console/api/events");
events.addEventListener("status", (e) => render(JSON.parse(e.data)));
events.addEventListener("failure", (e) => { $("#summary").textContent = `Cannot read the status: ${e.data}`; });
events.onerror = () => { $("#summary").textContent = "Connection to the console lost; retrying…"; };
