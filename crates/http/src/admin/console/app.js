// Outpost's web console: plain JavaScript, no framework, no build step. Every value the broker
// returns is put in the page as text (never as HTML): topic names and client ids come from
// devices. It talks to the admin API (/admin/v1), to the AWS APIs of the same port (with its
// session instead of a signature) and, for the live view, to MQTT over WebSocket.
"use strict";

const $ = (sel) => document.querySelector(sel);
const HEAD = { "x-outpost-console": "1" };
const POLL_MS = 2000;
const HISTORY = 60;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") e.addEventListener("click", v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function status(text, isError) {
  const s = $("#status");
  s.textContent = text || "";
  s.className = "status" + (isError ? " error" : "");
}

class HttpError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

async function admin(method, path, body) {
  const r = await fetch("/admin/v1" + path, {
    method, credentials: "same-origin",
    headers: body === undefined ? HEAD : { ...HEAD, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) { showLogin(); throw new HttpError(401, "Not logged in"); }
  if (r.status === 204) return null;
  const v = await r.json().catch(() => ({}));
  if (!r.ok) throw new HttpError(v.error || r.status, v.message || r.statusText);
  return v;
}

// The AWS JSON protocols (SQS, EventBridge) with the console's session.
async function awsJson(target, version, body) {
  const r = await fetch("/", {
    method: "POST", credentials: "same-origin",
    headers: { ...HEAD, "x-amz-target": target, "content-type": "application/x-amz-json-" + version },
    body: JSON.stringify(body || {}),
  });
  const v = await r.json().catch(() => ({}));
  if (!r.ok) throw new HttpError(v.__type || r.status, v.message || v.Message || r.statusText);
  return v;
}
const sqs = (op, body) => awsJson("AmazonSQS." + op, "1.0", body);
const events = (op, body) => awsJson("AWSEvents." + op, "1.1", body);

// SNS speaks the query protocol: a form in, XML out.
async function sns(params) {
  const form = new URLSearchParams({ Version: "2010-03-31", ...params });
  const r = await fetch("/", {
    method: "POST", credentials: "same-origin",
    headers: { ...HEAD, "content-type": "application/x-www-form-urlencoded" },
    body: form.toString(),
  });
  const xml = new DOMParser().parseFromString(await r.text(), "application/xml");
  if (!r.ok) {
    const m = xml.querySelector("Message");
    throw new HttpError(r.status, m ? m.textContent : r.statusText);
  }
  return xml;
}

async function dynsec(...commands) {
  const v = await admin("POST", "/dynsec", { commands });
  const failed = v.responses.find((r) => r.error);
  if (failed) throw new HttpError("dynsec", failed.command + ": " + failed.error);
  return v.responses;
}

// ---- login ---------------------------------------------------------------------------------

function showLogin() {
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#login-user").focus();
}

async function start() {
  try {
    const me = await admin("GET", "/whoami");
    $("#login").hidden = true;
    $("#app").hidden = false;
    $("#who").textContent = me.anonymous ? "anonymous (no users configured)" : "logged in as " + me.identity;
    $("#logout").hidden = me.anonymous;
    route();
  } catch (e) {
    if (e.code !== 401) status(e.message, true);
  }
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#login-error").textContent = "";
  const r = await fetch("/admin/v1/login", {
    method: "POST", credentials: "same-origin",
    headers: { ...HEAD, "content-type": "application/json" },
    body: JSON.stringify({ username: $("#login-user").value, password: $("#login-password").value }),
  });
  if (!r.ok) {
    const v = await r.json().catch(() => ({}));
    $("#login-error").textContent = v.message || "Login failed";
    return;
  }
  $("#login-password").value = "";
  start();
});

$("#logout").addEventListener("click", async () => {
  await fetch("/admin/v1/logout", { method: "POST", credentials: "same-origin", headers: HEAD });
  stopLive();
  showLogin();
});

// ---- pages ---------------------------------------------------------------------------------

const pages = {
  overview: refreshOverview, clients: refreshClients, topics: refreshRetained, queues: refreshQueues,
  sns: refreshSns, rules: refreshRules, bridges: refreshBridges, security: refreshSecurity, live: () => {},
};
let current = "overview";
let timer = null;

function route() {
  const name = (location.hash || "#overview").slice(1);
  current = pages[name] ? name : "overview";
  for (const p of Object.keys(pages)) $("#page-" + p).hidden = p !== current;
  for (const a of document.querySelectorAll(".tabs a")) {
    if (a.getAttribute("href") === "#" + current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  status("");
  clearInterval(timer);
  run(pages[current]);
  // The overview and the bridges are live figures; the other pages refresh on request.
  if (current === "overview" || current === "bridges") timer = setInterval(() => run(pages[current]), POLL_MS);
}
window.addEventListener("hashchange", route);

async function run(f) {
  try { await f(); } catch (e) { if (e.code !== 401) status(e.message, true); }
}

function act(label, f, cls) {
  return el("button", { type: "button", class: cls || "secondary", onclick: async () => {
    try { status(""); await f(); } catch (e) { if (e.code !== 401) status(e.message, true); }
  } }, label);
}

function fill(tableSel, rows) {
  const body = $(tableSel + " tbody");
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const cols = $(tableSel + " thead tr").children.length;
    body.append(el("tr", {}, el("td", { colspan: cols }, "None")));
  }
}

// ---- overview ------------------------------------------------------------------------------

const history = [];
const PROTOCOLS = ["mqtt", "sqs", "sns", "events"];
const COLORS = { mqtt: "#0b63c5", sqs: "#d9730d", sns: "#1a7f37", events: "#8250df", conn: "#0b63c5" };

function sample(s, name, labels) {
  if (!labels) return s[name] || 0;
  const key = name + "{" + Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(",") + "}";
  return s[key] || 0;
}

// Samples whose name is `name` with labels, as [{labels}, value].
function family(s, name) {
  const out = [];
  for (const [k, v] of Object.entries(s)) {
    if (!k.startsWith(name + "{")) continue;
    const labels = {};
    for (const m of k.slice(name.length + 1, -1).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = m[2];
    out.push([labels, v]);
  }
  return out;
}

function fmtBytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function chart(svgSel, series, legendSel) {
  const svg = $(svgSel);
  const w = 300, h = 100;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(...series.flatMap((s) => s.values)) || 1;
  const ns = "http://www.w3.org/2000/svg";
  const parts = [];
  for (const s of series) {
    const pts = s.values.map((v, i) => `${(i * w) / (HISTORY - 1)},${h - (v / max) * (h - 4)}`).join(" ");
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts);
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", s.color);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    parts.push(line);
  }
  const top = document.createElementNS(ns, "text");
  top.setAttribute("x", "2"); top.setAttribute("y", "10"); top.setAttribute("font-size", "9");
  top.textContent = "max " + (max < 10 ? max.toFixed(2) : Math.round(max * 10) / 10);
  parts.push(top);
  svg.replaceChildren(...parts);
  if (legendSel) {
    $(legendSel).replaceChildren(...series.map((s) =>
      el("span", { style: undefined, "data-series": s.name }, `${s.name} ${s.values[s.values.length - 1].toFixed(1)}/s`)));
    for (const span of $(legendSel).children) span.style.setProperty("--c", COLORS[span.dataset.series]);
  }
}

async function refreshOverview() {
  const o = await admin("GET", "/overview");
  const s = o.samples;
  const now = performance.now() / 1000;
  const queued = family(s, "outpost_queue_messages").reduce((n, [l, v]) => n + (l.queue ? v : 0), 0);
  const backlog = family(s, "outpost_bridge_backlog_messages").reduce((n, [, v]) => n + v, 0);
  const point = {
    t: now, in: {}, out: {}, conn: sample(s, "outpost_mqtt_clients_connected"),
    queued, backlog, disk: sample(s, "outpost_store_disk_bytes"),
    fsyncSum: sample(s, "outpost_store_fsync_seconds_sum"), fsyncs: sample(s, "outpost_store_fsync_seconds_count"),
  };
  for (const p of PROTOCOLS) {
    point.in[p] = sample(s, "outpost_messages_received_total", { protocol: p });
    point.out[p] = sample(s, "outpost_messages_sent_total", { protocol: p });
  }
  history.push(point);
  while (history.length > HISTORY + 1) history.shift();
  const rates = (dir, p) => {
    const out = [];
    for (let i = 1; i < history.length; i++) {
      const dt = history[i].t - history[i - 1].t;
      out.push(dt > 0 ? Math.max(0, (history[i][dir][p] - history[i - 1][dir][p]) / dt) : 0);
    }
    while (out.length < HISTORY) out.unshift(0);
    return out;
  };
  const fsyncs = sample(s, "outpost_store_fsync_seconds_count");
  const fsyncMean = fsyncs ? (sample(s, "outpost_store_fsync_seconds_sum") / fsyncs) * 1000 : 0;
  const cards = [
    ["Connected clients", point.conn, "card-connected"],
    ["Sessions", sample(s, "outpost_mqtt_sessions")],
    ["Subscriptions", sample(s, "outpost_mqtt_subscriptions")],
    ["Retained messages", sample(s, "outpost_mqtt_retained_messages")],
    ["Queues", sample(s, "outpost_queues")],
    ["SNS topics", sample(s, "outpost_topics")],
    ["Rules", sample(s, "outpost_routing_rules")],
    ["Store on disk", fmtBytes(sample(s, "outpost_store_disk_bytes"))],
    ["Mean fsync", fsyncMean.toFixed(2) + " ms"],
    ["Up", Math.floor(o.uptimeSeconds / 60) + " min"],
  ];
  $("#cards").replaceChildren(...cards.map(([label, value, id]) =>
    el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value", id }, value))));
  $("#chart-in").dataset.samples = String(history.length);
  chart("#chart-in", PROTOCOLS.map((p) => ({ name: p, color: COLORS[p], values: rates("in", p) })), "#legend-in");
  chart("#chart-out", PROTOCOLS.map((p) => ({ name: p, color: COLORS[p], values: rates("out", p) })), "#legend-out");
  const series = (f) => {
    const v = history.map(f);
    while (v.length < HISTORY) v.unshift(0);
    return v.slice(-HISTORY);
  };
  chart("#chart-conn", [{ name: "conn", color: COLORS.conn, values: series((h) => h.conn) }]);
  chart("#chart-depth", [
    { name: "queued", color: COLORS.sqs, values: series((h) => h.queued) },
    { name: "backlog", color: COLORS.events, values: series((h) => h.backlog) },
  ]);
  chart("#chart-disk", [{ name: "disk", color: COLORS.sns, values: series((h) => h.disk / 1024) }]);
  // The mean fsync of each interval (ms): the change of the histogram's sum over its count's.
  const fsync = [];
  for (let i = 1; i < history.length; i++) {
    const n = history[i].fsyncs - history[i - 1].fsyncs;
    fsync.push(n > 0 ? ((history[i].fsyncSum - history[i - 1].fsyncSum) / n) * 1000 : 0);
  }
  while (fsync.length < HISTORY) fsync.unshift(0);
  chart("#chart-fsync", [{ name: "fsync", color: COLORS.mqtt, values: fsync.slice(-HISTORY) }]);
  const queues = {};
  for (const [l, v] of family(s, "outpost_queue_messages")) {
    if (!l.queue) continue;
    (queues[l.queue] = queues[l.queue] || {})[l.state] = v;
  }
  fill("#ov-queues", Object.entries(queues).map(([q, st]) =>
    el("tr", {}, el("td", {}, q), el("td", {}, st.visible || 0), el("td", {}, st.inflight || st.in_flight || 0), el("td", {}, st.delayed || 0))));
  fill("#ov-bridges", bridgeRows(s).map((b) =>
    el("tr", {}, el("td", {}, b.name), el("td", { class: b.connected ? "on" : "off" }, b.connected ? "up" : "down"), el("td", {}, b.backlog), el("td", {}, b.forwarded))));
}

function bridgeRows(s) {
  const by = {};
  const take = (name, field) => {
    for (const [l, v] of family(s, name)) if (l.bridge) (by[l.bridge] = by[l.bridge] || { name: l.bridge })[field] = (by[l.bridge][field] || 0) + v;
  };
  take("outpost_bridge_connected", "connected");
  take("outpost_bridge_backlog_messages", "backlog");
  take("outpost_bridge_backlog_bytes", "bytes");
  take("outpost_bridge_oldest_pending_seconds", "oldest");
  take("outpost_bridge_forwarded_total", "forwarded");
  take("outpost_bridge_received_total", "received");
  take("outpost_bridge_connects_total", "connects");
  return Object.values(by).map((b) => ({ backlog: 0, bytes: 0, oldest: 0, forwarded: 0, received: 0, connects: 0, ...b }));
}

async function refreshBridges() {
  const o = await admin("GET", "/overview");
  fill("#bridges", bridgeRows(o.samples).map((b) => el("tr", {},
    el("td", {}, b.name), el("td", { class: b.connected ? "on" : "off" }, b.connected ? "up" : "down"),
    el("td", {}, b.backlog), el("td", {}, fmtBytes(b.bytes)), el("td", {}, b.oldest),
    el("td", {}, b.forwarded), el("td", {}, b.received), el("td", {}, b.connects))));
}

// ---- clients -------------------------------------------------------------------------------

async function refreshClients() {
  const q = encodeURIComponent($("#client-filter").value);
  const v = await admin("GET", "/clients?limit=500&search=" + q);
  fill("#clients", v.clients.map((c) => el("tr", { "data-client": c.clientId },
    el("td", {}, c.clientId), el("td", {}, c.identity || (c.connected ? "anonymous" : "")),
    el("td", { class: c.connected ? "on" : "off" }, c.connected ? "connected" : "offline"),
    el("td", {}, c.protocol || ""), el("td", {}, c.subscriptions), el("td", {}, c.queued),
    el("td", {},
      act("Details", () => showClient(c.clientId)),
      c.connected ? act("Kick " + c.clientId, async () => {
        await admin("DELETE", "/clients/" + encodeURIComponent(c.clientId) + "/connection");
        await refreshClients();
        status(c.clientId + " was disconnected");
      }, "danger") : null))));
  status(v.total + " sessions");
}

async function showClient(id) {
  const c = await admin("GET", "/clients/" + encodeURIComponent(id));
  $("#client-detail").replaceChildren(
    el("h3", {}, c.clientId),
    el("p", {}, `${c.connected ? "Connected" : "Offline"}; protocol ${c.protocol || "-"}; session expiry ${c.sessionExpiry} s; ${c.queued} messages queued`),
    el("h4", {}, "Subscriptions"),
    el("ul", {}, c.subscriptions.map((s) => el("li", {}, `${s.filter} (QoS ${s.qos})`))),
    el("h4", {}, "Messages it holds (first 20)"),
    c.messages.length ? el("ol", {}, c.messages.map((m) => el("li", {},
      `${m.topic} — ${m.bytes} bytes, QoS ${m.qos}${m.inFlight ? ", sent, not yet acknowledged" : ""}`))) : el("p", {}, "None."));
}

$("#client-search").addEventListener("submit", (ev) => { ev.preventDefault(); run(refreshClients); });

// ---- retained ------------------------------------------------------------------------------

// The retained topics as a tree of levels; each topic with its size, QoS, peek and purge.
async function refreshRetained() {
  const v = await admin("GET", "/retained?limit=1000");
  const root = { children: new Map(), topic: null };
  for (const r of v.retained) {
    let node = root;
    for (const level of r.topic.split("/")) {
      if (!node.children.has(level)) node.children.set(level, { children: new Map(), topic: null });
      node = node.children.get(level);
    }
    node.topic = r;
  }
  const render = (node) => el("ul", { class: "tree" }, [...node.children.entries()].map(([level, child]) => {
    const r = child.topic;
    const line = el("span", { class: "level" }, level || "(empty level)");
    const actions = r ? el("span", { class: "leaf" },
      ` ${r.payloadSize} bytes, QoS ${r.qos} `,
      act("Peek", async () => {
        const m = await admin("GET", "/retained/message?topic=" + encodeURIComponent(r.topic));
        $("#retained-view").textContent = m.topic + "\n" + (m.text !== null && m.text !== undefined ? m.text : "(binary) " + m.payload);
      }),
      r.topic.startsWith("$SYS") ? null : act("Purge " + r.topic, async () => {
        await admin("DELETE", "/retained/message?topic=" + encodeURIComponent(r.topic));
        await refreshRetained();
        status("Purged the retained message of " + r.topic);
      }, "danger")) : null;
    if (child.children.size === 0) return el("li", { "data-topic": r ? r.topic : null }, line, actions);
    return el("li", { "data-topic": r ? r.topic : null },
      el("details", { open: !level.startsWith("$") }, el("summary", {}, line, actions), render(child)));
  }));
  $("#retained").replaceChildren(v.retained.length ? render(root) : el("p", {}, "No retained messages."));
  if (v.next) status("Showing the first " + v.retained.length + " retained topics.");
}

// ---- queues --------------------------------------------------------------------------------

async function queueUrl(name) {
  return (await sqs("GetQueueUrl", { QueueName: name })).QueueUrl;
}

async function refreshQueues() {
  const v = await admin("GET", "/queues");
  fill("#queues", v.queues.map((q) => el("tr", { "data-queue": q.name },
    el("td", {}, q.name), el("td", { class: "visible" }, q.visible), el("td", {}, q.inFlight), el("td", {}, q.delayed),
    el("td", {}, q.oldestAgeSeconds), el("td", {}, q.deadLetterSources.join(", ")),
    el("td", {},
      act("Peek", () => peekQueue(q.name)),
      act("Send test message", () => sendForm(q.name)),
      act("Purge " + q.name, async () => {
        await sqs("PurgeQueue", { QueueUrl: await queueUrl(q.name) });
        await refreshQueues();
        status("Purged " + q.name);
      }, "danger"),
      q.deadLetterSources.length ? act("Redrive", async () => {
        await sqs("StartMessageMoveTask", { SourceArn: q.arn });
        await refreshQueues();
        status("Moving the messages of " + q.name + " back to their source queues");
      }) : null))));
}

async function peekQueue(name) {
  const v = await admin("GET", "/queues/" + encodeURIComponent(name) + "/messages?max=10");
  $("#queue-detail").replaceChildren(el("h3", {}, "First visible messages of " + name),
    v.messages.length ? el("ol", {}, v.messages.map((m) => el("li", {}, el("code", {}, m.body), ` (received ${m.receiveCount} times)`))) : el("p", {}, "No visible messages."));
}

function sendForm(name) {
  const input = el("input", { id: "send-body", value: "hello from the console" });
  const form = el("form", { class: "row" }, el("label", { for: "send-body" }, "Message body"), input, el("button", { type: "submit" }, "Send"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await sqs("SendMessage", { QueueUrl: await queueUrl(name), MessageBody: input.value });
      await refreshQueues();
      status("Sent " + r.MessageId + " to " + name);
    } catch (e) { status(e.message, true); }
  });
  $("#queue-detail").replaceChildren(el("h3", {}, "Send to " + name), form);
  input.focus();
}

$("#queue-create").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await sqs("CreateQueue", { QueueName: $("#queue-name").value });
    const created = $("#queue-name").value;
    $("#queue-name").value = "";
    await refreshQueues();
    status("Created " + created);
  } catch (e) { status(e.message, true); }
});

