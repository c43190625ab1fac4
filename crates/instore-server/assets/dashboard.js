// The instore dashboard: fills the server-rendered pages from the JSON API (/api/v1).
// Auth: when the server has tokens, the user enters one once; it is kept in sessionStorage
// (this tab only) and sent as "Authorization: Bearer <token>" with every request.
"use strict";

const TOKEN_KEY = "instore-token";
const state = { role: null, cursors: [], pinned: new Map() };

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = Object.assign({ "Accept": "application/json" }, options.headers || {});
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (response.status === 401) {
    showTokenPanel(body && body.error);
    throw new ApiError(401, (body && body.error) || "a token is needed");
  }
  if (!response.ok) throw new ApiError(response.status, (body && body.error) || response.statusText);
  return body;
}

function showTokenPanel(why) {
  const panel = document.getElementById("token-panel");
  panel.hidden = false;
  if (why) message(why, true);
  document.getElementById("token-input").focus();
}

function message(text, isError) {
  const m = document.getElementById("message");
  m.textContent = text;
  m.className = isError ? "error" : "ok";
  m.dataset.kind = isError ? "error" : "ok";
}

function showError(id, e) {
  const box = document.getElementById(id);
  if (!box) return message(e.message, true);
  box.textContent = e.message;
  box.hidden = false;
}

function clearError(id) {
  const box = document.getElementById(id);
  if (box) { box.hidden = true; box.textContent = ""; }
}

function time(t) { return t ? t.replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }

function commandText(c) {
  if (!c) return "";
  return c.reason ? `${c.type} (${c.reason})` : c.type;
}

function blockedText(b) {
  if (!b) return "";
  switch (b.kind) {
    case "command_failing": return `command ${commandText(b.command)} failing (${b.attempts} attempts)${b.error ? ": " + b.error : ""}`;
    case "suspended": return `suspended: ${b.reason}${b.exception ? ` (${b.exception.name}: ${b.exception.message})` : ""}`;
    case "locked_by_live_owner": return `locked by live owner ${b.owner}${b.machine ? " on " + b.machine : ""}${b.since ? " since " + time(b.since) : ""}`;
    case "held_by_dead_owner": return `held by dead owner ${b.owner}${b.lease_ended_at ? " (lease ended " + time(b.lease_ended_at) + ")" : ""}`;
    case "no_live_host": return `runnable, no live host of type ${b.host_type || "(none)"}`;
    case "timer": return `timer due ${time(b.due)}`;
    case "bookmarks": return `waiting on bookmarks: ${b.bookmarks.join(", ")}`;
    case "idle": return "idle";
    default: return b.kind;
  }
}

// ---- role and token ----------------------------------------------------------------------

async function loadRole() {
  try {
    const who = await api("/api/v1/whoami");
    state.role = who.role;
    document.getElementById("role").textContent = who.role;
    document.getElementById("token-clear").hidden = !who.tokens_required;
    document.getElementById("token-panel").hidden = true;
    document.body.dataset.role = who.role;
    return true;
  } catch (e) {
    document.getElementById("role").textContent = "none";
    return false;
  }
}

function setupToken(start) {
  document.getElementById("token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-input").value.trim());
    document.getElementById("token-input").value = "";
    if (await loadRole()) { message("Token accepted.", false); start(); }
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
}

// ---- actions and the confirmation dialog -------------------------------------------------

const ACTIONS = [
  { action: "suspend", label: "Suspend", when: (s) => s === "Running", reason: true },
  { action: "resume", label: "Resume", when: (s) => s === "Suspended" },
  { action: "terminate", label: "Terminate", when: (s) => s !== "Completed", reason: true },
  { action: "cancel", label: "Cancel", when: (s) => s !== "Completed" },
  { action: "remove", label: "Remove", when: () => true },
];

function actionButtons(instance, after) {
  if (state.role !== "admin") return [];
  return ACTIONS.filter((a) => a.when(instance.status)).map((a) =>
    el("button", {
      type: "button", "data-action": a.action, "data-instance-id": instance.id,
      class: a.action === "remove" || a.action === "terminate" ? "danger" : "",
      onclick: () => confirmAction(a, instance.id, after),
    }, a.label));
}

