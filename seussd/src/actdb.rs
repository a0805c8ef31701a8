//! Activation records in SQLite (`state_dir/activations.sqlite`, through rusqlite's bundled library): one
//! row per record (the record as JSON beside the columns a list filters on), indexed by namespace, name and
//! start so `GET .../activations` pages through the database instead of scanning files.
//!
//! Durability as before: WAL journal with `synchronous = FULL`, so a batch is on disk when its commit
//! returns (one WAL fsync per batch). One [`Writer`] (the saver's thread, `saver.rs`) inserts and prunes;
//! readers share one connection of their own, and in WAL mode they neither block the writer nor see a
//! half-written batch. Retention ([`Retention`]) deletes records past a maximum age and past a maximum
//! count per namespace, oldest first.

use crate::model::{Activation, ActivationQuery};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Transaction};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The database file under `state_dir`.
pub const DB_FILE: &str = "activations.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS activations (
    id        TEXT PRIMARY KEY NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    start     INTEGER NOT NULL,
    record    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS activations_by_ns ON activations(namespace, start DESC, id DESC);
CREATE INDEX IF NOT EXISTS activations_by_name ON activations(namespace, name, start DESC, id DESC);
CREATE INDEX IF NOT EXISTS activations_by_start ON activations(start);
PRAGMA user_version = 1;
";

pub type Result<T> = rusqlite::Result<T>;

/// What the background pruning keeps (0 for either: no limit of that kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Records whose `start` is older than this (ms) are deleted.
    pub max_age_ms: u64,
    /// Records of one namespace beyond this many, oldest first, are deleted.
    pub max_per_namespace: u64,
    /// Time between two pruning passes (ms).
    pub interval_ms: u64,
}

impl Retention {
    /// Whether any limit is set (else the writer never prunes).
    pub fn enabled(&self) -> bool {
        self.max_age_ms > 0 || self.max_per_namespace > 0
    }
}

/// The database: its path and the readers' connection.
pub struct ActivationDb {
    path: PathBuf,
    read: Mutex<Connection>,
}

/// A value SQLite's INTEGER holds (u64 values past i64::MAX are clamped: no record starts that late).
fn int(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

fn connect(path: &Path) -> Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    Ok(c)
}

fn decode(json: String) -> Result<Activation> {
    serde_json::from_str(&json)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

/// `WHERE` clause and parameters for the records of `ns` that `q` selects (not skip and limit).
fn filter(ns: &str, q: &ActivationQuery) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut sql = String::from("namespace = ?");
    let mut args = vec![V::Text(ns.to_string())];
    if let Some(n) = &q.name {
        sql.push_str(" AND name = ?");
        args.push(V::Text(n.clone()));
    }
    if let Some(s) = q.since {
        sql.push_str(" AND start >= ?");
        args.push(V::Integer(int(s)));
    }
    if let Some(u) = q.upto {
        sql.push_str(" AND start <= ?");
        args.push(V::Integer(int(u)));
    }
    (sql, args)
}