// ---- SNS -----------------------------------------------------------------------------------

async function refreshSns() {
  const xml = await sns({ Action: "ListTopics" });
  const arns = [...xml.querySelectorAll("TopicArn")].map((n) => n.textContent);
  const rows = [];
  for (const arn of arns) {
    const subs = await sns({ Action: "ListSubscriptionsByTopic", TopicArn: arn });
    const list = [...subs.querySelectorAll("member")].map((m) =>
      `${m.querySelector("Protocol")?.textContent}: ${m.querySelector("Endpoint")?.textContent}`);
    rows.push(el("tr", {}, el("td", {}, arn.split(":").pop()), el("td", {}, el("ul", {}, list.map((l) => el("li", {}, l)))),
      el("td", {}, act("Publish test message", async () => {
        await sns({ Action: "Publish", TopicArn: arn, Message: "test message from the Outpost console" });
        status("Published to " + arn);
      }))));
  }
  fill("#sns", rows);
}

// ---- rules ---------------------------------------------------------------------------------

async function refreshRules() {
  const r = await events("ListRules", {});
  const rows = [];
  for (const rule of r.Rules || []) {
    const t = await events("ListTargetsByRule", { Rule: rule.Name, EventBusName: rule.EventBusName });
    rows.push(el("tr", {}, el("td", {}, rule.Name), el("td", {}, rule.State),
      el("td", {}, el("code", {}, rule.EventPattern || rule.ScheduleExpression || "")),
      el("td", {}, el("ul", {}, (t.Targets || []).map((x) => el("li", {}, x.Arn))))));
  }
  fill("#rules", rows);
  const a = await events("ListArchives", {});
  fill("#archives", (a.Archives || []).map((ar) => el("tr", {},
    el("td", {}, ar.ArchiveName), el("td", {}, ar.State), el("td", {}, ar.EventCount ?? ""),
    el("td", {}, act("Replay the last hour", async () => {
      const d = await events("DescribeArchive", { ArchiveName: ar.ArchiveName });
      const end = Math.floor(Date.now() / 1000);
      const name = (ar.ArchiveName + "-" + end).slice(0, 64);
      await events("StartReplay", {
        ReplayName: name, EventSourceArn: d.EventSourceArn,
        EventStartTime: end - 3600, EventEndTime: end, Destination: { Arn: d.EventSourceArn },
      });
      status("Replay " + name + " started");
    })))));
}

