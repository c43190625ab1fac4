//! `save`: N handles, each bound once to its own instance (`Load { accept_uninitialized }`),
//! then saving a 4 KiB state over and over without unlocking. One operation = one `Save`.
//! Raw equivalent: one `INSERT … ON CONFLICT DO UPDATE` of the 4 KiB blob per operation.

use instore::{InstanceHandle, InstanceId, InstanceStore, Load, PropertyBag, Save};

use super::{cmd_err, create_owner, payload_bag, payload_bytes, RunCtx, COMMAND_TIMEOUT};
use crate::baseline::{Id, RawClient, RawOp, RawStore};
use crate::driver::{drive, Sample, Worker};

struct ProviderWorker {
    store: InstanceStore,
    handle: InstanceHandle,
    data: PropertyBag,
}

impl Worker for ProviderWorker {
    async fn op(&mut self) -> Result<(), String> {
        self.store
            .execute(&self.handle, Save::data(self.data.clone()), COMMAND_TIMEOUT)
            .await
            .map(drop)
            .map_err(cmd_err("Save"))
    }
}

pub async fn provider(
    store: &InstanceStore,
    handles: usize,
    ctx: &RunCtx,
) -> Result<Sample, String> {
    let owner = create_owner(store, "bench-save").await?;
    let mut workers = Vec::with_capacity(handles);
    for _ in 0..handles {
        let handle = store.create_handle_for(Some(owner), Some(InstanceId::new()));
        let load = Load {
            accept_uninitialized: true,
            ..Load::default()
        };
        store
            .execute(&handle, load, COMMAND_TIMEOUT)
            .await
            .map_err(cmd_err("Load"))?;
        workers.push(ProviderWorker {
            store: store.clone(),
            handle,
            data: payload_bag(&payload_bytes(ctx.payload_bytes)),
        });
    }
    drive(workers, ctx.budget).await
}

struct RawWorker {
    client: RawClient,
    id: Id,
    data: std::sync::Arc<[u8]>,
}

impl Worker for RawWorker {
    async fn op(&mut self) -> Result<(), String> {
        let op = RawOp::Upsert {
            id: self.id,
            data: self.data.clone(),
        };
        self.client.submit(op).await.map(drop)
    }
}

pub async fn raw(raw: &RawStore, handles: usize, ctx: &RunCtx) -> Result<Sample, String> {
    let workers = (0..handles)
        .map(|_| RawWorker {
            client: raw.client(),
            id: rand::random(),
            data: payload_bytes(ctx.payload_bytes),
        })
        .collect();
    drive(workers, ctx.budget).await
}
