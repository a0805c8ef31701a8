//! Measuring through `Host`: one invocation with a forced start path (checked against the activation's
//! `startPath`), a series of them, percentiles.

use seussd::host::{Activation, Host, InvokeOpts, StartPath};
use serde_json::Value;
use std::time::Instant;

/// Invokes `name` once on `path` (or the host's choice); returns the wall time in ms and the record.
pub async fn invoke(host: &Host, name: &str, args: Value, path: Option<StartPath>) -> anyhow::Result<(f64, Activation)> {
    let t0 = Instant::now();
    let mut act = host
        .invoke(name, args, InvokeOpts { blocking: true, path })
        .await
        .map_err(|e| anyhow::anyhow!("invoke {name}: {e:?}"))?;
    // A blocking invoke answers with the pending record after 60 s (a long queue in a burst): poll.
    while act.end == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if let Ok(a) = host.get_activation(&act.activation_id).await {
            act = a;
        }
    }
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(act.response.success, "{name} failed: {}", act.response.result);
    if let Some(p) = path {
        let got = started_path(&act);
        anyhow::ensure!(got.as_deref() == Some(p.as_str()), "{name}: asked for {}, got {got:?}", p.as_str());
    }
    Ok((ms, act))
}

/// The `startPath` annotation.
pub fn started_path(act: &Activation) -> Option<String> {
    act.annotations
        .iter()
        .find(|a| a.key == "startPath")
        .and_then(|a| a.value.as_str().map(str::to_string))
}

/// Latencies of one path, with what each instance cost after its activation.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Series {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
}

impl Series {
    pub fn from(mut v: Vec<f64>) -> Self {
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let pct = |p: f64| if n == 0 { 0.0 } else { v[((n as f64 - 1.0) * p).round() as usize] };
        Series {
            n,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            mean_ms: if n == 0 { 0.0 } else { v.iter().sum::<f64>() / n as f64 },
            min_ms: v.first().copied().unwrap_or(0.0),
        }
    }
}

/// `n` invocations of `name` on `path`; with `fresh`, the idle instance each one leaves is stopped (untimed)
/// so the next one starts a new instance. Returns the series and the median private bytes of those instances.
pub async fn series(host: &Host, name: &str, path: StartPath, n: usize, fresh: bool) -> anyhow::Result<(Series, u64)> {
    let mut t = Vec::with_capacity(n);
    let mut bytes = Vec::new();
    for i in 0..n {
        let (ms, _) = invoke(host, name, serde_json::json!({"name": format!("n{i}"), "x": i + 1}), Some(path)).await?;
        t.push(ms);
        if fresh {
            bytes.extend(idle_bytes(host, name).await);
            host.stop_idle(Some(name)).await;
        }
    }
    if !fresh {
        bytes.extend(idle_bytes(host, name).await);
    }
    bytes.sort_unstable();
    Ok((Series::from(t), bytes.get(bytes.len() / 2).copied().unwrap_or(0)))
}

/// Private bytes of `name`'s idle instances, once measured (an instance is parked on an estimate and
/// measured right after its answer).
async fn idle_bytes(host: &Host, name: &str) -> Vec<u64> {
    for _ in 0..250 {
        if host.idle_instances().iter().all(|x| x.function != name || x.measured) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    host.idle_instances().iter().filter(|x| x.function == name).map(|x| x.bytes).collect()
}
