//! `seuss_bench threads [N]`: the multi-threaded engine's benchmark (issue 11), on `seuss_target pool`.
//!
//! Measured side by side in one run:
//! - deploy-and-answer of an 8-thread snapshot against a 1-thread one of the same program (fork a stub,
//!   DEPLOY, send `ping`, read `pong`), N deploys each, interleaved so that drift weighs on both alike; the
//!   ratio of their medians (target: at most 1.5x);
//! - for a 1-thread process with a 16 MiB, 256 MiB and 1 GiB heap (every page written): capture time,
//!   deploy-and-answer and deploy-answer-exit-wait, beside the same process's own fork+exit+wait.
//!
//! Every child is checked to run with all its threads and to answer; nothing about speed is asserted.
//! Prints a table and one `BENCH_THREADS {json}` line.

use super::pct;
use crate::util::{self, Target};
use std::time::Instant;
use uapi::{Device, DeployOpts, FreezePoint, FreezeState};

/// A frozen-and-captured `pool` target: (snapshot id, the target's fork+exit+wait median in µs).
fn snapshot(d: &Device, threads: usize, heap_mib: usize) -> (u64, u64, f64) {
    let mut t = Target::spawn(&["pool", &threads.to_string(), &heap_mib.to_string()]).expect("spawn pool target");
    t.send("idle").unwrap();
    assert_eq!(t.line().unwrap(), format!("idle {}", threads - 1));
    t.send("fork 20").unwrap();
    let l = t.line().unwrap();
    let fork_us: u64 = l.strip_prefix("fork_us ").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("fork answer {l}"));
    let id = d.arm(t.pid(), FreezePoint::Write { addr: t.doorbell, len: 8 }).expect("ARM");
    t.send("go").unwrap();
    match d.wait(id, 600_000).expect("WAIT") {
        FreezeState::Frozen { .. } => {}
        s => panic!("pool target: state {s:?}"),
    }
    let t0 = Instant::now();
    let snap = d.capture(id).expect("CAPTURE");
    let capture_ms = t0.elapsed().as_secs_f64() * 1e3;
    let info = d.snap_info(snap).expect("SNAP_INFO");
    assert_eq!(info.threads as usize, threads, "threads in the snapshot");
    d.release(id, true).expect("KILL");
    t.wait();
    (snap, fork_us, capture_ms)
}

/// One deploy: (ms to the answer, ms to the reaped exit).
fn deploy_once(d: &Device, snap: u64, threads: usize) -> (f64, f64) {
    let t0 = Instant::now();
    let mut c = util::fork_deploy(d, snap, DeployOpts::default(), || {});
    c.send("ping").unwrap();
    let l = c.line().unwrap();
    let answer = t0.elapsed().as_secs_f64() * 1e3;
    assert!(l.starts_with("pong"), "deployed answer {l}");
    let n = util::threads_of(c.pid).len();
    assert_eq!(n, threads, "threads of deployed child {}", c.pid);
    c.send("exit").unwrap();
    let code = c.wait();
    assert_eq!(code, 0, "deployed child exit");
    (answer, t0.elapsed().as_secs_f64() * 1e3)
}

pub fn run(n: usize) {
    util::ensure_loaded().expect("load seuss.ko");
    let d = util::dev().unwrap();
    // 1 thread against 8, interleaved.
    let (s1, _, c1) = snapshot(&d, 1, 0);
    let (s8, _, c8) = snapshot(&d, 8, 0);
    for _ in 0..5 {
        deploy_once(&d, s1, 1);
        deploy_once(&d, s8, 8);
    }
    let (mut a1, mut a8) = (Vec::new(), Vec::new());
    for _ in 0..n {
        a1.push(deploy_once(&d, s1, 1).0);
        a8.push(deploy_once(&d, s8, 8).0);
    }
    d.snap_release(s1).unwrap();
    d.snap_release(s8).unwrap();
    let (m1, m8) = (pct(&mut a1, 0.5), pct(&mut a8, 0.5));
    println!("# seuss_bench threads: seuss_target pool, TCG guest, {n} deploys per row (p50)");
    println!("# capture: 1 thread {c1:.1} ms, 8 threads {c8:.1} ms");
    println!("# deploy-and-answer: 1 thread {m1:.2} ms, 8 threads {m8:.2} ms, ratio {:.2}x (target <= 1.5x)", m8 / m1);
    let mut rows = Vec::new();
    for heap in [16usize, 256, 1024] {
        let reps = if heap >= 1024 { (n / 4).max(5) } else { n };
        let (s, fork_us, cap) = snapshot(&d, 1, heap);
        deploy_once(&d, s, 1);
        let (mut ans, mut tot) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let (a, t) = deploy_once(&d, s, 1);
            ans.push(a);
            tot.push(t);
        }
        d.snap_release(s).unwrap();
        let (ma, mt) = (pct(&mut ans, 0.5), pct(&mut tot, 0.5));
        let fork_ms = fork_us as f64 / 1e3;
        println!("# heap {heap:>4} MiB: capture {cap:.1} ms; deploy-and-answer {ma:.2} ms, deploy-answer-exit-wait {mt:.2} ms; \
                  the process's own fork+exit+wait {fork_ms:.2} ms (deploy/fork {:.2}x; {reps} deploys)", mt / fork_ms);
        rows.push(format!("{{\"heap_mib\":{heap},\"capture_ms\":{cap:.2},\"deploy_answer_ms\":{ma:.3},\"deploy_exit_ms\":{mt:.3},\"fork_exit_wait_ms\":{fork_ms:.3}}}"));
    }
    println!("BENCH_THREADS {{\"deploy_1_thread_ms\":{m1:.3},\"deploy_8_threads_ms\":{m8:.3},\"ratio\":{:.3},\"heaps\":[{}]}}", m8 / m1, rows.join(","));
}
