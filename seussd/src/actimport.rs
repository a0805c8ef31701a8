//! The one-time upgrade from one JSON file per activation record (`state_dir/activations/ID.json`, written
//! by seussd before the database) to the database: at start, every readable record file is inserted (a
//! record the database already holds wins), and once that transaction is committed the imported files
//! are removed, then the directory if it is empty. Leftover temporary files (dot-names, from a write a
//! crash cut off) are removed too; a file that does not parse, or does not hold the record it is named
//! for, is left where it is (and logged) for an operator to look at. A crash mid-import repeats it at the
//! next start without loss or duplicates.

use crate::actdb::Writer;
use crate::model::Activation;
use crate::util::is_activation_id;
use std::fs;
use std::path::{Path, PathBuf};

/// The old records' directory under `state_dir`.
pub const LEGACY_DIR: &str = "activations";

/// Records inserted per transaction.
const BATCH: usize = 500;

/// What [`import`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Records inserted (or already present) and their files removed.
    pub records: usize,
    /// Files left in place because they could not be read as the record they are named for.
    pub left: usize,
}

/// Imports `state_dir/activations/*.json` into the database through `w` (nothing to do without it).
pub fn import(w: &mut Writer, state_dir: &Path) -> anyhow::Result<Imported> {
    let dir = state_dir.join(LEGACY_DIR);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Imported::default()),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", dir.display())),
    };
    let mut out = Imported::default();
    let mut batch: Vec<(PathBuf, Activation)> = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            let _ = fs::remove_file(e.path());
            continue;
        }
        match read_record(&e.path(), &name) {
            Some(a) => batch.push((e.path(), a)),
            None => {
                tracing::warn!("not importing {}: not a readable activation record", e.path().display());
                out.left += 1;
            }
        }
        if batch.len() == BATCH {
            out.records += flush(w, &mut batch)?;
        }
    }
    out.records += flush(w, &mut batch)?;
    if fs::remove_dir(&dir).is_ok() {
        fs::File::open(state_dir)?.sync_all()?;
    }
    if out.records > 0 || out.left > 0 {
        tracing::info!(
            "imported {} activation record(s) from {} into the database ({} file(s) left there)",
            out.records,
            dir.display(),
            out.left
        );
    }
    Ok(out)
}

fn read_record(path: &Path, name: &str) -> Option<Activation> {
    let id = name.strip_suffix(".json").filter(|id| is_activation_id(id))?;
    let a: Activation = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    (a.activation_id == id).then_some(a)
}

/// Inserts the batch, then removes its files; returns how many.
fn flush(w: &mut Writer, batch: &mut Vec<(PathBuf, Activation)>) -> anyhow::Result<usize> {
    let acts: Vec<Activation> = batch.iter().map(|(_, a)| a.clone()).collect();
    w.insert(&acts, true)?;
    for (p, _) in batch.iter() {
        fs::remove_file(p)?;
    }
    Ok(std::mem::take(batch).len())
}
