//! `by-key`: K instances are created first, each with a key (not measured). Then per operation a
//! fresh handle runs LoadByKey of an existing key → Save(unlock). Worker `t` of N cycles through
//! keys `t, t+N, t+2N, …`, so workers never contend for one instance. One operation = the two
//! commands.
//! Raw equivalent: look the key up and acquire its instance (read the row, set its lock owner) →
//! clear the lock owner, two requests to the writer; the raw table is seeded in one transaction.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use instore::{InstanceStore, KeyId, LoadByKey, OwnerId, Save, Uuid};

use super::{cmd_err, create_owner, payload_bag, payload_bytes, RunCtx, COMMAND_TIMEOUT};
use crate::baseline::{Id, RawClient, RawOp, RawStore};
use crate::driver::{drive, Sample, Worker};

/// Namespace of the bench's keys.
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6265_6e63_685f_6b65_7973_0000_0000_0001);

fn key(i: usize) -> KeyId {
    KeyId::derive(KEY_NAMESPACE, &format!("bench-key-{i}"))
}

/// The keys worker `t` of `n` visits, in order (`keys >= n`, so no two workers share one).
fn slice(t: usize, n: usize, keys: usize) -> Vec<usize> {
    (t..keys).step_by(n.max(1)).collect()
}

struct ProviderWorker {
    store: InstanceStore,
    owner: OwnerId,
    keys: Vec<KeyId>,
    next: usize,
}

impl Worker for ProviderWorker {
    async fn op(&mut self) -> Result<(), String> {
        let key = self.keys[self.next % self.keys.len()];
        self.next += 1;
        let handle = self.store.create_handle_for(Some(self.owner), None);
        self.store
            .execute(&handle, LoadByKey::new(key), COMMAND_TIMEOUT)
            .await
            .map_err(cmd_err("LoadByKey"))?;
        let unlock = Save {
            unlock: true,
            ..Save::default()
        };
        self.store
            .execute(&handle, unlock, COMMAND_TIMEOUT)
            .await
            .map_err(cmd_err("Save(unlock)"))?;
        Ok(())
    }
}

pub async fn provider(
    store: &InstanceStore,
    handles: usize,
    ctx: &RunCtx,
) -> Result<Sample, String> {
    let owner = create_owner(store, "bench-by-key").await?;
    // At least one key per worker: two handles of one owner must never want the same instance.
    let keys = ctx.keys.max(handles).max(1);
    // Create the instances concurrently, so a group-committing provider is not slowed down.
    let next = Arc::new(AtomicUsize::new(0));
    let data = payload_bag(&payload_bytes(ctx.payload_bytes));
    let mut creators = Vec::new();
    for _ in 0..keys.min(64) {
        let (store, next, data) = (store.clone(), next.clone(), data.clone());
        creators.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return Ok::<(), String>(());
                }
                let handle = store.create_handle_for(Some(owner), None);
                store
                    .execute(&handle, LoadByKey::or_create(key(i)), COMMAND_TIMEOUT)
                    .await
                    .map_err(cmd_err("LoadByKey(create)"))?;
                store
                    .execute(
                        &handle,
                        Save::data(data.clone()).and_unlock(),
                        COMMAND_TIMEOUT,
                    )
                    .await
                    .map_err(cmd_err("Save(create)"))?;
            }
        }));
    }
    for c in creators {
        c.await.map_err(|e| format!("creator task: {e}"))??;
    }
    let workers = (0..handles)
        .map(|t| ProviderWorker {
            store: store.clone(),
            owner,
            keys: slice(t, handles, keys).into_iter().map(key).collect(),
            next: 0,
        })
        .collect();
    drive(workers, ctx.budget).await
}

struct RawWorker {
    client: RawClient,
    keys: Vec<Id>,
    next: usize,
}

impl Worker for RawWorker {
    async fn op(&mut self) -> Result<(), String> {
        let key = self.keys[self.next % self.keys.len()];
        self.next += 1;
        let found = self.client.submit(RawOp::AcquireByKey { key }).await?;
        let id = found
            .id
            .ok_or_else(|| "AcquireByKey found no instance".to_owned())?;
        self.client.submit(RawOp::Unlock { id }).await?;
        Ok(())
    }
}

pub async fn raw(raw: &RawStore, handles: usize, ctx: &RunCtx) -> Result<Sample, String> {
    // At least one key per worker: two handles of one owner must never want the same instance.
    let keys = ctx.keys.max(handles).max(1);
    let rows = (0..keys)
        .map(|i| (rand::random::<Id>(), key(i).as_uuid().into_bytes()))
        .collect();
    raw.client()
        .submit(RawOp::Seed {
            rows,
            data: payload_bytes(ctx.payload_bytes),
        })
        .await?;
    let workers = (0..handles)
        .map(|t| RawWorker {
            client: raw.client(),
            keys: slice(t, handles, keys)
                .into_iter()
                .map(|i| key(i).as_uuid().into_bytes())
                .collect(),
            next: 0,
        })
        .collect();
    drive(workers, ctx.budget).await
}

#[cfg(test)]
mod tests {
    use super::slice;

    #[test]
    fn workers_share_the_keys_without_overlap() {
        assert_eq!(slice(1, 4, 10), vec![1, 5, 9]);
        let mut all: Vec<usize> = (0..4).flat_map(|t| slice(t, 4, 10)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }
}
