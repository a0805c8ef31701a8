//! `seussd-bench`: seussd's benchmark, run as root in the VM with seuss.ko loaded. It drives a real
//! [`seussd::host::Host`] in-process (the same `invoke` the HTTP and D-Bus front ends call, with the
//! `/dev/seuss` engine, the stub pool, instance users and cgroups), not over HTTP, so the figures exclude
//! HTTP parsing and include everything else.
//!
//! For a hello function and a heavier one (imports json, re, decimal, email, http.client) it measures p50/p99
//! of each start path (cold, runtime, warm, hot), their ratios, private memory per function snapshot (kernel
//! SNAP_INFO) and per idle instance (kernel DIRTY for deployed ones, smaps for cold ones), a burst of new
//! functions on the runtime path against the cold path, and how many function snapshots fit in 1 GiB.
//! Prints a table and the JSON (also written to `$SEUSS_OUT/seussd-bench.json`). Asserts nothing about speed.
//!
//! `seussd-bench [--n 200] [--n-cold 200] [--n-runtime 200] [--burst 500] [--python /usr/bin/python3]`

mod measure;
mod report;
mod setup;

use measure::{invoke, series};
use seussd::engine::{SnapshotEngine, UapiEngine};
use seussd::host::{Exec, FunctionDef, Host, Limits, StartPath};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Command-line knobs.
struct Args {
    n: usize,
    n_cold: usize,
    n_runtime: usize,
    burst: usize,
    python: std::path::PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args { n: 200, n_cold: 200, n_runtime: 200, burst: 500, python: "/usr/bin/python3".into() };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut it = v.chunks(2);
    for kv in &mut it {
        let [k, val] = kv else { anyhow::bail!("option {kv:?} needs a value") };
        match k.as_str() {
            "--n" => a.n = val.parse()?,
            "--n-cold" => a.n_cold = val.parse()?,
            "--n-runtime" => a.n_runtime = val.parse()?,
            "--burst" => a.burst = val.parse()?,
            "--python" => a.python = val.into(),
            _ => anyhow::bail!("unknown option {k}"),
        }
    }
    Ok(a)
}

fn def(code: &str) -> FunctionDef {
    FunctionDef {
        exec: Exec { kind: "python:3".into(), code: Some(code.into()), main: None, binary: false, components: None },
        parameters: vec![],
        annotations: vec![],
        limits: Limits::default(),
    }
}

/// All paths of one function.
async fn one_function(host: &Host, eng: &UapiEngine, name: &str, code: &str, a: &Args) -> anyhow::Result<report::FnResult> {
    host.put_function(name, def(code), true).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    eprintln!("# {name}: cold x{}", a.n_cold);
    let (cold, cold_bytes) = series(host, name, StartPath::Cold, a.n_cold, true).await?;
    eprintln!("# {name}: runtime with capture");
    let (capture_ms, _) = invoke(host, name, serde_json::json!({}), Some(StartPath::Runtime)).await?;
    let capture_bytes = host.idle_instances().iter().find(|i| i.function == name).map_or(0, |i| i.bytes);
    host.stop_idle(Some(name)).await;
    let snap = host
        .list_snapshots()
        .await
        .into_iter()
        .find(|s| s.function.as_deref() == Some(name))
        .ok_or_else(|| anyhow::anyhow!("{name}: no function snapshot after the runtime path"))?;
    let info = eng.snap_info(snap.id).map_err(|e| anyhow::anyhow!("snap_info: {e}"))?;
    eprintln!("# {name}: runtime x{}", a.n_runtime);
    let (runtime, runtime_bytes) = series(host, name, StartPath::Runtime, a.n_runtime, true).await?;
    eprintln!("# {name}: warm x{}", a.n);
    let (warm, warm_bytes) = series(host, name, StartPath::Warm, a.n, true).await?;
    invoke(host, name, serde_json::json!({}), Some(StartPath::Warm)).await?;
    eprintln!("# {name}: hot x{}", a.n);
    let (hot, hot_bytes) = series(host, name, StartPath::Hot, a.n, false).await?;
    host.stop_idle(Some(name)).await;
    Ok(report::FnResult {
        name: name.into(),
        cold,
        runtime_capture_ms: capture_ms,
        runtime,
        warm,
        hot,
        snapshot_id: snap.id,
        snapshot_private_pages: info.private_pages,
        snapshot_unchanged_pages: info.unchanged_pages,
        idle_bytes: report::IdleBytes { cold: cold_bytes, runtime_capture: capture_bytes, runtime: runtime_bytes, warm: warm_bytes, hot: hot_bytes },
    })
}