function confirmAction(a, id, after) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent =
    a.action === "remove"
      ? `Remove instance ${id} and everything that belongs to it? This cannot be undone.`
      : `${a.label} instance ${id}?`;
  const reasonRow = document.getElementById("confirm-reason-row");
  const reason = document.getElementById("confirm-reason");
  reasonRow.hidden = !a.reason;
  reason.value = "";
  dialog.dataset.action = a.action;
  dialog.dataset.instanceId = id;
  const yes = document.getElementById("confirm-yes");
  const no = document.getElementById("confirm-no");
  const close = () => { yes.onclick = null; no.onclick = null; dialog.close(); };
  no.onclick = close;
  yes.onclick = async () => {
    const why = reason.value.trim();
    close();
    try {
      if (a.action === "remove") {
        await api(`/api/v1/instances/${id}`, { method: "DELETE" });
        message(`Removed ${id}.`, false);
      } else {
        const body = { command: a.action };
        if (a.reason && why) body.reason = why;
        await api(`/api/v1/instances/${id}/commands`, { method: "POST", body: JSON.stringify(body) });
        message(`${a.label} queued for ${id}.`, false);
      }
      after(id, a.action);
    } catch (e) {
      message(`${a.label} ${id}: ${e.message}`, true);
    }
  };
  if (typeof dialog.showModal === "function") dialog.showModal(); else dialog.setAttribute("open", "");
}

// ---- the instance list -------------------------------------------------------------------

const FILTERS = [
  ["filter-status", "status"], ["filter-condition", "condition"], ["filter-host-type", "host_type"],
  ["filter-machine", "machine"], ["filter-exception", "exception"],
  ["filter-created-after", "created_after"], ["filter-created-before", "created_before"],
  ["filter-modified-after", "modified_after"], ["filter-modified-before", "modified_before"],
  ["filter-id", "id"], ["filter-owner", "owner"], ["filter-key", "key"], ["filter-where", "where"],
  ["filter-has-command", "has_command"], ["filter-has-error", "has_error"], ["filter-max", "max"],
];

function filterQuery() {
  const q = new URLSearchParams();
  for (const [id, name] of FILTERS) {
    const v = document.getElementById(id).value.trim();
    if (v) q.append(name, v);
  }
  return q;
}

function fillFilters(q) {
  for (const [id, name] of FILTERS) {
    const v = q.get(name);
    if (v !== null) document.getElementById(id).value = v;
  }
}

function instanceRow(i) {
  return el("tr", { "data-instance-id": i.id, "data-status": i.status, class: state.pinned.has(i.id) ? "pinned" : "" },
    el("td", { class: "id" }, el("a", { href: `/instances/${i.id}` }, i.id)),
    el("td", { class: "status", "data-testid": "status" }, i.status),
    el("td", { class: "condition" }, i.condition),
    el("td", { class: "host-type" }, i.host_type || ""),
    el("td", { class: "machine" }, i.machine || ""),
    el("td", { class: "updated" }, time(i.updated_at)),
    el("td", { class: "pending" }, i.pending_command ? commandText(i.pending_command.command) : ""),
    el("td", { class: "blocked" }, blockedText(i.blocked_on)),
    el("td", { class: "actions" }, actionButtons(i, afterListAction)));
}

