//! Output: tables for people (comfy-table), JSON for scripts, and the short texts both share.

use std::io::Write;

use comfy_table::{presets, ContentArrangement, Table};
use instore::{BlockedOn, InstanceFilter, Timestamp};
use serde_json::Value as Json;

/// Writes to stdout; a closed pipe (`instore … | head`) ends the program quietly.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Prints JSON, pretty.
pub fn json(value: &Json) {
    out(&serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// A table with these column headers.
pub fn table<const N: usize>(headers: [&str; N]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers);
    t
}

/// A two-column table of field names and values (for one object).
pub fn fields(rows: Vec<(&str, String)>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (name, value) in rows {
        t.add_row(vec![name.to_owned(), value]);
    }
    t
}

/// A timestamp to the second, RFC 3339 (so it can be pasted into a filter).
pub fn time(t: Timestamp) -> String {
    let full = t.to_string();
    match full.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => full,
    }
}

pub fn opt_time(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".to_owned(), time)
}

pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Why an instance is not moving, in a few words.
pub fn blocked_on(b: Option<&BlockedOn>) -> String {
    let Some(b) = b else {
        return "-".to_owned();
    };
    match b {
        BlockedOn::CommandFailing {
            command,
            attempts,
            error,
        } => match error {
            Some(e) => format!("{} failed {attempts}×, given up: {e}", command.name()),
            None => format!("{} failing ({attempts} attempts)", command.name()),
        },
        BlockedOn::Suspended { reason, exception } => match exception {
            Some(e) => format!("suspended: {reason} ({}: {})", e.name, e.message),
            None => format!("suspended: {reason}"),
        },
        BlockedOn::LockedByLiveOwner {
            owner,
            machine,
            since,
        } => format!(
            "locked by live owner {owner} on {} since {}",
            opt(machine.as_deref()),
            opt_time(*since)
        ),
        BlockedOn::HeldByDeadOwner {
            owner,
            lease_ended_at,
        } => format!(
            "held by dead owner {owner} (lease ended {}); recoverable",
            opt_time(*lease_ended_at)
        ),
        BlockedOn::NoLiveHost { host_type } => match host_type {
            Some(h) => format!("runnable, but no live host of type {h}"),
            None => "runnable, but it has no host type: no host will claim it".to_owned(),
        },
        BlockedOn::Timer { due } => format!("waiting for its timer, due {}", time(*due)),
        BlockedOn::Bookmarks { bookmarks } => {
            format!("waiting on bookmarks {}", bookmarks.join(", "))
        }
        BlockedOn::Idle => "idle, waiting for nothing (only a load moves it)".to_owned(),
    }
}

/// A filter in a few words, for confirmations.
pub fn filter(f: &InstanceFilter) -> String {
    if f.is_empty() {
        return "every instance".to_owned();
    }
    let mut parts = Vec::new();
    let list = |v: Vec<&str>| v.join("|");
    if !f.status.is_empty() {
        parts.push(format!(
            "status={}",
            list(f.status.iter().map(|s| s.name()).collect())
        ));
    }
    if !f.condition.is_empty() {
        parts.push(format!(
            "condition={}",
            list(f.condition.iter().map(|c| c.name()).collect())
        ));
    }
    for (what, t) in [
        ("created>=", f.created_after),
        ("created<", f.created_before),
        ("modified>=", f.modified_after),
        ("modified<", f.modified_before),
    ] {
        if let Some(t) = t {
            parts.push(format!("{what}{}", time(t)));
        }
    }
    for (what, v) in [
        ("exception", &f.exception),
        ("machine", &f.machine),
        ("host-type", &f.host_type),
    ] {
        if let Some(v) = v {
            parts.push(format!("{what}={v}"));
        }
    }
    if let Some(o) = f.owner {
        parts.push(format!("owner={o}"));
    }
    if !f.ids.is_empty() {
        parts.push(format!("{} ids", f.ids.len()));
    }
    if let Some(k) = f.key {
        parts.push(format!("key={k}"));
    }
    for (name, value) in &f.promoted {
        parts.push(format!("{name}={value}"));
    }
    if let Some(b) = f.has_pending_command {
        parts.push(format!("has-command={b}"));
    }
    if let Some(b) = f.has_error {
        parts.push(format!("has-error={b}"));
    }
    parts.join(", ")
}