impl ActivationDb {
    /// Opens (creating, mode 0600) the database under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join(DB_FILE);
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            // SQLite gives its -wal and -shm files the database file's mode: records stay private.
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
        }
        let c = connect(&path)?;
        // Only takes effect on a new database: pruned pages go back to the file system in small steps.
        c.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        c.execute_batch(SCHEMA)?;
        Ok(Self { path, read: Mutex::new(c) })
    }

    /// The connection of the (one) writer.
    pub fn writer(&self) -> Result<Writer> {
        Ok(Writer { conn: connect(&self.path)? })
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.read.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record with id `id`.
    pub fn get(&self, id: &str) -> Result<Option<Activation>> {
        let c = self.reader();
        let json: Option<String> = c
            .prepare_cached("SELECT record FROM activations WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        json.map(decode).transpose()
    }

    /// The page `q` selects of the records of `ns` in the database plus `pending` (records of `ns` that
    /// `q` matches, taken from the writer's queue before this call: those already written are found once),
    /// newest first. One read transaction: the writer's commits meanwhile are not seen.
    pub fn page(&self, ns: &str, q: &ActivationQuery, pending: Vec<Activation>) -> Result<Vec<Activation>> {
        let mut c = self.reader();
        let tx = c.transaction()?;
        let extra = not_stored(&tx, pending)?;
        let offset = q.skip.saturating_sub(extra.len());
        let fetch = (q.skip.saturating_add(q.limit) - offset) as u64;
        let (cond, mut args) = filter(ns, q);
        args.push(int(fetch).into());
        args.push(int(offset as u64).into());
        let sql = format!(
            "SELECT record FROM activations WHERE {cond} ORDER BY start DESC, id DESC LIMIT ? OFFSET ?"
        );
        let tail = tx
            .prepare(&sql)?
            .query_map(params_from_iter(args), |r| r.get::<_, String>(0))?
            .map(|j| j.and_then(decode))
            .collect::<Result<Vec<_>>>()?;
        Ok(crate::actpage::page(offset, tail, extra, q.skip, q.limit))
    }

    /// How many records of `ns` in the database plus `pending` (as for [`ActivationDb::page`]) `q`
    /// matches past `q.skip`.
    pub fn count(&self, ns: &str, q: &ActivationQuery, pending: Vec<Activation>) -> Result<usize> {
        let mut c = self.reader();
        let tx = c.transaction()?;
        let extra = not_stored(&tx, pending)?.len();
        let (cond, args) = filter(ns, q);
        let n: i64 = tx.query_row(
            &format!("SELECT COUNT(*) FROM activations WHERE {cond}"),
            params_from_iter(args),
            |r| r.get(0),
        )?;
        Ok((n as usize + extra).saturating_sub(q.skip))
    }
}

/// The records of `pending` that the transaction's snapshot does not hold.
fn not_stored(tx: &Transaction<'_>, pending: Vec<Activation>) -> Result<Vec<Activation>> {
    let mut st = tx.prepare_cached("SELECT 1 FROM activations WHERE id = ?1")?;
    let mut out = Vec::with_capacity(pending.len());
    for a in pending {
        if !st.exists([&a.activation_id])? {
            out.push(a);
        }
    }
    Ok(out)
}

/// The writer's connection: inserts batches and prunes.
pub struct Writer {
    conn: Connection,
}

impl Writer {
    /// Stores `acts` in one transaction (replacing records with the same id; `keep_existing`: leaving
    /// them); durable when this returns.
    pub fn insert(&mut self, acts: &[Activation], keep_existing: bool) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let verb = if keep_existing { "INSERT OR IGNORE" } else { "INSERT OR REPLACE" };
            let mut st = tx.prepare_cached(&format!(
                "{verb} INTO activations (id, namespace, name, start, record) VALUES (?1, ?2, ?3, ?4, ?5)"
            ))?;
            for a in acts {
                let json = serde_json::to_string(a)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
                st.execute(params![a.activation_id, a.namespace, a.name, int(a.start), json])?;
            }
        }
        tx.commit()
    }

    /// One pruning pass at time `now_ms`: deletes what `r` does not keep; returns how many records.
    pub fn prune(&mut self, r: &Retention, now_ms: u64) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let mut gone = 0;
        if r.max_age_ms > 0 {
            let cut = int(now_ms.saturating_sub(r.max_age_ms));
            gone += tx.execute("DELETE FROM activations WHERE start < ?1", [cut])?;
        }
        if r.max_per_namespace > 0 {
            let namespaces: Vec<String> = tx
                .prepare("SELECT DISTINCT namespace FROM activations")?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_>>()?;
            for ns in namespaces {
                gone += tx.execute(
                    "DELETE FROM activations WHERE id IN (SELECT id FROM activations WHERE namespace = ?1 \
                     ORDER BY start DESC, id DESC LIMIT -1 OFFSET ?2)",
                    params![ns, int(r.max_per_namespace)],
                )?;
            }
        }
        tx.commit()?;
        if gone > 0 {
            self.conn.execute_batch("PRAGMA incremental_vacuum(1000)")?;
        }
        Ok(gone)
    }
}
