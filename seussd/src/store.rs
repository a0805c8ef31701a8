//! Persistence under `state_dir`: one JSON file per function (`functions/NAME.json`; an action `pkg/name`
//! of a package is `functions/pkg+name.json`, see [`function_file`]) and the snapshot index
//! (`snapshots.json`); activation records are in a database (`actdb.rs`). Every write goes to a
//! temporary file in the same directory, is fsynced, then renamed over the target (and the directory
//! fsynced), so a crash leaves either the old or the new file. Leftover temporary files (dot-names) are ignored when loading.

use crate::model::FunctionInfo;
use serde::{de::DeserializeOwned, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// True for names OpenWhisk accepts as entity names (and that are safe as file names).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {}
        _ => return false,
    }
    name.len() <= 256
        && chars.all(|c| c.is_ascii_alphanumeric() || "_@.-".contains(c))
        && !name.contains("..")
}

/// True for action names: `name`, or `pkg/name` for an action of package `pkg`, each part a [`valid_name`].
pub fn valid_action_name(name: &str) -> bool {
    match name.split_once('/') {
        Some((pkg, action)) => valid_name(pkg) && valid_name(action),
        None => valid_name(name),
    }
}

/// Action `name` (a [`valid_action_name`]) as one path component: `/` becomes `+`, which no entity name
/// holds.
pub fn flat_name(name: &str) -> String {
    name.replace('/', "+")
}

/// The file name of action `name`.
pub fn function_file(name: &str) -> String {
    format!("{}.json", flat_name(name))
}

/// Writes `data` to `path` atomically (temp file + fsync + rename + directory fsync).
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let base = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{base}.{}.{}.tmp",
        std::process::id(),
        crate::util::nonzero_u64()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    fs::File::open(dir)?.sync_all()
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let data = fs::read(path).ok()?;
    match serde_json::from_slice(&data) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("ignoring unreadable {}: {e}", path.display());
            None
        }
    }
}

/// The stored form of every JSON file.
fn encode<T: Serialize>(v: &T) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(std::io::Error::other)
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
    write_atomic(path, &encode(v)?)
}

impl Store {
    /// Opens (creating) the state directory layout.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        for d in [root.to_path_buf(), root.join("functions")] {
            fs::create_dir_all(&d)?;
        }
        // The root must be traversable by the instance user (the launcher lives below it); the records not.
        fs::set_permissions(root, fs::Permissions::from_mode(0o711))?;
        fs::set_permissions(root.join("functions"), fs::Permissions::from_mode(0o700))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn function_path(&self, name: &str) -> PathBuf {
        self.root.join("functions").join(function_file(name))
    }

    pub fn save_function(&self, f: &FunctionInfo) -> std::io::Result<()> {
        assert!(
            valid_action_name(&f.name),
            "function names are validated before they reach the store"
        );
        write_json(&self.function_path(&f.name), f)
    }

    pub fn delete_function(&self, name: &str) -> std::io::Result<()> {
        match fs::remove_file(self.function_path(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// All stored functions; temporary and unreadable files are skipped.
    pub fn load_functions(&self) -> Vec<FunctionInfo> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(self.root.join("functions")) else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            if let Some(f) = read_json::<FunctionInfo>(&e.path()) {
                if valid_action_name(&f.name) && function_file(&f.name) == name {
                    out.push(f);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn save_json<T: Serialize>(&self, file: &str, v: &T) -> std::io::Result<()> {
        write_json(&self.root.join(file), v)
    }

    pub fn load_json<T: DeserializeOwned>(&self, file: &str) -> Option<T> {
        read_json(&self.root.join(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn func(name: &str, code: &str) -> FunctionInfo {
        FunctionInfo {
            namespace: "guest".into(),
            name: name.into(),
            version: "0.0.1".into(),
            publish: false,
            exec: Exec {
                kind: "python:3".into(),
                code: Some(code.into()),
                main: None,
                binary: false,
                components: None,
            },
            parameters: vec![KeyValue::new("k", "v")],
            annotations: vec![],
            limits: Limits::default(),
            updated: 5,
        }
    }

    #[test]
    fn functions_round_trip_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.save_function(&func("b", "x")).unwrap();
        s.save_function(&func("a", "def main(a): return a"))
            .unwrap();
        s.save_function(&func("a", "def main(a): return {}"))
            .unwrap();
        let all = s.load_functions();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], func("a", "def main(a): return {}"));
        s.delete_function("b").unwrap();
        s.delete_function("b").unwrap();
        assert_eq!(Store::open(dir.path()).unwrap().load_functions().len(), 1);
    }

    #[test]
    fn leftover_temp_and_corrupt_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.save_function(&func("good", "x")).unwrap();
        let fdir = dir.path().join("functions");
        // A crash between create and rename leaves a half-written dot-file behind.
        fs::write(fdir.join(".evil.json.123.456.tmp"), b"{\"namespace\":").unwrap();
        fs::write(
            fdir.join(".hidden.json"),
            serde_json::to_vec(&func("hidden", "x")).unwrap(),
        )
        .unwrap();
        fs::write(fdir.join("torn.json"), b"{\"namespace\": \"gu").unwrap();
        // A file whose content names another function is not trusted either.
        fs::write(
            fdir.join("other.json"),
            serde_json::to_vec(&func("good", "y")).unwrap(),
        )
        .unwrap();
        let names: Vec<_> = s.load_functions().into_iter().map(|f| f.name).collect();
        assert_eq!(names, vec!["good"]);
        // No temporary file is left behind by successful writes.
        let tmps = fs::read_dir(&fdir)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name().to_string_lossy().ends_with(".tmp")
                    && !e.file_name().to_string_lossy().contains("evil")
            })
            .count();
        assert_eq!(tmps, 0);
    }

    #[test]
    fn names_are_validated() {
        for good in ["hello", "_x", "a.b-c@d", "A1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", ".x", "a/b", "..", "a..b", "-x", "a b", &"x".repeat(257)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
