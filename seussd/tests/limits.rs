//! Admission limits over real HTTP with real (cold) Python instances: past the per-namespace concurrency
//! or per-minute limit, or a function's queue bound, an invoke gets 429 with OpenWhisk's message and
//! nothing is queued; a reload replaces credentials and limits; a shutdown lets activations in flight
//! finish within its grace period and records the ones it has to stop.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const A: &str = "/api/v1/namespaces/_/actions";

/// Returns once the file named by `args["gate"]` exists (the test opens the gate; no fixed sleeps).
const GATED: &str = "import os, time\ndef main(args):\n    while not os.path.exists(args['gate']):\n        time.sleep(0.005)\n    return {'through': True}\n";
const QUICK: &str = "def main(args):\n    return {'ok': 1}\n";

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn invoke_nb(addr: std::net::SocketAddr, name: &str, gate: &Path) -> Resp {
    call(addr, "POST", &format!("{A}/{name}"), json!({"gate": gate})).await
}

fn error_of(r: &Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_limit_refuses_with_429_and_queues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let mut cfg = config(dir.path());
    cfg.limit_concurrent = 2;
    let host = host_with(cfg, None).await;
    let addr = serve(host.clone()).await;
    create_python(addr, "slow", GATED).await;
    create_python(addr, "other", GATED).await;
    assert_eq!(invoke_nb(addr, "slow", &gate).await.status, 202);
    assert_eq!(invoke_nb(addr, "other", &gate).await.status, 202);
    let r = invoke_nb(addr, "slow", &gate).await;
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(error_of(&r), "Too many concurrent requests in flight (count: 3, allowed: 2).");
    assert!(r.header("x-openwhisk-activation-id").is_none(), "a refused invoke has no activation");
    let blocking = call(addr, "POST", &format!("{A}/slow?blocking=true"), json!({"gate": gate})).await;
    assert_eq!(blocking.status, 429);
    assert_eq!(host.in_flight(), 2, "nothing of the refused invokes was queued");
    std::fs::write(&gate, b"").unwrap();
    wait_until("the two to finish", || host.in_flight() == 0).await;
    let r = call(addr, "POST", &format!("{A}/slow?blocking=true"), json!({"gate": gate})).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Exactly the three admitted activations exist.
    wait_until("three records", || {
        let h = host.clone();
        record_count(&h) == 3
    })
    .await;
}

