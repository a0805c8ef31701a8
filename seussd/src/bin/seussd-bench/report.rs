//! The benchmark's results: the table it prints and the JSON it writes.

use crate::measure::Series;
use serde_json::{json, Value};

const PAGE: u64 = 4096;
const MIB: f64 = 1048576.0;

/// Median private bytes of the instances each path left (kernel DIRTY for deployed ones, smaps for cold).
#[derive(Debug, Clone, serde::Serialize)]
pub struct IdleBytes {
    pub cold: u64,
    pub runtime_capture: u64,
    pub runtime: u64,
    pub warm: u64,
    pub hot: u64,
}

pub struct FnResult {
    pub name: String,
    pub cold: Series,
    pub runtime_capture_ms: f64,
    pub runtime: Series,
    pub warm: Series,
    pub hot: Series,
    pub snapshot_id: u64,
    pub snapshot_private_pages: u64,
    /// Pages the capture found unchanged and shared with the runtime snapshot again (not in the above).
    pub snapshot_unchanged_pages: u64,
    pub idle_bytes: IdleBytes,
}

pub struct Burst {
    pub n: usize,
    pub concurrency: usize,
    pub runtime_s: f64,
    pub runtime_paths: Vec<(String, usize)>,
    pub cold_s: f64,
    pub cold_paths: Vec<(String, usize)>,
}

impl Burst {
    pub fn new(n: usize, concurrency: usize, runtime_s: f64, runtime_paths: Vec<(String, usize)>, cold_s: f64, cold_paths: Vec<(String, usize)>) -> Self {
        Burst { n, concurrency, runtime_s, runtime_paths, cold_s, cold_paths }
    }
}

pub struct Report {
    pub how_cold: String,
    pub front_end: String,
    pub python: String,
    pub runtime_snapshot_pages: u64,
    pub runtime_build_s: f64,
    pub functions: Vec<FnResult>,
    pub burst: Burst,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

impl FnResult {
    fn snapshot_bytes(&self) -> u64 {
        self.snapshot_private_pages * PAGE
    }
    fn fit_1gib(&self) -> u64 {
        (1u64 << 30) / self.snapshot_bytes().max(1)
    }
    pub fn json(&self) -> Value {
        let b = &self.idle_bytes;
        json!({
            "cold": self.cold, "runtime": self.runtime, "warm": self.warm, "hot": self.hot,
            "runtime_with_capture_ms": self.runtime_capture_ms,
            "ratios_p50": {
                "cold_over_runtime": ratio(self.cold.p50_ms, self.runtime.p50_ms),
                "cold_over_warm": ratio(self.cold.p50_ms, self.warm.p50_ms),
                "cold_over_hot": ratio(self.cold.p50_ms, self.hot.p50_ms),
                "warm_over_hot": ratio(self.warm.p50_ms, self.hot.p50_ms),
            },
            "function_snapshot": {"id": self.snapshot_id, "private_pages": self.snapshot_private_pages,
                "unchanged_pages_shared_back": self.snapshot_unchanged_pages,
                "private_mib": self.snapshot_bytes() as f64 / MIB, "fit_in_1gib": self.fit_1gib()},
            "idle_instance_private_bytes_median": b,
        })
    }
}

impl Report {
    pub fn json(&self) -> Value {
        let fns: serde_json::Map<String, Value> = self.functions.iter().map(|f| (f.name.clone(), f.json())).collect();
        let b = &self.burst;
        json!({
            "front_end": self.front_end, "cold_baseline": self.how_cold, "python": self.python,
            "runtime_snapshot": {"private_pages": self.runtime_snapshot_pages, "build_s": self.runtime_build_s},
            "functions": fns,
            "burst": {"new_functions": b.n, "max_concurrent_deploys": b.concurrency,
                "runtime_path_s": b.runtime_s, "runtime_path_per_s": b.n as f64 / b.runtime_s,
                "runtime_paths_seen": b.runtime_paths, "cold_path_s": b.cold_s,
                "cold_path_per_s": b.n as f64 / b.cold_s, "cold_paths_seen": b.cold_paths,
                "throughput_ratio": ratio(b.cold_s, b.runtime_s)},
        })
    }

    pub fn print(&self) {
        println!("# seussd-bench ({})", self.front_end);
        println!("# cold baseline: {}", self.how_cold);
        println!("# runtime snapshot: {} private pages ({:.2} MiB), built in {:.1} s",
            self.runtime_snapshot_pages, (self.runtime_snapshot_pages * PAGE) as f64 / MIB, self.runtime_build_s);
        println!("# {:<8} {:<8} {:>5} {:>10} {:>10} {:>10} {:>12}", "function", "path", "n", "p50 ms", "p99 ms", "cold/p50", "idle MiB");
        for f in &self.functions {
            let b = &f.idle_bytes;
            for (p, s, bytes) in [("cold", &f.cold, b.cold), ("runtime", &f.runtime, b.runtime), ("warm", &f.warm, b.warm), ("hot", &f.hot, b.hot)] {
                println!("# {:<8} {:<8} {:>5} {:>10.2} {:>10.2} {:>9.1}x {:>12.2}",
                    f.name, p, s.n, s.p50_ms, s.p99_ms, ratio(f.cold.p50_ms, s.p50_ms), bytes as f64 / MIB);
            }
            println!("# {:<8} runtime path with capture (first invocation): {:.1} ms; warm/hot at p50: {:.1}x",
                f.name, f.runtime_capture_ms, ratio(f.warm.p50_ms, f.hot.p50_ms));
            println!("# {:<8} function snapshot {}: {} private pages = {:.2} MiB -> {} fit in 1 GiB \
                      ({} more were copied but unchanged: shared with the runtime snapshot again)",
                f.name, f.snapshot_id, f.snapshot_private_pages, f.snapshot_bytes() as f64 / MIB, f.fit_1gib(),
                f.snapshot_unchanged_pages);
        }
        let b = &self.burst;
        println!("# burst of {} new functions (max_concurrent_deploys {}): runtime path {:.1} s ({:.2}/s, paths {:?}), \
                  cold path {:.1} s ({:.2}/s, paths {:?}): throughput ratio {:.1}x",
            b.n, b.concurrency, b.runtime_s, b.n as f64 / b.runtime_s, b.runtime_paths,
            b.cold_s, b.n as f64 / b.cold_s, b.cold_paths, ratio(b.cold_s, b.runtime_s));
    }
}
