//! `seuss_bench`: the snapshot engine's benchmark for a real interpreter, run as root in the VM.
//!
//! For one python3 function (driver.py: imports json, re, collections, decimal; answers one JSON line) it
//! measures in one run, side by side: capture time; deploy-to-answer latency over N deploys (fork a stub,
//! deploy the snapshot, send a request, read the answer); the same function started cold (a fresh python3
//! and its imports) over M runs; their ratio; the private pages each deployed child made; and an interleaved A/B
//! of the module's `prefault` setting (3: written pages and program text, 1: written pages, 0: none). The interpreter
//! and its library run from a tmpfs copy for both paths, so neither pays for the 9p root.
//! Prints a table and one `BENCH {json}` line. Not a test: it asserts nothing about speed.
//! `seuss_bench threads [N]` runs the multi-threaded engine's benchmark instead (`bench_threads.rs`).

#![allow(dead_code)] // shares test modules with seuss_test, using a part of them

mod bench_threads;
mod ktap;
mod python;
mod util;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn tmpfs_python() -> String {
    let root = "/dev/shm/seuss-py";
    let bin = format!("{root}/bin/python3.11");
    if !std::path::Path::new(&bin).exists() {
        std::fs::create_dir_all(format!("{root}/bin")).unwrap();
        std::fs::create_dir_all(format!("{root}/lib")).unwrap();
        let ok = Command::new("cp").args(["-a", "/usr/lib/python3.11", &format!("{root}/lib/")]).status().unwrap().success()
            && Command::new("cp").args(["-a", "/usr/bin/python3.11", &bin]).status().unwrap().success();
        assert!(ok, "copying python3.11 to tmpfs failed");
    }
    bin
}

fn cold_once(python: &str, script: &str, i: i64) -> f64 {
    let t0 = Instant::now();
    let mut c = Command::new(python).args(["-I", script, "--cold"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = c.stdin.take().unwrap();
    writeln!(stdin, "{{\"a\": {i}, \"b\": 1}}").unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    let dt = t0.elapsed().as_secs_f64() * 1e3;
    drop(stdin);
    c.wait().unwrap();
    assert!(l.contains(&format!("\"sum\": {}", i + 1)), "cold answer {l}");
    dt
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("threads") {
        let n = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(100);
        return bench_threads::run(n);
    }
    let n_deploy: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let n_cold: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(30);
    util::ensure_loaded().expect("load seuss.ko");
    let d = util::dev().unwrap();
    let python = tmpfs_python();
    let script = std::env::temp_dir().join("seuss_driver.py");
    std::fs::write(&script, include_str!("driver.py")).unwrap();
    let script = script.to_string_lossy().into_owned();
    // Warm the page cache for both paths.
    for i in 0..3 {
        cold_once(&python, &script, i);
    }
    let mut cold: Vec<f64> = (0..n_cold as i64).map(|i| cold_once(&python, &script, i)).collect();

    let (snap, cookie_addr, capture_us) = python::python_snapshot(&d, &python).expect("python snapshot");
    let info = d.snap_info(snap).unwrap();
    // One deploy-to-answer in ms; with `measure`, also the child's private pages after answering.
    let deploy_once = |i: i64, measure: bool| -> (f64, Option<u64>) {
        let t0 = Instant::now();
        let mut c = util::fork_deploy(&d, snap, uapi::DeployOpts { tid_addr: None, cookie: Some((cookie_addr, i as u64 + 1)) }, || {});
        c.send(&format!("{{\"a\": {i}, \"b\": 1}}")).unwrap();
        let l = c.line().unwrap();
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        assert!(l.contains(&format!("\"sum\": {}", i + 1)), "deployed answer {l}");
        let private = measure.then(|| d.dirty(c.pid).map(|x| x.1).unwrap_or(0));
        let code = c.wait();
        assert_eq!(code, 0, "deployed child exit");
        (ms, private)
    };
    let mut warm = Vec::with_capacity(n_deploy);
    let mut private = Vec::new();
    for i in 0..n_deploy as i64 {
        let (ms, p) = deploy_once(i, i % 20 == 0);
        warm.push(ms);
        private.extend(p);
    }
    // The `prefault` parameter side by side, interleaved so that drift weighs on every setting alike.
    const PREFAULT: &str = "/sys/module/seuss/parameters/prefault";
    let modes = [3u64, 1, 0];
    let mut ab: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for i in 0..(modes.len() * n_deploy / 2) {
        std::fs::write(PREFAULT, modes[i % modes.len()].to_string()).unwrap();
        ab[i % modes.len()].push(deploy_once(i as i64, false).0);
    }
    std::fs::write(PREFAULT, "3").unwrap();
    d.snap_release(snap).unwrap();
    let (c50, c99) = (pct(&mut cold, 0.5), pct(&mut cold, 0.99));
    let (w50, w99) = (pct(&mut warm, 0.5), pct(&mut warm, 0.99));
    private.sort();
    let priv_med = private[private.len() / 2];
    println!("# seuss_bench: python3 (json, re, collections, decimal) from a tmpfs copy of python3.11, TCG guest");
    println!("# {:<34} {:>10} {:>10}", "", "p50 ms", "p99 ms");
    println!("# {:<34} {:>10.1} {:>10.1}", format!("cold start ({n_cold} runs)"), c50, c99);
    println!("# {:<34} {:>10.1} {:>10.1}", format!("deploy from snapshot ({n_deploy} runs)"), w50, w99);
    println!("# cold/deploy ratio at p50: {:.1}x", c50 / w50);
    println!("# capture: {:.1} ms wall ({} us in kernel); snapshot {} pages mapped, {} private, {} KiB page tables",
        capture_us as f64 / 1e3, info.capture_ns / 1000, info.pages_mapped, info.pages_private, info.pt_bytes / 1024);
    println!("# private pages per deployed child after answering: median {} ({} KiB), samples {:?}", priv_med, priv_med * 4, private);
    let ab50: Vec<f64> = ab.iter_mut().map(|v| pct(v, 0.5)).collect();
    println!("# prefault A/B ({} deploys each, interleaved), deploy-to-answer p50: 3 (writes + text) {:.2} ms, \
              1 (writes) {:.2} ms, 0 (none) {:.2} ms", n_deploy / 2, ab50[0], ab50[1], ab50[2]);
    println!("BENCH {{\"cold_p50_ms\":{c50:.2},\"cold_p99_ms\":{c99:.2},\"deploy_p50_ms\":{w50:.2},\"deploy_p99_ms\":{w99:.2},\"ratio_p50\":{:.2},\"capture_us\":{capture_us},\"snapshot_pages\":{},\"snapshot_private_pages\":{},\"child_private_pages_median\":{priv_med},\"prefault_ab_p50_ms\":{{\"3\":{:.2},\"1\":{:.2},\"0\":{:.2}}}}}",
        c50 / w50, info.pages_mapped, info.pages_private, ab50[0], ab50[1], ab50[2]);
}