// ---- security (dynamic security) -----------------------------------------------------------

async function refreshSecurity() {
  const [clients, groups, roles, access, keys] = await dynsec(
    { command: "listClients", verbose: true },
    { command: "listGroups", verbose: true },
    { command: "listRoles", verbose: true },
    { command: "getDefaultACLAccess" },
    { command: "listAccessKeys" });
  fill("#keys", keys.data.accessKeys.map((k) => el("tr", { "data-key": k.accessKeyId },
    el("td", {}, el("code", {}, k.accessKeyId)), el("td", {}, k.username),
    el("td", {}, act("Delete " + k.accessKeyId, async () => {
      await dynsec({ command: "deleteAccessKey", accessKeyId: k.accessKeyId });
      await refreshSecurity();
    }, "danger")))));
  const names = (list, key) => list.map((x) => x[key]).join(", ");
  fill("#users", clients.data.clients.map((c) => el("tr", { "data-user": c.username },
    el("td", {}, c.username), el("td", {}, names(c.roles, "rolename")), el("td", {}, names(c.groups, "groupname")),
    el("td", { class: c.disabled ? "off" : "on" }, c.disabled ? "disabled" : "enabled"),
    el("td", {},
      act((c.disabled ? "Enable " : "Disable ") + c.username, async () => {
        await dynsec({ command: c.disabled ? "enableClient" : "disableClient", username: c.username });
        await refreshSecurity();
      }),
      act("Delete " + c.username, async () => {
        await dynsec({ command: "deleteClient", username: c.username });
        await refreshSecurity();
      }, "danger")))));
  fill("#groups", groups.data.groups.map((g) => el("tr", {},
    el("td", {}, g.groupname), el("td", {}, names(g.roles, "rolename")), el("td", {}, names(g.clients, "username")))));
  fill("#roles", roles.data.roles.map((r) => el("tr", { "data-role": r.rolename },
    el("td", {}, r.rolename),
    el("td", {}, el("ul", {}, r.acls.map((a) => el("li", {}, `${a.allow ? "allow" : "deny"} ${a.acltype} ${a.topic} (priority ${a.priority})`)))),
    el("td", {}, act("Delete " + r.rolename, async () => {
      await dynsec({ command: "deleteRole", rolename: r.rolename });
      await refreshSecurity();
    }, "danger")))));
  $("#default-access").textContent = "Default access when no entry matches: " +
    access.data.acls.map((a) => `${a.acltype} ${a.allow ? "allowed" : "denied"}`).join(", ") + ".";
}

