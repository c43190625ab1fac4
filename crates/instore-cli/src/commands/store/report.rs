//! How init, migrate and drop report what they did.

use instore_config::SchemaReport;
use serde_json::json;

use crate::context::Context;
use crate::render;

pub fn print(ctx: &Context, report: &SchemaReport) {
    if ctx.json {
        render::json(&json!({
            "store": report.store,
            "url": report.url,
            "outcome": report.outcome.name(),
        }));
    } else {
        render::out(&format!(
            "Store '{}' ({}): {}.",
            report.store, report.url, report.outcome
        ));
    }
}
