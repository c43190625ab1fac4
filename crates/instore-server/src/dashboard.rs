//! The dashboard: pages rendered here as plain HTML shells (they carry no store data, so they
//! need no token), filled by `assets/dashboard.js` from the JSON API with the token the user
//! entered once (kept in `sessionStorage`, sent as a bearer header). No build step: the script
//! and the stylesheet are compiled into the binary.
//!
//! Stable hooks for people and browser tests: the filter form (`#filter-status`, ...,
//! `#apply-filters`), rows `tr[data-instance-id]` with `.status` cells, action buttons
//! `button[data-action=resume]` (admins only), the confirmation dialog (`#confirm-yes`), the
//! detail page's `#detail-status`.

use std::sync::Arc;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::IdPath;
use crate::error::ApiError;
use crate::state::AppState;

const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(instances_page))
        .route("/instances/{id}", get(instance_page))
        .route("/queue", get(queue_page))
        .route("/errors", get(errors_page))
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(style))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// The page around `body`: navigation, the token panel, the confirmation dialog.
fn layout(title: &str, page: &str, attrs: &str, body: &str) -> Html<String> {
    let nav = |href: &str, name: &str, label: &str| {
        let current = if name == page {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<a href=\"{href}\" id=\"nav-{name}\"{current}>{label}</a>")
    };
    Html(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · instore</title>
<link rel="stylesheet" href="/assets/dashboard.css">
</head>
<body data-page="{page}"{attrs}>
<header>
  <strong class="brand">instore</strong>
  <nav>{n1} {n2} {n3}</nav>
  <span class="who">role: <span id="role" data-testid="role">…</span>
    <button type="button" id="token-clear" hidden>Forget token</button></span>
</header>
<section id="token-panel" hidden>
  <form id="token-form">
    <label for="token-input">This server needs a token:</label>
    <input type="password" id="token-input" autocomplete="off" placeholder="bearer token">
    <button type="submit" id="token-save">Use token</button>
    <span class="hint">kept for this browser tab only (sessionStorage)</span>
  </form>
</section>
<div id="message" role="status" aria-live="polite"></div>
<main>
{body}
</main>
<dialog id="confirm-dialog">
  <form method="dialog" id="confirm-form">
    <p id="confirm-text"></p>
    <p id="confirm-reason-row" hidden><label for="confirm-reason">Reason</label>
      <input type="text" id="confirm-reason" placeholder="why (recorded with the command)"></p>
    <menu>
      <button type="button" id="confirm-no" value="no">Cancel</button>
      <button type="button" id="confirm-yes" value="yes" class="danger">Confirm</button>
    </menu>
  </form>
</dialog>
<script src="/assets/dashboard.js"></script>
</body>
</html>
"#,
        n1 = nav("/", "instances", "Instances"),
        n2 = nav("/queue", "queue", "Command queue"),
        n3 = nav("/errors", "errors", "Error log"),
    ))
}

fn options(id: &str, label: &str, values: &[&str]) -> String {
    let opts: String = values
        .iter()
        .map(|v| format!("<option value=\"{v}\">{v}</option>"))
        .collect();
    format!(
        "<label>{label}<select id=\"{id}\"><option value=\"\">any</option>{opts}</select></label>"
    )
}

fn input(id: &str, label: &str, placeholder: &str) -> String {
    format!("<label>{label}<input type=\"text\" id=\"{id}\" placeholder=\"{placeholder}\"></label>")
}