/// `n` distinct new functions invoked at once on the host's own choice (`None`: runtime path, capturing
/// each function's snapshot) or forced cold; returns (wall seconds, paths seen).
async fn burst(host: &Host, prefix: &str, n: usize, path: Option<StartPath>) -> anyhow::Result<(f64, Vec<(String, usize)>)> {
    for i in 0..n {
        host.put_function(&format!("{prefix}{i}"), def(&setup::burst_code(i)), true).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    host.stop_idle(None).await;
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (h, name) = (host.clone(), format!("{prefix}{i}"));
        set.spawn(async move {
            let (_, act) = invoke(&h, &name, serde_json::json!({}), path).await?;
            anyhow::ensure!(act.response.result["n"] == i, "{name}: wrong result {}", act.response.result);
            Ok::<_, anyhow::Error>(measure::started_path(&act).unwrap_or_default())
        });
    }
    let mut seen = std::collections::BTreeMap::new();
    while let Some(r) = set.join_next().await {
        *seen.entry(r??).or_insert(0usize) += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    host.stop_idle(None).await;
    Ok((wall, seen.into_iter().collect()))
}

async fn run(a: Args) -> anyhow::Result<()> {
    anyhow::ensure!(nix::unistd::geteuid().is_root(), "run as root (instances run as nobody, stubs need /dev/seuss)");
    let (python, how) = setup::tmpfs_python(&a.python)?;
    let exe = std::env::current_exe()?;
    let stub = exe.with_file_name("seuss-stub");
    let cfg = setup::config(python, stub, 3072)?;
    let eng = Arc::new(UapiEngine::open(&cfg.device)?);
    let host = Host::start(cfg.clone(), Some(eng.clone() as Arc<dyn SnapshotEngine>)).await?;
    let t0 = Instant::now();
    let rt = loop {
        if let Some(s) = host.list_snapshots().await.into_iter().find(|s| s.function.is_none()) {
            break s;
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(600), "no runtime snapshot after 600 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rt_build_s = t0.elapsed().as_secs_f64();
    let rt_pages = eng.snap_info(rt.id).map_err(|e| anyhow::anyhow!("snap_info: {e}"))?.private_pages;
    eprintln!("# runtime snapshot {} ({} private pages) after {:.1} s", rt.id, rt_pages, rt_build_s);
    let hello = one_function(&host, &eng, "hello", setup::HELLO, &a).await?;
    println!("# partial: {}", serde_json::to_string(&hello.json())?);
    let heavy = one_function(&host, &eng, "heavy", setup::HEAVY, &a).await?;
    println!("# partial: {}", serde_json::to_string(&heavy.json())?);
    eprintln!("# burst of {} new functions, runtime path", a.burst);
    let (burst_rt, rt_paths) = burst(&host, "br", a.burst, None).await?;
    eprintln!("# burst of {} new functions, cold path", a.burst);
    let (burst_cold, cold_paths) = burst(&host, "bc", a.burst, Some(StartPath::Cold)).await?;
    let r = report::Report {
        how_cold: how,
        front_end: "seussd::host::Host::invoke in-process (HTTP parsing excluded), blocking invokes, forced start paths (?seussPath)".into(),
        python: cfg.python.display().to_string(),
        runtime_snapshot_pages: rt_pages,
        runtime_build_s: rt_build_s,
        functions: vec![hello, heavy],
        burst: report::Burst::new(a.burst, cfg.max_concurrent_deploys, burst_rt, rt_paths, burst_cold, cold_paths),
    };
    r.print();
    let json = serde_json::to_string_pretty(&r.json())?;
    println!("{json}");
    if let Ok(dir) = std::env::var("SEUSS_OUT") {
        std::fs::write(std::path::Path::new(&dir).join("seussd-bench.json"), json + "\n")?;
    }
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(cfg.state_dir.parent().unwrap_or(&cfg.state_dir));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let a = args()?;
    // The measuring runs in a task on the runtime's workers, like seussd's HTTP handlers: code in
    // `block_on` itself would run on this thread and hand every invocation to a worker and back.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async { tokio::spawn(run(a)).await })?
}
