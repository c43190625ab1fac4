//! The server's clock, as seen from this process: the local clock plus the skew measured when the
//! store was opened. The runtime schedules renewals and sleeps until timers fall due by it; the
//! decisions themselves (is this lease alive, is this timer due) are always the server's.

use instore::{BoxFuture, Clock, SystemClock, Timestamp};
use tokio_postgres::Client;

/// Local time shifted by the server's skew.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerClock {
    skew_micros: i64,
}

impl ServerClock {
    pub(crate) fn new(skew_micros: i64) -> Self {
        Self { skew_micros }
    }
}

impl Clock for ServerClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(
            SystemClock
                .now()
                .as_micros()
                .saturating_add(self.skew_micros),
        )
    }

    fn sleep_until(&self, deadline: Timestamp) -> BoxFuture<()> {
        SystemClock.sleep_until(Timestamp::from_micros(
            deadline.as_micros().saturating_sub(self.skew_micros),
        ))
    }
}

/// How far the server's clock is ahead of ours (µs), read against the midpoint of a round trip.
pub(crate) async fn measure_skew(client: &Client) -> Result<i64, tokio_postgres::Error> {
    let before = SystemClock.now().as_micros();
    let server: i64 = client
        .query_one(
            "select (extract(epoch from clock_timestamp()) * 1000000)::bigint",
            &[],
        )
        .await?
        .get(0);
    let after = SystemClock.now().as_micros();
    Ok(server - (before + (after - before) / 2))
}
