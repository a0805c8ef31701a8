//! Operations over real HTTP: `/health` and `/ready` without credentials (readiness follows the runtime
//! snapshot's state), and the Prometheus metrics at `/metrics` under each access setting, with the
//! activation counters, latency histograms, sampled state and the kernel's STATS (fake engine).

mod common;

use common::fake::Fake;
use common::*;
use serde_json::json;
use seussd::config::MetricsAccess;
use std::sync::Arc;
use std::time::{Duration, Instant};

const A: &str = "/api/v1/namespaces/_/actions";

/// The value of the sample line starting with `series` (name and labels exactly), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let r = call(addr, "GET", "/metrics", json!(null)).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .contains("openmetrics-text"));
    String::from_utf8(r.body).unwrap()
}

/// Scrapes until `cond` holds on the text (the counters are updated just after the answer).
async fn scrape_until(addr: std::net::SocketAddr, cond: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let text = scrape(addr).await;
        if cond(&text) {
            return text;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "metrics never matched:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_ready(addr: std::net::SocketAddr) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let r = request(addr, "GET", "/ready", None, b"").await;
        if r.status == 200 {
            return r.json();
        }
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["ready"], json!(false));
        assert!(t0.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_need_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    let r = request(addr, "GET", "/health", None, b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ok"}));
    // Without snapshots the host is ready at once.
    let r = request(addr, "GET", "/ready", None, b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"ready": true, "runtime_snapshot": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_the_runtime_snapshot_exists_or_failed() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let mut cfg = config(dir.path());
    cfg.device = dir.path().join("no-such-device");
    let h = host_with(cfg.clone(), Some(fake.clone())).await;
    let addr = serve(h.clone()).await;
    let v = wait_ready(addr).await;
    assert_eq!(v, json!({"ready": true, "runtime_snapshot": true}));
    assert_eq!(h.list_snapshots().await.len(), 1);
    // The kernel's STATS, through the engine.
    let text = scrape(addr).await;
    assert_eq!(
        sample(&text, "seuss_kernel{kind=\"snapshots\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "seuss_kernel{kind=\"pages_held\"}"),
        Some(100.0),
        "{text}"
    );
    assert_eq!(sample(&text, "seuss_snapshots"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, "seuss_snapshot_private_bytes"),
        Some(409600.0),
        "{text}"
    );
    h.shutdown().await;

    // A build that fails still makes the state known: ready, serving cold.
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    fake.fail_capture
        .store(true, std::sync::atomic::Ordering::SeqCst);
    cfg.state_dir = dir.path().to_path_buf();
    cfg.cgroup_root = dir.path().join("no-cgroup/seuss");
    let addr = serve(host_with(cfg, Some(fake)).await).await;
    assert_eq!(
        wait_ready(addr).await,
        json!({"ready": true, "runtime_snapshot": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_activations_by_function_path_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    // Default access: the API's credentials.
    assert_eq!(
        request(addr, "GET", "/metrics", None, b"").await.status,
        401
    );
    let code = "def main(a):\n    return {'error': 'no'} if a.get('fail') else {}\n";
    create_python(addr, "m", code).await;
    for args in [json!({}), json!({}), json!({"fail": true})] {
        call(addr, "POST", &format!("{A}/m?blocking=true"), args).await;
    }
    let series = |path: &str, status: &str| {
        format!("seuss_activations_total{{namespace=\"guest\",function=\"m\",start_path=\"{path}\",status=\"{status}\"}}")
    };
    // Each activation is counted just after its answer: wait until all three are.
    let text = scrape_until(addr, |t| {
        [("cold", "success"), ("hot", "success"), ("hot", "application error")]
            .iter()
            .all(|(p, st)| sample(t, &series(p, st)).is_some())
    })
    .await;
    assert_eq!(
        sample(&text, &series("cold", "success")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &series("hot", "success")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &series("hot", "application error")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "seuss_activation_duration_seconds_count{start_path=\"hot\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "seuss_activation_duration_seconds_bucket{le=\"+Inf\",start_path=\"cold\"}"
        )
        .or_else(|| sample(
            &text,
            "seuss_activation_duration_seconds_bucket{start_path=\"cold\",le=\"+Inf\"}"
        )),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "seuss_instances{state=\"idle\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "seuss_memory_budget_bytes"),
        Some((1024u64 << 20) as f64),
        "{text}"
    );
    assert!(
        !text.contains("seuss_kernel{"),
        "no engine, no kernel figures"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_access_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.metrics = MetricsAccess::Open;
    let addr = serve(host_with(cfg.clone(), None).await).await;
    let r = request(addr, "GET", "/metrics", None, b"").await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(
        sample(&text, "seuss_memory_budget_bytes"),
        Some((1024u64 << 20) as f64),
        "{text}"
    );
    // Open metrics open nothing else.
    assert_eq!(request(addr, "GET", A, None, b"").await.status, 401);

    let dir = tempfile::tempdir().unwrap();
    cfg.state_dir = dir.path().to_path_buf();
    cfg.metrics = MetricsAccess::Off;
    let addr = serve(host_with(cfg, None).await).await;
    assert_eq!(call(addr, "GET", "/metrics", json!(null)).await.status, 404);
    assert_eq!(
        request(addr, "GET", "/metrics", None, b"").await.status,
        401
    );
}