/// The number of activation records the host lists (blocking on the host's own runtime is fine here).
fn record_count(host: &seussd::host::Host) -> usize {
    let q = seussd::model::ActivationQuery {
        name: None,
        skip: 0,
        limit: 200,
        since: None,
        upto: None,
    };
    let h = host.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(h.count_activations(&q))
            .unwrap()
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_minute_limit_refuses_the_next_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limit_per_minute = 3;
    let host = host_with(cfg, None).await;
    let addr = serve(host.clone()).await;
    create_python(addr, "quick", QUICK).await;
    for _ in 0..3 {
        let r = call(addr, "POST", &format!("{A}/quick?blocking=true"), json!({})).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = call(addr, "POST", &format!("{A}/quick?blocking=true"), json!({})).await;
    assert_eq!(r.status, 429);
    assert_eq!(error_of(&r), "Too many requests in the last minute (count: 4, allowed: 3).");
    let text = host.metrics_text();
    assert!(
        text.contains("seuss_invocations_refused_total{namespace=\"guest\",reason=\"per_minute\"} 1"),
        "{text}"
    );
    // A reload that lifts the limit applies to the very next invocation.
    let mut lifted = host.config().clone();
    lifted.limit_per_minute = 0;
    assert!(host.reload(&lifted).unwrap().is_empty());
    let r = call(addr, "POST", &format!("{A}/quick?blocking=true"), json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(record_count(&host), 4, "the refused invocation left no record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_queue_bound_refuses_past_it_and_spares_other_functions() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let mut cfg = config(dir.path());
    cfg.max_instances_per_function = 1;
    cfg.limit_function_queue = 1;
    let host = host_with(cfg, None).await;
    let addr = serve(host.clone()).await;
    create_python(addr, "slow", GATED).await;
    create_python(addr, "quick", QUICK).await;
    // One runs, one waits for the instance; the third would wait too: refused.
    assert_eq!(invoke_nb(addr, "slow", &gate).await.status, 202);
    assert_eq!(invoke_nb(addr, "slow", &gate).await.status, 202);
    let r = invoke_nb(addr, "slow", &gate).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        error_of(&r),
        "Too many activations of 'slow' waiting for an instance (count: 2, allowed: 1)."
    );
    let r = call(addr, "POST", &format!("{A}/quick?blocking=true"), json!({})).await;
    assert_eq!(r.status, 200, "another function is not held up");
    std::fs::write(&gate, b"").unwrap();
    wait_until("the queue to drain", || host.in_flight() == 0).await;
    assert_eq!(invoke_nb(addr, "slow", &gate).await.status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_replaces_the_credentials_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path()).await;
    let addr = serve(host.clone()).await;
    let new_cred = "0f0f0f0f-1111-2222-3333-444444444444:newkey";
    assert_eq!(request(addr, "GET", "/api/v1/namespaces", Some(CRED), b"").await.status, 200);
    assert_eq!(request(addr, "GET", "/api/v1/namespaces", Some(new_cred), b"").await.status, 401);
    let mut new = host.config().clone();
    new.auth = vec![new_cred.into()];
    new.idle_timeout_s = 5;
    assert_eq!(host.reload(&new).unwrap(), vec!["idle_timeout_s".to_string()]);
    assert_eq!(host.config().idle_timeout_s, 60, "a key that needs a restart is left as it was");
    assert_eq!(request(addr, "GET", "/api/v1/namespaces", Some(CRED), b"").await.status, 401);
    assert_eq!(request(addr, "GET", "/api/v1/namespaces", Some(new_cred), b"").await.status, 200);
    // A configuration that does not validate changes nothing.
    let mut bad = new.clone();
    bad.auth = vec!["nocolon".into()];
    assert!(host.reload(&bad).is_err());
    assert_eq!(request(addr, "GET", "/api/v1/namespaces", Some(new_cred), b"").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_activations_finish_and_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let mut cfg = config(dir.path());
    cfg.shutdown_grace_s = 120;
    let host = host_with(cfg.clone(), None).await;
    let addr = serve(host.clone()).await;
    create_python(addr, "slow", GATED).await;
    create_python(addr, "quick", QUICK).await;
    let r = invoke_nb(addr, "slow", &gate).await;
    assert_eq!(r.status, 202);
    let id = r.json()["activationId"].as_str().unwrap().to_string();
    let h = host.clone();
    let stopping = tokio::spawn(async move { h.shutdown().await });
    // Draining: new invocations are refused while the running one goes on.
    let t0 = Instant::now();
    loop {
        let r = call(addr, "POST", &format!("{A}/quick?blocking=true"), json!({})).await;
        if r.status == 503 {
            assert!(error_of(&r).contains("shutting down"), "{}", error_of(&r));
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "never refused while draining");
        tokio::task::yield_now().await;
    }
    assert!(!stopping.is_finished());
    std::fs::write(&gate, b"").unwrap();
    tokio::time::timeout(Duration::from_secs(60), stopping)
        .await
        .expect("shutdown ends once the activation has")
        .unwrap();
    drop(host);
    // The record is on disk: a new host on the same state finds it.
    let again = host_with(cfg, None).await;
    let a = again.get_activation(&id).await.unwrap();
    assert_eq!(a.response.status, "success", "{:?}", a.response);
    assert_eq!(a.response.result, json!({"through": true}));
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_its_grace_stops_and_records_the_activation() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("never");
    let mut cfg = config(dir.path());
    cfg.shutdown_grace_s = 1;
    cfg.max_instances_per_function = 1;
    let host = host_with(cfg.clone(), None).await;
    let addr = serve(host.clone()).await;
    create_python(addr, "slow", GATED).await;
    // One running, one queued behind it: both are stopped and recorded.
    let ids: Vec<String> = invoke_many(addr, &gate, 2).await;
    tokio::time::timeout(Duration::from_secs(60), host.shutdown())
        .await
        .expect("shutdown ends after its grace period");
    assert_eq!(host.in_flight(), 0);
    drop(host);
    let again = host_with(cfg, None).await;
    for id in &ids {
        let a = again.get_activation(id).await.unwrap();
        assert_eq!(a.response.status, "whisk internal error", "{:?}", a.response);
        assert!(
            a.response.result["error"].as_str().unwrap().contains("shut down"),
            "{:?}",
            a.response
        );
    }
    again.shutdown().await;
}

async fn invoke_many(addr: std::net::SocketAddr, gate: &Path, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = invoke_nb(addr, "slow", gate).await;
        assert_eq!(r.status, 202);
        ids.push(r.json()["activationId"].as_str().unwrap().to_string());
    }
    ids
}
