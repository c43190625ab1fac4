//! Query-string parameters: the instance filters (the CLI's flags, snake_case: `status`,
//! `created_after`, `id`, `where`, `has_command`, ...), the page (`cursor`, `max`) and the rest.
//! Lists repeat the parameter or separate values with commas (`status=Running,Suspended`); an
//! empty value counts as absent (what an HTML form sends for a blank field). Unknown parameters
//! are refused, so a misspelt filter never silently matches everything.

use std::collections::BTreeMap;

use instore::{
    Condition, Cursor, GroupBy, InstanceFilter, InstanceId, InstanceStatus, KeyId, OwnerId,
    PageRequest, Timestamp, DEFAULT_PAGE_SIZE,
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::dto::{ConditionName, StatusName};
use crate::error::ApiError;

/// The parameters of a request's query string, by name (`-` read as `_`), each with its values.
#[derive(Debug, Default)]
pub struct Params(BTreeMap<String, Vec<String>>);

/// Parameters every filtered endpoint understands.
const FILTER_NAMES: &[&str] = &[
    "status",
    "condition",
    "created_after",
    "created_before",
    "modified_after",
    "modified_before",
    "exception",
    "machine",
    "host_type",
    "owner",
    "id",
    "key",
    "where",
    "has_command",
    "has_error",
];

impl Params {
    /// Parses a raw query string; refuses names not in `known` (nor a filter, if `filters`).
    pub fn parse(raw: Option<&str>, known: &[&str], filters: bool) -> Result<Params, ApiError> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            let name = name.replace('-', "_");
            let filter = filters && FILTER_NAMES.contains(&name.as_str());
            if !(known.contains(&name.as_str()) || filter) {
                let mut accepted: Vec<&str> = known.to_vec();
                if filters {
                    accepted.extend_from_slice(FILTER_NAMES);
                }
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter '{name}'; accepted: {}",
                    accepted.join(", ")
                )));
            }
            let value = value.trim();
            if !value.is_empty() {
                map.entry(name).or_default().push(value.to_owned());
            }
        }
        Ok(Params(map))
    }

    /// Every value of `name`, comma-separated values split.
    fn list(&self, name: &str) -> Vec<&str> {
        self.0
            .get(name)
            .into_iter()
            .flatten()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The single value of `name`; given twice is an error.
    pub fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([v]) => Ok(Some(v.as_str())),
            Some(_) => Err(ApiError::bad_request(format!(
                "query parameter '{name}' is given more than once; give it once"
            ))),
        }
    }

    fn parsed<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ApiError> {
        self.one(name)?
            .map(|v| parse(v).map_err(|e| ApiError::bad_request(format!("{name}: {e}"))))
            .transpose()
    }

    fn store_parsed<T>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T: std::str::FromStr<Err = instore::StoreError>,
    {
        self.parsed(name, |v| v.parse::<T>().map_err(|e| invalid_text(&e)))
    }

    fn store_list<T>(&self, name: &str) -> Result<Vec<T>, ApiError>
    where
        T: std::str::FromStr<Err = instore::StoreError>,
    {
        self.list(name)
            .into_iter()
            .map(|v| {
                v.parse::<T>()
                    .map_err(|e| ApiError::bad_request(format!("{name}: {}", invalid_text(&e))))
            })
            .collect()
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.parsed(name, |v| match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(format!("'{v}' is not a boolean; write true or false")),
        })
    }

    /// The instance filter, checked ([`InstanceFilter::validate`]); instants judged at `now`.
    pub fn filter(&self, now: Timestamp) -> Result<InstanceFilter, ApiError> {
        let instant = |v: &str| instore_config::instant::parse_instant(v, now);
        let promoted = self
            .0
            .get("where")
            .into_iter()
            .flatten()
            .map(|w| match w.split_once('=') {
                Some((n, v)) if !n.trim().is_empty() => Ok((n.trim().to_owned(), v.to_owned())),
                _ => Err(ApiError::bad_request(format!(
                    "where: '{w}' is not NAME=VALUE; write the promoted property's name, '=', and the value, like orders:total=42"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let filter = InstanceFilter {
            status: self.store_list::<InstanceStatus>("status")?,
            condition: self.store_list::<Condition>("condition")?,
            created_after: self.parsed("created_after", instant)?,
            created_before: self.parsed("created_before", instant)?,
            modified_after: self.parsed("modified_after", instant)?,
            modified_before: self.parsed("modified_before", instant)?,
            exception: self.one("exception")?.map(str::to_owned),
            machine: self.one("machine")?.map(str::to_owned),
            host_type: self.one("host_type")?.map(str::to_owned),
            owner: self.store_parsed::<OwnerId>("owner")?,
            ids: self.store_list::<InstanceId>("id")?,
            key: self.store_parsed::<KeyId>("key")?,
            promoted,
            has_pending_command: self.boolean("has_command")?,
            has_error: self.boolean("has_error")?,
        };
        filter.validate()?;
        Ok(filter)
    }

    /// The page (`cursor`, `max`), checked.
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let page = PageRequest {
            max: self.max("max", DEFAULT_PAGE_SIZE)?,
            cursor: self.store_parsed::<Cursor>("cursor")?,
        };
        page.validate()?;
        Ok(page)
    }

    /// A count limit named `name` (default `default`), at least 1.
    pub fn max(&self, name: &str, default: usize) -> Result<usize, ApiError> {
        Ok(self
            .parsed(name, |v| {
                v.parse::<usize>()
                    .map_err(|_| format!("'{v}' is not a whole number; write a count like 50"))
            })?
            .unwrap_or(default))
    }

    /// An unsigned number named `name`.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.parsed(name, |v| {
            v.parse::<u64>()
                .map_err(|_| format!("'{v}' is not a whole number"))
        })
    }

    /// The grouping (`by`), required.
    pub fn group_by(&self) -> Result<GroupBy, ApiError> {
        self.store_parsed::<GroupBy>("by")?.ok_or_else(|| {
            ApiError::bad_request(
                "query parameter 'by' is missing; group by status, condition, host-type, machine or exception",
            )
        })
    }
}

