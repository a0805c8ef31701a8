//! Scheduling with real instances: per-function concurrency (a burst queues, nothing is dropped, at most
//! `max_instances_per_function` instances), idle expiry, and the budget deciding whether an instance may idle.

mod common;

use common::*;
use serde_json::json;
use seussd::host::InvokeOpts;
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_queues_within_the_per_function_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_instances_per_function = 2;
    cfg.max_concurrent_deploys = 1;
    let h = host_with(cfg, None).await;
    h.put_function("slow", def("import os, time\ndef main(a):\n    time.sleep(0.1)\n    return {'pid': os.getpid(), 'i': a['i']}\n"), false)
        .await
        .unwrap();
    let calls = (0..12).map(|i| {
        let h = h.clone();
        tokio::spawn(async move {
            h.invoke(
                "slow",
                json!({"i": i}),
                InvokeOpts {
                    blocking: true,
                    path: None,
                },
            )
            .await
            .unwrap()
        })
    });
    let mut pids = HashSet::new();
    for (i, c) in calls.enumerate() {
        let a = c.await.unwrap();
        assert_eq!(a.response.result["i"], json!(i), "{a:?}");
        pids.insert(a.response.result["pid"].as_u64().unwrap());
    }
    assert!(
        !pids.is_empty() && pids.len() <= 2,
        "at most 2 instances served the burst: {pids:?}"
    );
    assert!(h.stats().instances <= 2);
    assert_eq!(h.stats().activations, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_expire() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.idle_timeout_s = 1;
    let h = host_with(cfg, None).await;
    h.put_function("f", def("def main(a):\n    return {}\n"), false)
        .await
        .unwrap();
    let opts = InvokeOpts {
        blocking: true,
        path: None,
    };
    h.invoke("f", json!({}), opts.clone()).await.unwrap();
    assert_eq!(h.stats().instances, 1);
    assert!(
        h.stats().used_bytes > 0,
        "an idle instance counts against the budget"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(h.stats().instances, 0);
    assert_eq!(h.stats().used_bytes, 0);
    let a = h.invoke("f", json!({}), opts).await.unwrap();
    assert_eq!(a.annotation("startPath"), Some(&json!("cold")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_does_not_fit_the_budget_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.memory_budget_mb = 1; // a python3 instance holds several MiB of private memory
    let h = host_with(cfg, None).await;
    h.put_function("f", def("def main(a):\n    return {'x': 1}\n"), false)
        .await
        .unwrap();
    let opts = InvokeOpts {
        blocking: true,
        path: None,
    };
    let a = h.invoke("f", json!({}), opts.clone()).await.unwrap();
    assert_eq!(a.response.result, json!({"x": 1}));
    assert_eq!(h.stats().instances, 0);
    let b = h.invoke("f", json!({}), opts).await.unwrap();
    assert_eq!(b.annotation("startPath"), Some(&json!("cold")));
}

/// A busy instance keeps its part of the budget: taken from the idle pool for a run, its memory is still
/// counted (it cannot be evicted), and counted once again as idle after the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_instances_count_against_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let h = host(dir.path()).await;
    let code = "import os, time\ndef main(args):\n    while not os.path.exists(args['gate']):\n        time.sleep(0.005)\n    return {}\n";
    h.put_function("g", def(code), false).await.unwrap();
    std::fs::write(&gate, b"").unwrap();
    let opts = || InvokeOpts { blocking: true, path: None };
    h.invoke("g", json!({"gate": gate}), opts()).await.unwrap();
    let idle = wait_stats(&h, |s| s.instances == 1 && s.used_bytes > 0).await;
    std::fs::remove_file(&gate).unwrap();
    let nb = InvokeOpts { blocking: false, path: None };
    h.invoke("g", json!({"gate": gate}), nb).await.unwrap();
    // Running on the instance it took from the pool (hot): the same bytes, now busy.
    let t0 = std::time::Instant::now();
    while !busy_now(&h) {
        assert!(t0.elapsed() < Duration::from_secs(60), "never busy");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let busy = h.stats();
    assert_eq!(busy.used_bytes, idle.used_bytes, "a busy instance counts its last measured size");
    std::fs::write(&gate, b"").unwrap();
    let t0 = std::time::Instant::now();
    while busy_now(&h) {
        assert!(t0.elapsed() < Duration::from_secs(60), "never idle again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = wait_stats(&h, |s| s.instances == 1).await;
    assert!(after.used_bytes > 0);
}

/// Whether an instance is busy (the metrics' sampled gauge).
fn busy_now(h: &seussd::host::Host) -> bool {
    h.metrics_text().contains("seuss_instances{state=\"busy\"} 1")
}

async fn wait_stats(h: &seussd::host::Host, cond: impl Fn(&seussd::model::Stats) -> bool) -> seussd::model::Stats {
    let t0 = std::time::Instant::now();
    loop {
        let s = h.stats();
        if cond(&s) {
            return s;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "stats never matched: {s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