function onSubmit(sel, f) {
  $(sel).addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { status(""); await f(); ev.target.reset(); await refreshSecurity(); status("Done"); } catch (e) { status(e.message, true); }
  });
}
onSubmit("#user-create", () => dynsec({ command: "createClient", username: $("#user-name").value, password: $("#user-password").value }));
onSubmit("#role-create", () => dynsec({ command: "createRole", rolename: $("#role-name").value }));
$("#key-create").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const [r] = await dynsec({ command: "createAccessKey", username: $("#key-user").value });
    const k = r.data.accessKey;
    ev.target.reset();
    await refreshSecurity();
    // The secret is shown once, here; the broker never shows it again.
    $("#key-secret").textContent = `Access key for ${k.username}: ${k.accessKeyId}, secret ${k.secretAccessKey} (shown once: copy it now)`;
  } catch (e) { status(e.message, true); }
});
onSubmit("#group-create", () => dynsec({ command: "createGroup", groupname: $("#group-name").value }));
onSubmit("#acl-add", () => dynsec({
  command: "addRoleACL", rolename: $("#acl-role").value, acltype: $("#acl-type").value,
  topic: $("#acl-topic").value, priority: Number($("#acl-priority").value) || 0, allow: $("#acl-allow").checked,
}));
onSubmit("#role-grant", () => dynsec({ command: "addClientRole", username: $("#grant-user").value, rolename: $("#grant-role").value }));

