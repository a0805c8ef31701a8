//! Storing finished activation records off the answer's path. One thread, at a lower CPU priority than
//! the rest of seussd, writes the records in batches (each file fsynced, the directory once per batch);
//! until a record is on disk, [`Saver::get`] finds it in memory. On one CPU this keeps the disk work of
//! one activation from running inside the next one's latency; under load it turns a blocking-pool thread
//! per record into one writer with one directory fsync per batch.

use crate::model::Activation;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The writer's `nice` value (seussd runs at 0): it yields to request handling and instances.
const SAVER_NICE: libc::c_int = 10;

#[derive(Default)]
struct Pending {
    records: Mutex<HashMap<String, Activation>>,
    /// Signalled after each batch is written (see [`Saver::wait_saved`]).
    saved: Condvar,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Activation>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The activation-record writer. Dropping it ends the thread once everything queued is written.
pub struct Saver {
    tx: mpsc::Sender<String>,
    pending: Arc<Pending>,
}

impl Saver {
    /// Starts the writer thread for `store`.
    pub fn start(store: Store) -> std::io::Result<Saver> {
        let (tx, rx) = mpsc::channel::<String>();
        let pending = Arc::new(Pending::default());
        let p = pending.clone();
        std::thread::Builder::new()
            .name("seussd-saver".into())
            .spawn(move || writer(store, rx, p))?;
        Ok(Saver { tx, pending })
    }

    /// Queues a finished record; [`Saver::get`] returns it from now on.
    pub fn save(&self, act: Activation) {
        let id = act.activation_id.clone();
        self.pending.lock().insert(id.clone(), act);
        if self.tx.send(id.clone()).is_err() {
            // The writer is gone (it only ends when the Saver is dropped): keep the record readable.
            tracing::error!("activation {id}: the record writer has stopped");
        }
    }

    /// A record not yet on disk, by id.
    pub fn get(&self, id: &str) -> Option<Activation> {
        self.pending.lock().get(id).cloned()
    }

    /// The records not yet on disk that `keep` accepts.
    pub fn pending_matching(&self, keep: impl Fn(&Activation) -> bool) -> Vec<Activation> {
        self.pending.lock().values().filter(|a| keep(a)).cloned().collect()
    }

    /// Waits until every record queued so far is written (or failed), at most `limit`; true if so.
    pub fn wait_saved(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut g = self.pending.lock();
        while !g.is_empty() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self.pending.saved.wait_timeout(g, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

fn writer(store: Store, rx: mpsc::Receiver<String>, pending: Arc<Pending>) {
    // SAFETY: setpriority with PRIO_PROCESS and a thread id changes that thread's nice value only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, SAVER_NICE) } != 0 {
        tracing::debug!("saver priority: {}", std::io::Error::last_os_error());
    }
    while let Ok(first) = rx.recv() {
        let ids: Vec<String> = std::iter::once(first).chain(rx.try_iter()).collect();
        let batch: Vec<Activation> = {
            let g = pending.lock();
            ids.iter().filter_map(|id| g.get(id).cloned()).collect()
        };
        if let Err(e) = store.save_activations(&batch) {
            tracing::error!("saving {} activation record(s): {e}", batch.len());
        }
        let mut g = pending.lock();
        for id in &ids {
            g.remove(id);
        }
        drop(g);
        pending.saved.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_are_readable_before_and_after_they_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let saver = Saver::start(store.clone()).unwrap();
        let ids: Vec<String> = (0..50).map(|i| format!("{:032x}", i + 1)).collect();
        for id in &ids {
            saver.save(Activation::sample(id));
            assert!(saver.get(id).is_some() || store.load_activation(id).is_some());
        }
        assert!(saver.wait_saved(Duration::from_secs(10)));
        for id in &ids {
            assert_eq!(saver.get(id), None, "nothing left in memory");
            assert_eq!(store.load_activation(id).unwrap().response.result, json!({"i": id}));
        }
    }
}
