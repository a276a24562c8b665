//! Dynamic security's model in the store: stream `dynsec`, one record per change holding the
//! whole model (it is small), the previous record marked dead once the new one is durable. At
//! start the newest readable record is put back.

use std::sync::Arc;

use outpost_auth::Security;
use outpost_store::{Store, StoreError};

const STREAM: &str = "dynsec";

/// Puts back the saved model and makes every change append to the store.
pub fn open(store: &Store, security: &Arc<Security>) -> Result<(), StoreError> {
    let stream = store.stream(STREAM)?;
    let mut from = 0;
    let mut records = Vec::new();
    loop {
        let batch = store.scan(stream, from, 256);
        let Some(last) = batch.last() else { break };
        from = last.id.seq + 1;
        records.extend(batch);
    }
    let mut stale = Vec::new();
    let mut newest = None;
    // The newest record that reads back wins; any other is left over from a crash.
    while let Some(r) = records.pop() {
        if newest.is_none() {
            match security.dynamic.restore(&r.payload) {
                Ok(()) => newest = Some(r.id),
                Err(e) => {
                    tracing::warn!(seq = r.id.seq, error = %e, "a dynamic security record that cannot be read was skipped");
                    stale.push(r.id);
                }
            }
        } else {
            stale.push(r.id);
        }
    }
    store.mark_dead_later(&stale);
    let model = security.dynamic.snapshot();
    if newest.is_some() {
        tracing::info!(
            clients = model.clients.len(),
            groups = model.groups.len(),
            roles = model.roles.len(),
            "dynamic security restored"
        );
    }
    // The record in force; changes are saved one at a time (dynamic security's writer lock), so
    // this lock never waits.
    let last = Arc::new(std::sync::Mutex::new(newest));
    let store = store.clone();
    security.dynamic.set_saver(Arc::new(move |bytes: Vec<u8>| {
        let store = store.clone();
        let last = last.clone();
        Box::pin(async move {
            let id = store
                .append(stream, bytes::Bytes::from(bytes))
                .await
                .map_err(|e| e.to_string())?;
            let old = last.lock().unwrap_or_else(|e| e.into_inner()).replace(id);
            if let Some(old) = old {
                store.mark_dead_later(&[old]);
            }
            Ok(())
        })
    }));
    Ok(())
}