// ---- live view: a small MQTT 3.1.1 client over WebSocket -----------------------------------

let live = null;
const enc = new TextEncoder();
const dec = new TextDecoder();

function mqttString(s) {
  const b = enc.encode(s);
  return [b.length >> 8, b.length & 255, ...b];
}

function packet(first, body) {
  const len = [];
  let n = body.length;
  do { let d = n % 128; n = Math.floor(n / 128); if (n > 0) d |= 128; len.push(d); } while (n > 0);
  return new Uint8Array([first, ...len, ...body]);
}

function liveState(text) { $("#live-state").textContent = text; }

function stopLive() {
  if (live) { clearInterval(live.ping); live.ws.close(); live = null; }
}

async function startLive(filter) {
  stopLive();
  const t = await admin("POST", "/live-token");
  const secure = location.protocol === "https:";
  const port = secure ? t.wssPort : t.wsPort;
  if (!port) { liveState("MQTT over WebSocket is not listening" + (secure ? " over TLS" : "") + "."); return; }
  const ws = new WebSocket(`${secure ? "wss" : "ws"}://${location.hostname}:${port}${t.path}`, "mqtt");
  ws.binaryType = "arraybuffer";
  const me = { ws, buf: new Uint8Array(0), ping: null };
  live = me;
  ws.onopen = () => {
    const id = t.clientIdPrefix + Math.random().toString(16).slice(2, 10);
    const creds = t.username ? [...mqttString(t.username), ...mqttString(t.password)] : [];
    const flags = t.username ? 0xc2 : 0x02;
    ws.send(packet(0x10, [...mqttString("MQTT"), 4, flags, 0, 60, ...mqttString(id), ...creds]));
    me.ping = setInterval(() => ws.readyState === 1 && ws.send(new Uint8Array([0xc0, 0])), 30000);
  };
  ws.onclose = () => { if (live === me) liveState("Disconnected."); };
  ws.onerror = () => liveState("The WebSocket connection failed.");
  ws.onmessage = (ev) => {
    const more = new Uint8Array(ev.data);
    const b = new Uint8Array(me.buf.length + more.length);
    b.set(me.buf); b.set(more, me.buf.length);
    me.buf = b;
    for (;;) {
      let i = 1, mul = 1, len = 0, byte;
      do {
        if (i >= me.buf.length) return;
        byte = me.buf[i++]; len += (byte & 127) * mul; mul *= 128;
      } while (byte & 128);
      if (me.buf.length < i + len) return;
      const type = me.buf[0] >> 4, flags = me.buf[0] & 15;
      const body = me.buf.slice(i, i + len);
      me.buf = me.buf.slice(i + len);
      if (type === 2) {
        if (body[1] !== 0) { liveState("Login refused (code " + body[1] + ")."); return; }
        ws.send(packet(0x82, [0, 1, ...mqttString(filter), 0]));
      } else if (type === 9) {
        liveState(body[2] === 0x80 ? "Not authorized to subscribe to " + filter : "Subscribed to " + filter);
      } else if (type === 3) {
        const tl = (body[0] << 8) | body[1];
        const topic = dec.decode(body.slice(2, 2 + tl));
        const start = 2 + tl + (((flags >> 1) & 3) > 0 ? 2 : 0);
        const payload = dec.decode(body.slice(start));
        const list = $("#live-messages");
        list.prepend(el("li", {}, el("strong", {}, topic), " ", payload));
        while (list.children.length > 200) list.lastChild.remove();
      }
    }
  };
}

$("#live-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  run(() => startLive($("#live-filter").value || "#"));
});
$("#live-stop").addEventListener("click", () => { stopLive(); liveState("Stopped."); });

start();
