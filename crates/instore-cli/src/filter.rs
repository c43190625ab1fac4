//! The query filters every instance verb takes (SPEC §12), and the parsers of what users type:
//! ids, keys, statuses, conditions, instants, `NAME=VALUE`, cursors. A value clap cannot parse
//! is a usage error (exit 2) naming the flag and saying what to write.

use std::time::SystemTime;

use clap::Args;
use instore::{
    Condition, Cursor, GroupBy, InstanceFilter, InstanceId, InstanceStatus, KeyId, OwnerId,
    StoreError, Timestamp,
};

use crate::failure::invalid_text;

fn store_parse<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr<Err = StoreError>,
{
    s.parse::<T>().map_err(|e| invalid_text(&e))
}

pub fn instance_id(s: &str) -> Result<InstanceId, String> {
    store_parse(s)
}

pub fn owner_id(s: &str) -> Result<OwnerId, String> {
    store_parse(s)
}

pub fn key_id(s: &str) -> Result<KeyId, String> {
    store_parse(s)
}

pub fn status(s: &str) -> Result<InstanceStatus, String> {
    store_parse(s)
}

pub fn condition(s: &str) -> Result<Condition, String> {
    store_parse(s)
}

pub fn group_by(s: &str) -> Result<GroupBy, String> {
    store_parse(s)
}

pub fn cursor(s: &str) -> Result<Cursor, String> {
    store_parse(s)
}

/// An instant: RFC 3339, a date (midnight UTC), `now`, or `1h ago`.
pub fn instant(s: &str) -> Result<Timestamp, String> {
    instore_config::instant::parse_instant(s, Timestamp::from_system_time(SystemTime::now()))
}

/// A duration with a unit (`7d`, `12h`, `90m`).
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("'{s}' is not a duration ({e}); write it with a unit, like 7d, 12h or 90m")
    })
}

/// `NAME=VALUE` on a promoted property.
pub fn promoted(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!(
            "'{s}' is not NAME=VALUE; write the promoted property's name, '=', and the value, like orders:total=42"
        )),
    }
}

/// Every filter of SPEC §12, as flags.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Filters (each narrows; repeated flags match any of their values)")]
pub struct FilterArgs {
    /// Status: Running, Suspended or Completed (repeatable, or comma-separated)
    #[arg(long, value_name = "STATUS", value_delimiter = ',', value_parser = status)]
    pub status: Vec<InstanceStatus>,

    /// Condition: Active, Idle, Exception, UserSuspension, Successful, Terminated, Canceled, Faulted
    #[arg(long, value_name = "CONDITION", value_delimiter = ',', value_parser = condition)]
    pub condition: Vec<Condition>,

    /// Created at or after (RFC 3339, a date like 2026-11-21, or '1h ago')
    #[arg(long, value_name = "WHEN", value_parser = instant)]
    pub created_after: Option<Timestamp>,

    /// Created before
    #[arg(long, value_name = "WHEN", value_parser = instant)]
    pub created_before: Option<Timestamp>,

    /// Last modified at or after
    #[arg(long, value_name = "WHEN", value_parser = instant)]
    pub modified_after: Option<Timestamp>,

    /// Last modified before
    #[arg(long, value_name = "WHEN", value_parser = instant)]
    pub modified_before: Option<Timestamp>,

    /// Suspended with an exception of this name
    #[arg(long, value_name = "NAME")]
    pub exception: Option<String>,

    /// On this machine (the live lock owner's, else the last writer's)
    #[arg(long, value_name = "NAME")]
    pub machine: Option<String>,

    /// Of this host type
    #[arg(long, value_name = "NAME")]
    pub host_type: Option<String>,

    /// Locked by this owner (alive or not)
    #[arg(long, value_name = "OWNER_ID", value_parser = owner_id)]
    pub owner: Option<OwnerId>,

    /// This instance (repeatable)
    #[arg(long = "id", value_name = "ID", value_parser = instance_id)]
    pub ids: Vec<InstanceId>,

    /// With this key (associated or completed)
    #[arg(long, value_name = "KEY_ID", value_parser = key_id)]
    pub key: Option<KeyId>,

    /// A promoted property equals VALUE, e.g. orders:total=42 (repeatable: all must hold)
    #[arg(long = "where", value_name = "NAME=VALUE", value_parser = promoted)]
    pub promoted: Vec<(String, String)>,

    /// With (or, with =false, without) a queued control command
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub has_command: Option<bool>,

    /// With (or, with =false, without) an error-log entry
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub has_error: Option<bool>,
}

impl FilterArgs {
    /// The filter, checked (empty ranges and names are usage errors).
    pub fn to_filter(&self) -> Result<InstanceFilter, StoreError> {
        let filter = InstanceFilter {
            status: self.status.clone(),
            condition: self.condition.clone(),
            created_after: self.created_after,
            created_before: self.created_before,
            modified_after: self.modified_after,
            modified_before: self.modified_before,
            exception: self.exception.clone(),
            machine: self.machine.clone(),
            host_type: self.host_type.clone(),
            owner: self.owner,
            ids: self.ids.clone(),
            key: self.key,
            promoted: self.promoted.clone(),
            has_pending_command: self.has_command,
            has_error: self.has_error,
        };
        filter.validate()?;
        Ok(filter)
    }
}

/// Warns (on stderr) about `--where` names the store's configuration does not promote: hosts
/// promote by their own settings, so the filter may still match, but a typo matches nothing.
pub fn warn_unpromoted(filter: &InstanceFilter, promotions: &[String]) {
    for (name, _) in &filter.promoted {
        if !promotions.iter().any(|p| p == name) {
            let known = if promotions.is_empty() {
                "none are configured".to_owned()
            } else {
                format!("configured: {}", promotions.join(", "))
            };
            eprintln!(
                "note: '{name}' is not among this store's promotions ({known}); the filter matches \
                 only instances whose hosts promote it"
            );
        }
    }
}
