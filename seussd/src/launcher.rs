//! The Python launcher (`launcher.py`, embedded) and the runtime key that names snapshot compatibility:
//! interpreter identity, kernel release and launcher hash. A snapshot made under another key is rebuilt.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The launcher source.
pub const SOURCE: &str = include_str!("launcher.py");

/// Hash of the launcher source.
pub fn hash() -> u64 {
    crate::util::fnv1a(SOURCE.as_bytes())
}

/// Writes the launcher to `dir/launcher-<hash>.py` (world-readable) and returns its path.
pub fn install(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("launcher-{:016x}.py", hash()));
    // Older launchers are not needed: their snapshots are rebuilt under the new key.
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("launcher-") && name.ends_with(".py") && e.path() != path {
            let _ = std::fs::remove_file(e.path());
        }
    }
    crate::store::write_atomic(&path, SOURCE.as_bytes())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    Ok(path)
}

/// The kernel release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `python:<real path>@<dev>:<ino>:<size>:<mtime>/kernel:<release>/launcher:<hash>`.
pub fn runtime_key(python: &Path) -> String {
    let real = std::fs::canonicalize(python).unwrap_or_else(|_| python.to_path_buf());
    let id = std::fs::metadata(&real)
        .map(|m| format!("{}:{}:{}:{}", m.dev(), m.ino(), m.size(), m.mtime()))
        .unwrap_or_else(|_| "missing".into());
    format!(
        "python:{}@{id}/kernel:{}/launcher:{:016x}",
        real.display(),
        kernel_release(),
        hash()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_with_the_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("python3");
        std::fs::write(&p, b"a").unwrap();
        let k1 = runtime_key(&p);
        assert!(k1.contains(&kernel_release()) && k1.contains(&format!("{:016x}", hash())));
        std::fs::write(&p, b"bb").unwrap();
        assert_ne!(k1, runtime_key(&p));
    }

    #[test]
    fn install_writes_the_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("launcher-0000000000000000.py"), "old").unwrap();
        let p = install(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), SOURCE);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(left, vec![p], "older launchers are removed");
    }
}