/// A store error's message without the `invalid: ` prefix.
pub fn invalid_text(e: &instore::StoreError) -> String {
    let s = e.to_string();
    s.strip_prefix("invalid: ").unwrap_or(&s).to_owned()
}

/// The instance filters (documentation for the OpenAPI document; parsing is [`Params::filter`]).
/// Each narrows the set; lists match any of their values (repeat the parameter, or separate
/// values with commas).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct FilterParams {
    /// Status: Running, Suspended or Completed.
    status: Option<Vec<StatusName>>,
    /// Condition: Active, Idle, Exception, UserSuspension, Successful, Terminated, Canceled,
    /// Faulted.
    condition: Option<Vec<ConditionName>>,
    /// Created at or after: RFC 3339, a date (2026-11-21), `now`, or `1h ago`.
    created_after: Option<String>,
    /// Created before (same spellings).
    created_before: Option<String>,
    /// Last modified at or after (same spellings).
    modified_after: Option<String>,
    /// Last modified before (same spellings).
    modified_before: Option<String>,
    /// Suspended with an exception of this name.
    exception: Option<String>,
    /// On this machine (the live lock owner's, else the last writer's).
    machine: Option<String>,
    /// Of this host type.
    host_type: Option<String>,
    /// Locked by this owner (alive or not).
    #[param(format = Uuid)]
    owner: Option<String>,
    /// These instances (at most 1,000).
    #[param(value_type = Option<Vec<String>>)]
    id: Option<Vec<String>>,
    /// With this key (associated or completed).
    #[param(format = Uuid)]
    key: Option<String>,
    /// A promoted property equals a value: `NAME=VALUE`, like `orders:total=42` (all must hold).
    #[serde(rename = "where")]
    r#where: Option<Vec<String>>,
    /// With (true) or without (false) a queued control command.
    has_command: Option<bool>,
    /// With (true) or without (false) an error-log entry.
    has_error: Option<bool>,
}

/// Which page of a query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// The `next` value of the previous page, unchanged; absent for the first page.
    cursor: Option<String>,
    /// At most this many instances (1 to 1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    max: Option<u32>,
}

/// How to group a group count.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct GroupParams {
    /// The grouping.
    #[param(inline)]
    by: GroupName,
}

/// A grouping of a group count.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub enum GroupName {
    /// By status.
    #[serde(rename = "status")]
    Status,
    /// By condition.
    #[serde(rename = "condition")]
    Condition,
    /// By host type.
    #[serde(rename = "host-type")]
    HostType,
    /// By machine.
    #[serde(rename = "machine")]
    Machine,
    /// By exception name.
    #[serde(rename = "exception")]
    Exception,
}

/// A listing's limit and start.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct QueueParams {
    /// Start after this queue position (the last `position` of the previous listing).
    after: Option<u64>,
    /// At most this many entries (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    max: Option<u32>,
}

/// A listing's limit.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct MaxParams {
    /// At most this many entries (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    max: Option<u32>,
}
