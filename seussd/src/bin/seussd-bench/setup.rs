//! Benchmark setup: the tmpfs copy of the interpreter (so neither the cold nor the snapshot path pays for
//! the 9p root), the host's configuration, and the two benchmark functions.

use seussd::config::Config;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the interpreter and its library are copied.
pub const TMPFS_ROOT: &str = "/dev/shm/seuss-bench-py";

/// Hello: no imports of its own.
pub const HELLO: &str = "def main(args):\n    return {'greeting': 'hello ' + str(args.get('name', 'world'))}\n";

/// The heavier function: imports json, re, decimal, email and http.client at init.
pub const HEAVY: &str = "import json, re, decimal, email, http.client\n\
def main(args):\n    d = decimal.Decimal(args.get('x', 1)) / decimal.Decimal(7)\n    \
return {'d': str(d)[:10], 'm': bool(re.match(r'\\d', json.dumps(args))), 'st': http.client.responses[200]}\n";

/// A distinct small function for the burst (`i` makes it new).
pub fn burst_code(i: usize) -> String {
    format!("N = {i}\ndef main(args):\n    return {{'n': N}}\n")
}

/// Copies `python` (a `bin/pythonX.Y` next to `lib/pythonX.Y`) to tmpfs unless done; returns the copy and
/// a description of how it was done.
pub fn tmpfs_python(python: &Path) -> anyhow::Result<(PathBuf, String)> {
    let real = std::fs::canonicalize(python)?;
    let name = real
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow::anyhow!("odd interpreter path {}", real.display()))?
        .to_string();
    let prefix = real
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("no prefix for {}", real.display()))?;
    let lib = prefix.join("lib").join(&name);
    anyhow::ensure!(lib.join("os.py").exists(), "{} has no os.py", lib.display());
    let root = PathBuf::from(TMPFS_ROOT);
    let bin = root.join("bin").join(&name);
    if !bin.exists() {
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::create_dir_all(root.join("lib"))?;
        let cp = |from: &Path, to: &Path| -> anyhow::Result<()> {
            let ok = Command::new("cp").arg("-a").arg(from).arg(to).status()?.success();
            anyhow::ensure!(ok, "cp -a {} {} failed", from.display(), to.display());
            Ok(())
        };
        cp(&lib, &root.join("lib"))?;
        cp(&real, &bin)?;
    }
    // Warm the page cache of the copy (and of the shared libraries, which stay on the root for both paths).
    for _ in 0..3 {
        Command::new(&bin)
            .args(["-I", "-c", "import json, re, decimal, email, http.client, ctypes, random, threading"])
            .status()?;
    }
    let how = format!(
        "interpreter {} and {} copied to tmpfs {} (cp -a, page cache warmed by 3 runs); \
         both cold and snapshot paths use the copy; shared libraries (libc, libssl, ...) stay on the root fs",
        real.display(),
        lib.display(),
        root.display()
    );
    Ok((bin, how))
}

/// The host's configuration for the run: state in a fresh directory under /tmp (guest tmpfs overlay).
pub fn config(python: PathBuf, stub: PathBuf, budget_mb: u64) -> anyhow::Result<Config> {
    let dir = std::env::temp_dir().join(format!("seussd-bench.{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(Config {
        state_dir: dir.join("state"),
        python,
        stub: Some(stub),
        memory_budget_mb: budget_mb,
        stub_pool: 2,
        idle_timeout_s: 86_400,
        init_timeout_ms: 300_000,
        max_timeout_ms: 300_000,
        ..Config::default()
    })
}