async function loadList() {
  clearError("list-error");
  const q = filterQuery();
  const cursor = state.cursors[state.cursors.length - 1];
  if (cursor) q.set("cursor", cursor);
  let page;
  try {
    page = await api(`/api/v1/instances?${q}`);
  } catch (e) {
    if (e.status !== 401) showError("list-error", e);
    return;
  }
  const rows = document.getElementById("instance-rows");
  const shown = new Set(page.items.map((i) => i.id));
  // Instances acted on stay in view (marked) until their command is done, even when they no
  // longer match the filter, so the change can be seen.
  const pinned = [];
  for (const [id, since] of state.pinned) {
    if (shown.has(id)) continue;
    try { pinned.push(await api(`/api/v1/instances/${id}`)); } catch (_) { state.pinned.delete(id); }
  }
  rows.replaceChildren(...page.items.map(instanceRow), ...pinned.map(instanceRow));
  document.getElementById("empty").hidden = page.items.length + pinned.length > 0;
  const next = document.getElementById("next-page");
  next.hidden = !page.next;
  next.dataset.cursor = page.next || "";
  document.getElementById("first-page").hidden = state.cursors.length === 0;
  for (const i of [...page.items, ...pinned]) {
    const since = state.pinned.get(i.id);
    if (since && !i.pending_command && Date.now() - since > 1500) state.pinned.delete(i.id);
  }
}

function afterListAction(id, action) {
  if (action !== "remove") state.pinned.set(id, Date.now());
  loadList();
  loadCounts();
  // The management service executes the command within moments; follow it.
  let n = 0;
  const follow = setInterval(() => {
    n += 1;
    loadList();
    if (n >= 20 || !state.pinned.has(id)) clearInterval(follow);
  }, 750);
}

async function loadCounts() {
  try {
    const groups = await api("/api/v1/instances/groups?by=status");
    for (const s of ["Running", "Suspended", "Completed"]) {
      const g = groups.groups.find((x) => x.key === s);
      document.getElementById(`count-${s.toLowerCase()}`).textContent = g ? g.count : 0;
    }
    const history = await api("/api/v1/counts/history");
    drawChart(history.items);
  } catch (_) { /* shown by the list */ }
}

