//! `cycle`: per operation, a fresh handle runs Load → Save → Save(unlock) on the worker's
//! instance (created by its first Load): what a host does to resume, persist and release a
//! workflow. One operation = the three commands.
//! Raw equivalent: acquire (read the row, set its lock owner) → upsert the 4 KiB blob → clear the
//! lock owner, three requests to the writer.

use instore::{InstanceId, InstanceStore, Load, OwnerId, PropertyBag, Save};

use super::{cmd_err, create_owner, payload_bag, payload_bytes, RunCtx, COMMAND_TIMEOUT};
use crate::baseline::{Id, RawClient, RawOp, RawStore};
use crate::driver::{drive, Sample, Worker};

struct ProviderWorker {
    store: InstanceStore,
    owner: OwnerId,
    instance: InstanceId,
    data: PropertyBag,
}

impl Worker for ProviderWorker {
    async fn op(&mut self) -> Result<(), String> {
        let handle = self
            .store
            .create_handle_for(Some(self.owner), Some(self.instance));
        let load = Load {
            accept_uninitialized: true,
            ..Load::default()
        };
        let store = &self.store;
        store
            .execute(&handle, load, COMMAND_TIMEOUT)
            .await
            .map_err(cmd_err("Load"))?;
        store
            .execute(&handle, Save::data(self.data.clone()), COMMAND_TIMEOUT)
            .await
            .map_err(cmd_err("Save"))?;
        let unlock = Save {
            unlock: true,
            ..Save::default()
        };
        store
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
    let owner = create_owner(store, "bench-cycle").await?;
    let workers = (0..handles)
        .map(|_| ProviderWorker {
            store: store.clone(),
            owner,
            instance: InstanceId::new(),
            data: payload_bag(&payload_bytes(ctx.payload_bytes)),
        })
        .collect();
    drive(workers, ctx.budget).await
}

struct RawWorker {
    client: RawClient,
    id: Id,
    data: std::sync::Arc<[u8]>,
}

impl Worker for RawWorker {
    async fn op(&mut self) -> Result<(), String> {
        let id = self.id;
        self.client.submit(RawOp::Acquire { id }).await?;
        let data = self.data.clone();
        self.client.submit(RawOp::Upsert { id, data }).await?;
        self.client.submit(RawOp::Unlock { id }).await?;
        Ok(())
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
