//! Storing finished activation records off the answer's path. One thread, at a lower CPU priority than
//! the rest of seussd, writes the records to the database (`actdb.rs`) in batches, one transaction (one
//! WAL fsync) per batch; until a record is committed, [`Saver::get`] and the lists find it in memory. On one
//! CPU this keeps the disk work of one activation from running inside the next one's latency; under load it
//! turns a blocking-pool thread per record into one writer with one fsync per batch. The same thread
//! prunes the database every `Retention::interval_ms` (one writer: pruning never competes with a batch).

use crate::actdb::{ActivationDb, Retention, Writer};
use crate::model::{Activation, ActivationQuery};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The writer's `nice` value (seussd runs at 0): it yields to request handling and instances.
const SAVER_NICE: libc::c_int = 10;

#[derive(Default)]
struct Pending {
    records: Mutex<HashMap<String, Activation>>,
    /// Signalled after each batch is written and after each pruning pass.
    saved: Condvar,
    /// Pruning passes finished.
    passes: AtomicU64,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Activation>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits on `saved` until `done` holds, at most `limit`; true if it does.
    fn wait(&self, limit: Duration, done: impl Fn(&HashMap<String, Activation>) -> bool) -> bool {
        let end = Instant::now() + limit;
        let mut g = self.lock();
        while !done(&g) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self.saved.wait_timeout(g, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

/// The activation-record writer. Dropping it ends the thread once everything queued is written.
pub struct Saver {
    tx: mpsc::Sender<String>,
    pending: Arc<Pending>,
    db: Arc<ActivationDb>,
}

impl Saver {
    /// Starts the writer thread for `db`, pruning as `retention` says.
    pub fn start(db: Arc<ActivationDb>, retention: Retention) -> anyhow::Result<Saver> {
        let (tx, rx) = mpsc::channel::<String>();
        let pending = Arc::new(Pending::default());
        let (p, w) = (pending.clone(), db.writer()?);
        std::thread::Builder::new()
            .name("seussd-saver".into())
            .spawn(move || writer(w, retention, rx, p))?;
        Ok(Saver { tx, pending, db })
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

    /// A record not yet in the database, by id.
    pub fn get(&self, id: &str) -> Option<Activation> {
        self.pending.lock().get(id).cloned()
    }

    /// A record by id, queued or stored (blocking: a database read).
    pub fn load(&self, id: &str) -> crate::actdb::Result<Option<Activation>> {
        match self.get(id) {
            Some(a) => Ok(Some(a)),
            None => self.db.get(id),
        }
    }

    /// The finished records of `ns` that `q` selects, queued or stored, newest first (blocking).
    pub fn page(&self, ns: &str, q: &ActivationQuery) -> crate::actdb::Result<Vec<Activation>> {
        self.db.page(ns, q, self.pending_matching(ns, q))
    }

    /// How many finished records of `ns` `q` matches past its skip, queued or stored (blocking).
    pub fn count(&self, ns: &str, q: &ActivationQuery) -> crate::actdb::Result<usize> {
        self.db.count(ns, q, self.pending_matching(ns, q))
    }

    /// The records not yet in the database that a list of `ns` with `q` takes (taken before the database
    /// is read: a record moving there meanwhile is then found in one place or both, and counted once).
    fn pending_matching(&self, ns: &str, q: &ActivationQuery) -> Vec<Activation> {
        let keep = |a: &Activation| a.namespace == ns && a.end != 0 && q.matches(a);
        self.pending.lock().values().filter(|a| keep(a)).cloned().collect()
    }

    /// Waits until every record queued so far is written (or failed), at most `limit`; true if so.
    pub fn wait_saved(&self, limit: Duration) -> bool {
        self.pending.wait(limit, |g| g.is_empty())
    }

    /// Pruning passes finished so far.
    pub fn prune_passes(&self) -> u64 {
        self.pending.passes.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` pruning passes have finished, at most `limit`; true if so.
    pub fn wait_pruned(&self, n: u64, limit: Duration) -> bool {
        self.pending.wait(limit, |_| self.prune_passes() >= n)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn writer(mut w: Writer, retention: Retention, rx: mpsc::Receiver<String>, pending: Arc<Pending>) {
    // SAFETY: setpriority with PRIO_PROCESS and a thread id changes that thread's nice value only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, SAVER_NICE) } != 0 {
        tracing::debug!("saver priority: {}", std::io::Error::last_os_error());
    }
    let interval = Duration::from_millis(retention.interval_ms.max(1));
    // The first pass soon after start: records that aged while seussd was stopped go first.
    let mut next_prune = Instant::now();
    loop {
        let first = if retention.enabled() {
            match rx.recv_timeout(next_prune.saturating_duration_since(Instant::now())) {
                Ok(id) => Some(id),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(id) => Some(id),
                Err(_) => break,
            }
        };
        if let Some(first) = first {
            write_batch(&mut w, first, &rx, &pending);
        }
        if retention.enabled() && Instant::now() >= next_prune {
            match w.prune(&retention, now_ms()) {
                Ok(0) => {}
                Ok(n) => tracing::debug!("pruned {n} activation record(s)"),
                Err(e) => tracing::error!("pruning activation records: {e}"),
            }
            next_prune = Instant::now() + interval;
            let _g = pending.lock();
            pending.passes.fetch_add(1, Ordering::SeqCst);
            pending.saved.notify_all();
        }
    }
}

/// Writes `first` and whatever else is queued in one transaction, then drops them from memory.
fn write_batch(w: &mut Writer, first: String, rx: &mpsc::Receiver<String>, pending: &Pending) {
    let ids: Vec<String> = std::iter::once(first).chain(rx.try_iter()).collect();
    let batch: Vec<Activation> = {
        let g = pending.lock();
        ids.iter().filter_map(|id| g.get(id).cloned()).collect()
    };
    match w.insert(&batch, false) {
        Ok(()) if batch.iter().any(|a| crate::testhook::fires("record-saved", &a.name)) => {
            crate::testhook::kill_now("record-saved", &batch[0].activation_id)
        }
        Ok(()) => {}
        Err(e) => tracing::error!("saving {} activation record(s): {e}", batch.len()),
    }
    let mut g = pending.lock();
    for id in &ids {
        g.remove(id);
    }
    drop(g);
    pending.saved.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WAIT: Duration = Duration::from_secs(20);

    fn saver(dir: &std::path::Path, retention: Retention) -> (Saver, Arc<ActivationDb>) {
        let db = Arc::new(ActivationDb::open(dir).unwrap());
        (Saver::start(db.clone(), retention).unwrap(), db)
    }

    fn rec(ns: &str, n: u64, start: u64) -> Activation {
        let mut a = Activation::sample(&format!("{n:032x}"));
        a.namespace = ns.into();
        a.start = start;
        a.end = start + 1;
        a
    }

    fn ids(v: &[Activation]) -> Vec<String> {
        v.iter().map(|a| a.activation_id.clone()).collect()
    }

    const NO_PRUNING: Retention = Retention { max_age_ms: 0, max_per_namespace: 0, interval_ms: 1 };

    #[test]
    fn records_are_readable_before_and_after_they_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (saver, db) = saver(dir.path(), NO_PRUNING);
        let ids: Vec<String> = (0..50).map(|i| format!("{:032x}", i + 1)).collect();
        for id in &ids {
            saver.save(Activation::sample(id));
            assert!(saver.load(id).unwrap().is_some());
        }
        assert!(saver.wait_saved(WAIT));
        for id in &ids {
            assert_eq!(saver.get(id), None, "nothing left in memory");
            assert_eq!(db.get(id).unwrap().unwrap().response.result, json!({"i": id}));
        }
        let q = ActivationQuery { limit: 200, ..Default::default() };
        assert_eq!(saver.count("guest", &q).unwrap(), 50);
        assert_eq!(saver.page("guest", &q).unwrap().len(), 50);
    }

    #[test]
    fn pruning_keeps_the_newest_per_namespace_and_drops_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let hour = 3_600_000;
        let now = now_ms();
        let retention = Retention { max_age_ms: hour, max_per_namespace: 3, interval_ms: 10 };
        let (saver, _db) = saver(dir.path(), retention);
        // Five recent records of guest, two of other, and one of each older than the maximum age.
        for n in 0..5 {
            saver.save(rec("guest", n, now - 1000 + n));
        }
        saver.save(rec("other", 10, now - 500));
        saver.save(rec("other", 11, now - 400));
        saver.save(rec("guest", 20, now - 2 * hour));
        saver.save(rec("other", 21, now - 2 * hour));
        assert!(saver.wait_saved(WAIT));
        // The writer is idle: the next pass to finish started after every record was written.
        let p = saver.prune_passes();
        assert!(saver.wait_pruned(p + 1, WAIT), "a pruning pass ran");
        let all = ActivationQuery { limit: 200, ..Default::default() };
        let guest = saver.page("guest", &all).unwrap();
        assert_eq!(ids(&guest), ids(&[rec("guest", 4, 0), rec("guest", 3, 0), rec("guest", 2, 0)]));
        assert_eq!(ids(&saver.page("other", &all).unwrap()), ids(&[rec("other", 11, 0), rec("other", 10, 0)]));
        assert_eq!(saver.count("guest", &all).unwrap(), 3);
        assert_eq!(saver.load(&format!("{:032x}", 20)).unwrap(), None);
        // New records keep being pruned in later passes.
        saver.save(rec("guest", 30, now_ms()));
        assert!(saver.wait_saved(WAIT));
        let p = saver.prune_passes();
        assert!(saver.wait_pruned(p + 1, WAIT));
        let guest = ids(&saver.page("guest", &all).unwrap());
        assert_eq!(guest, ids(&[rec("guest", 30, 0), rec("guest", 4, 0), rec("guest", 3, 0)]));
    }

    #[test]
    fn no_limits_no_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let (saver, _db) = saver(dir.path(), NO_PRUNING);
        saver.save(rec("guest", 1, 1));
        assert!(saver.wait_saved(WAIT));
        assert_eq!(saver.prune_passes(), 0, "no pass without limits");
        assert!(saver.load(&format!("{:032x}", 1)).unwrap().is_some());
    }
}