async fn instances_page() -> Html<String> {
    let statuses: Vec<&str> = instore::InstanceStatus::ALL
        .iter()
        .map(|s| s.name())
        .collect();
    let conditions: Vec<&str> = instore::Condition::ALL.iter().map(|c| c.name()).collect();
    let body = format!(
        r#"<section id="overview">
  <div id="counts" class="counts">
    <span>Running <b id="count-running" data-testid="count-running">–</b></span>
    <span>Suspended <b id="count-suspended" data-testid="count-suspended">–</b></span>
    <span>Completed <b id="count-completed" data-testid="count-completed">–</b></span>
  </div>
  <svg id="counts-chart" data-testid="counts-chart" viewBox="0 0 600 120" preserveAspectRatio="none" role="img" aria-label="instances by status over time"></svg>
</section>
<form id="filters" class="filters">
  {status} {condition}
  {host_type} {machine} {exception}
  {created_after} {created_before} {modified_after} {modified_before}
  {id} {owner} {key} {where_}
  {has_command} {has_error}
  <label>Per page<input type="number" id="filter-max" min="1" max="1000" value="50"></label>
  <button type="submit" id="apply-filters">Apply filters</button>
  <button type="button" id="clear-filters">Clear</button>
</form>
<div id="list-error" class="error" role="alert" hidden></div>
<table id="instances">
  <thead><tr><th>Id</th><th>Status</th><th>Condition</th><th>Host type</th><th>Machine</th><th>Updated</th><th>Pending command</th><th>Blocked on</th><th>Actions</th></tr></thead>
  <tbody id="instance-rows"></tbody>
</table>
<p id="empty" hidden>No instance matches.</p>
<nav class="pager"><button type="button" id="first-page" hidden>First page</button>
  <button type="button" id="next-page" hidden>Next page</button></nav>"#,
        status = options("filter-status", "Status", &statuses),
        condition = options("filter-condition", "Condition", &conditions),
        host_type = input("filter-host-type", "Host type", "orders"),
        machine = input("filter-machine", "Machine", ""),
        exception = input("filter-exception", "Exception", ""),
        created_after = input("filter-created-after", "Created after", "1h ago"),
        created_before = input("filter-created-before", "Created before", "2026-11-21"),
        modified_after = input("filter-modified-after", "Modified after", ""),
        modified_before = input("filter-modified-before", "Modified before", ""),
        id = input("filter-id", "Id", "uuid"),
        owner = input("filter-owner", "Owner", "uuid"),
        key = input("filter-key", "Key", "uuid"),
        where_ = input("filter-where", "Promoted", "NAME=VALUE"),
        has_command = options("filter-has-command", "Queued command", &["true", "false"]),
        has_error = options("filter-has-error", "Error logged", &["true", "false"]),
    );
    layout("Instances", "instances", "", &body)
}

async fn instance_page(id: Result<IdPath, ApiError>) -> Result<Html<String>, ApiError> {
    let IdPath(id) = id?;
    let row = |id: &str, label: &str| format!("<tr><th>{label}</th><td id=\"{id}\"></td></tr>");
    let body = format!(
        r#"<p><a href="/" id="back">← Instances</a></p>
<h1>Instance <code id="detail-id">{id}</code></h1>
<div id="detail-error-message" class="error" role="alert" hidden></div>
<section id="instance-detail" data-instance-id="{id}">
  <div id="detail-actions" class="actions"></div>
  <table class="detail">
    {status}{condition}{blocked}{host_type}{machine}{created}{updated}{timer}{bookmarks}{keys}{pending}{error}{promoted}{metadata}{owner}{suspension}
  </table>
</section>"#,
        status = row("detail-status", "Status"),
        condition = row("detail-condition", "Condition"),
        blocked = row("detail-blocked-on", "Blocked on"),
        host_type = row("detail-host-type", "Host type"),
        machine = row("detail-machine", "Machine"),
        created = row("detail-created", "Created"),
        updated = row("detail-updated", "Last updated"),
        timer = row("detail-timer", "Timer"),
        bookmarks = row("detail-bookmarks", "Bookmarks"),
        keys = row("detail-keys", "Keys"),
        pending = row("detail-pending", "Pending command"),
        error = row("detail-error", "Error log"),
        promoted = row("detail-promoted", "Promoted values"),
        metadata = row("detail-metadata", "Metadata"),
        owner = row("detail-owner", "Lock owner"),
        suspension = row("detail-suspension", "Suspension"),
    );
    Ok(layout(
        "Instance",
        "instance",
        &format!(" data-instance-id=\"{id}\""),
        &body,
    ))
}

async fn queue_page() -> Html<String> {
    let body = r#"<h1>Command queue</h1>
<div id="list-error" class="error" role="alert" hidden></div>
<table id="queue">
  <thead><tr><th>Position</th><th>Instance</th><th>Command</th><th>Attempts</th><th>Enqueued</th><th>Locked until</th><th>Last error</th></tr></thead>
  <tbody id="queue-rows"></tbody>
</table>
<p id="empty" hidden>The queue is empty.</p>"#;
    layout("Command queue", "queue", "", body)
}

async fn errors_page() -> Html<String> {
    let body = r#"<h1>Error log</h1>
<div id="list-error" class="error" role="alert" hidden></div>
<table id="errors">
  <thead><tr><th>Instance</th><th>Command</th><th>Code</th><th>Message</th><th>Attempts</th><th>Last attempt</th><th>Machine</th></tr></thead>
  <tbody id="error-rows"></tbody>
</table>
<p id="empty" hidden>No command was given up.</p>"#;
    layout("Error log", "errors", "", body)
}
