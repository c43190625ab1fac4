//! Push wake-ups: one connection per provider `LISTEN`s on the store's channel; every
//! notification (sent by the functions when an instance becomes runnable, on commit) moves the
//! provider's wake-up counter. When the connection drops, the task reconnects with backoff and
//! moves the counter once it is back, since notifications sent meanwhile are lost — waiters then
//! look again, and the runtime's fallback poll covers the gap.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::poll_fn;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Config, NoTls};

/// Starts the listener task for `channel`; it ends when the provider aborts it.
pub(crate) fn spawn(
    config: Config,
    channel: String,
    wake: Arc<watch::Sender<u64>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        loop {
            match listen(&config, &channel, &wake).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(error = %e, channel, "notification listener disconnected; reconnecting");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    })
}

/// Listens until the connection ends.
async fn listen(
    config: &Config,
    channel: &str,
    wake: &watch::Sender<u64>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if tx.send(Ok(())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let subscribed = client.batch_execute(&format!("listen \"{channel}\"")).await;
    if let Err(e) = subscribed {
        driver.abort();
        return Err(e);
    }
    // Back (or here for the first time): whatever was sent while nobody listened is lost.
    wake.send_modify(|n| *n += 1);
    let result = loop {
        match rx.recv().await {
            Some(Ok(())) => wake.send_modify(|n| *n += 1),
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    driver.abort();
    drop(client);
    result
}