function drawChart(items) {
  const svg = document.getElementById("counts-chart");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  if (items.length === 0) return;
  const w = 600, h = 120, pad = 4;
  const max = Math.max(1, ...items.map((s) => Math.max(s.running, s.suspended, s.completed)));
  const x = (i) => items.length === 1 ? w / 2 : pad + (i * (w - 2 * pad)) / (items.length - 1);
  const y = (v) => h - pad - (v * (h - 2 * pad)) / max;
  for (const [key, cls] of [["running", "line-running"], ["suspended", "line-suspended"], ["completed", "line-completed"]]) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", items.map((s, i) => `${x(i)},${y(s[key])}`).join(" "));
    line.setAttribute("class", cls);
    line.setAttribute("data-series", key);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${key}: ${items[items.length - 1][key]} now, max ${max}`;
    line.append(title);
    svg.append(line);
    // The latest value as a dot, so a chart of one sample shows something.
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x(items.length - 1));
    dot.setAttribute("cy", y(items[items.length - 1][key]));
    dot.setAttribute("r", 3);
    dot.setAttribute("class", cls);
    svg.append(dot);
  }
}

function startList() {
  const form = document.getElementById("filters");
  fillFilters(new URLSearchParams(location.search));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.cursors = [];
    history.replaceState(null, "", `/?${filterQuery()}`);
    loadList();
  });
  document.getElementById("clear-filters").addEventListener("click", () => {
    form.reset();
    state.cursors = [];
    history.replaceState(null, "", "/");
    loadList();
  });
  document.getElementById("next-page").addEventListener("click", (ev) => {
    state.cursors.push(ev.target.dataset.cursor);
    loadList();
  });
  document.getElementById("first-page").addEventListener("click", () => {
    state.cursors = [];
    loadList();
  });
  loadList();
  loadCounts();
  setInterval(loadCounts, 10000);
}

// ---- the detail page ---------------------------------------------------------------------

function setText(id, text) { document.getElementById(id).textContent = text; }

function listOf(obj) {
  const entries = Object.entries(obj || {});
  if (entries.length === 0) return "";
  return el("ul", {}, entries.map(([k, v]) => el("li", {}, el("code", {}, k), " = ", typeof v === "string" ? v : JSON.stringify(v))));
}

async function loadDetail() {
  const id = document.body.dataset.instanceId;
  clearError("detail-error-message");
  let i;
  try {
    i = await api(`/api/v1/instances/${id}`);
  } catch (e) {
    if (e.status !== 401) showError("detail-error-message", e);
    return;
  }
  const detail = document.getElementById("instance-detail");
  detail.dataset.status = i.status;
  setText("detail-status", i.status);
  setText("detail-condition", i.condition);
  setText("detail-blocked-on", blockedText(i.blocked_on));
  setText("detail-host-type", i.host_type || "");
  setText("detail-machine", i.machine || "");
  setText("detail-created", time(i.created_at));
  setText("detail-updated", `${time(i.updated_at)}${i.updated_by ? " by " + i.updated_by : ""}`);
  setText("detail-timer", time(i.timer));
  setText("detail-bookmarks", i.bookmarks.join(", "));
  document.getElementById("detail-keys").replaceChildren(listOf(i.keys));
  const p = i.pending_command;
  setText("detail-pending", p ? `${commandText(p.command)}, ${p.attempts} failed attempts, enqueued ${time(p.enqueued_at)}${p.locked_until ? ", executing until " + time(p.locked_until) : ""}${p.last_error ? ", last error: " + p.last_error : ""}` : "");
  const e = i.error;
  setText("detail-error", e ? `${commandText(e.command)} given up after ${e.attempts} attempts: ${e.code}: ${e.message} (${time(e.last_attempt_at)} on ${e.machine})` : "");
  document.getElementById("detail-promoted").replaceChildren(listOf(i.promoted));
  document.getElementById("detail-metadata").replaceChildren(listOf(i.metadata));
  setText("detail-owner", i.owner ? `${i.owner}${i.owner_machine ? " on " + i.owner_machine : ""}` : "");
  setText("detail-suspension", i.suspension ? `${i.suspension.reason}${i.suspension.exception ? ` (${i.suspension.exception.name}: ${i.suspension.exception.message})` : ""}` : "");
  document.getElementById("detail-actions").replaceChildren(...actionButtons(i, (id, action) => {
    if (action === "remove") { location.href = "/"; return; }
    loadDetail();
  }));
}

function startDetail() {
  loadDetail();
  setInterval(loadDetail, 2000);
}

// ---- queue and error log -----------------------------------------------------------------

async function loadQueue() {
  clearError("list-error");
  try {
    const q = await api("/api/v1/commands?max=1000");
    document.getElementById("queue-rows").replaceChildren(...q.items.map((e) =>
      el("tr", { "data-instance-id": e.instance },
        el("td", {}, e.position), el("td", {}, el("a", { href: `/instances/${e.instance}` }, e.instance)),
        el("td", { class: "command" }, commandText(e.command)), el("td", {}, e.attempts),
        el("td", {}, time(e.enqueued_at)), el("td", {}, time(e.locked_until)), el("td", {}, e.last_error || ""))));
    document.getElementById("empty").hidden = q.items.length > 0;
  } catch (e) { if (e.status !== 401) showError("list-error", e); }
}

async function loadErrors() {
  clearError("list-error");
  try {
    const log = await api("/api/v1/errors?max=1000");
    document.getElementById("error-rows").replaceChildren(...log.items.map((e) =>
      el("tr", { "data-instance-id": e.instance },
        el("td", {}, el("a", { href: `/instances/${e.instance}` }, e.instance)),
        el("td", { class: "command" }, commandText(e.command)), el("td", {}, e.code), el("td", {}, e.message),
        el("td", {}, e.attempts), el("td", {}, time(e.last_attempt_at)), el("td", {}, e.machine))));
    document.getElementById("empty").hidden = log.items.length > 0;
  } catch (e) { if (e.status !== 401) showError("list-error", e); }
}

// ---- start -------------------------------------------------------------------------------

function start() {
  switch (document.body.dataset.page) {
    case "instances": startList(); break;
    case "instance": startDetail(); break;
    case "queue": loadQueue(); setInterval(loadQueue, 3000); break;
    case "errors": loadErrors(); setInterval(loadErrors, 5000); break;
  }
}

let started = false;
function startOnce() { if (!started) { started = true; start(); } }

document.addEventListener("DOMContentLoaded", async () => {
  setupToken(startOnce);
  if (await loadRole()) startOnce();
});
