//! `raw-pg` for the `query` workload: the same reads written directly in SQL with
//! tokio-postgres on the provider's schema (the generated `condition` column; the indexes
//! `instances_condition (condition, created_at desc, id desc)` and `instances_host_type
//! (host_type, created_at desc, id desc)`; `promoted (name, text_value)`), each statement
//! prepared once, one round trip per read.

use std::collections::BTreeMap;

use instore::Uuid;
use tokio_postgres::{Client, Statement};

use super::query::{
    customer_at, customer_name, fold_groups, Answer, QueryOp, PAGE, PAGE_HOST_TYPE, PROMOTED,
};
use crate::raw_pg::{connect, describe, Dropping};

/// A page of ids in the query order: `{w}` the condition, `{after}` the cursor clause.
fn ordered(s: &str, w: &str, after: &str) -> String {
    format!(
        "select created_at, id from {s}.instances where {w}{after} \
         order by created_at desc, id desc limit 51"
    )
}

/// Per-condition branches merged (a Merge Append of index scans).
fn merged(s: &str, conditions: &[i16], after: &str) -> String {
    let branches: Vec<String> = conditions
        .iter()
        .map(|c| format!("({})", ordered(s, &format!("condition = {c}"), after)))
        .collect();
    format!(
        "{} order by created_at desc, id desc limit 51",
        branches.join(" union all ")
    )
}

/// The raw reader: one connection, its prepared statements, and the walk's cursor.
pub struct PgReader {
    client: Client,
    _driver: Dropping,
    /// The next page's cursor, when walking.
    pub cursor: Option<(i64, Uuid)>,
    first: Statement,
    next: Statement,
    idle: Statement,
    host_type: Statement,
    promoted: Statement,
    count: Statement,
    groups: Statement,
}

impl PgReader {
    /// Connects and prepares the statements on `schema`.
    pub async fn open(url: &str, schema: &str) -> Result<Self, String> {
        let (client, driver) = connect(url).await?;
        let s = format!("\"{schema}\"");
        let prepare = |sql: String| {
            let client = &client;
            async move {
                client
                    .prepare(&sql)
                    .await
                    .map_err(|e| format!("preparing {sql}: {}", describe(&e)))
            }
        };
        let after = " and (created_at, id) < ($1, $2)";
        Ok(Self {
            first: prepare(merged(&s, &[3, 4], "")).await?,
            next: prepare(merged(&s, &[3, 4], after)).await?,
            idle: prepare(ordered(&s, "condition = 2", "")).await?,
            host_type: prepare(ordered(&s, "host_type = $1", "")).await?,
            promoted: prepare(format!(
                "select i.created_at, i.id from {s}.promoted p join {s}.instances i on i.id = p.instance \
                 where p.name = $1 and p.text_value = $2 order by i.created_at desc, i.id desc limit 51"
            ))
            .await?,
            count: prepare(format!(
                "select count(*) from {s}.instances where condition in (3, 4)"
            ))
            .await?,
            groups: prepare(format!(
                "select condition::int8, count(*) from {s}.instances group by condition"
            ))
            .await?,
            client,
            _driver: Dropping(driver),
            cursor: None,
        })
    }

    /// One read.
    pub async fn read(&mut self, op: QueryOp, i: u64) -> Result<Answer, String> {
        let e = |e: tokio_postgres::Error| format!("raw pg {}: {}", op.key(), describe(&e));
        let page = |rows: Vec<tokio_postgres::Row>| -> Result<Vec<(i64, Uuid)>, String> {
            rows.iter()
                .map(|r| Ok((r.try_get(0).map_err(e)?, r.try_get(1).map_err(e)?)))
                .collect()
        };
        let ids = |rows: &[(i64, Uuid)]| {
            Answer::Ids(
                rows.iter()
                    .take(PAGE)
                    .map(|(_, id)| *id.as_bytes())
                    .collect(),
            )
        };
        match op {
            QueryOp::PageSuspended | QueryOp::NextPageSuspended => {
                let rows = match (op, self.cursor) {
                    (QueryOp::NextPageSuspended, Some((at, id))) => {
                        self.client.query(&self.next, &[&at, &id]).await
                    }
                    _ => self.client.query(&self.first, &[]).await,
                }
                .map_err(e)?;
                let rows = page(rows)?;
                self.cursor = (rows.len() > PAGE).then(|| rows[PAGE - 1]);
                Ok(ids(&rows))
            }
            QueryOp::PageIdle => {
                let rows = self.client.query(&self.idle, &[]).await.map_err(e)?;
                Ok(ids(&page(rows)?))
            }
            QueryOp::PageHostType => {
                let rows = self
                    .client
                    .query(&self.host_type, &[&PAGE_HOST_TYPE])
                    .await
                    .map_err(e)?;
                Ok(ids(&page(rows)?))
            }
            QueryOp::PagePromoted => {
                let customer = customer_name(customer_at(i));
                let rows = self
                    .client
                    .query(&self.promoted, &[&PROMOTED, &customer])
                    .await
                    .map_err(e)?;
                Ok(ids(&page(rows)?))
            }
            QueryOp::CountSuspended => {
                let row = self.client.query_one(&self.count, &[]).await.map_err(e)?;
                let n: i64 = row.try_get(0).map_err(e)?;
                Ok(Answer::Counts(BTreeMap::from([(
                    "count".to_owned(),
                    u64::try_from(n).unwrap_or(0),
                )])))
            }
            QueryOp::GroupStatus | QueryOp::GroupCondition => {
                let rows = self.client.query(&self.groups, &[]).await.map_err(e)?;
                let rows = rows
                    .iter()
                    .map(|r| Ok((r.try_get(0).map_err(e)?, r.try_get(1).map_err(e)?)))
                    .collect::<Result<Vec<(i64, i64)>, String>>()?;
                Ok(fold_groups(rows, op == QueryOp::GroupStatus))
            }
        }
    }
}
