//! Prometheus metrics (`prometheus-client`), served at `/metrics` in the text exposition format.
//!
//! Counted as things happen, each on its own atomic (never under the host's state lock): activations by
//! namespace, function, start path and status, their durations per start path, evictions by kind.
//! Sampled at scrape time: snapshots (count, private bytes), instances (idle, busy), the memory budget and
//! its use, and the kernel module's STATS when the engine has them.

use crate::engine::KernelStats;
use crate::model::StartPath;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActivationLabels {
    namespace: String,
    function: String,
    /// `cold|runtime|warm|hot`, or `none` when no instance was started.
    start_path: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    namespace: String,
    /// `concurrent|per_minute|function_queue` (see `limits.rs`).
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    start_path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// What the host holds at the moment of a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub snapshots: u64,
    pub snapshot_private_bytes: u64,
    pub idle_instances: u64,
    pub busy_instances: u64,
    pub budget_bytes: u64,
    pub used_bytes: u64,
    /// Activations admitted and not finished (running or queued).
    pub in_flight: u64,
}

type IntGauge = Gauge<i64>;

/// The metric families of one host.
pub struct Metrics {
    registry: Registry,
    activations: Family<ActivationLabels, Counter>,
    duration: Family<PathLabels, Histogram, fn() -> Histogram>,
    wait: Family<PathLabels, Histogram, fn() -> Histogram>,
    evictions: Family<KindLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    in_flight: IntGauge,
    snapshots: IntGauge,
    snapshot_bytes: IntGauge,
    instances: Family<StateLabels, IntGauge>,
    budget: IntGauge,
    used: IntGauge,
    kernel: Family<KindLabels, IntGauge>,
    /// Serialises scrapes (a sample is written into the gauges, then encoded).
    scrape: Mutex<()>,
}

/// Latency buckets in seconds: 0.5 ms to ~65 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

fn path_label(p: Option<StartPath>) -> String {
    p.map_or("none", StartPath::as_str).to_string()
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("seuss");
        let m = Metrics {
            activations: Family::default(),
            duration: Family::new_with_constructor(latency),
            wait: Family::new_with_constructor(latency),
            evictions: Family::default(),
            refused: Family::default(),
            in_flight: IntGauge::default(),
            snapshots: IntGauge::default(),
            snapshot_bytes: IntGauge::default(),
            instances: Family::default(),
            budget: IntGauge::default(),
            used: IntGauge::default(),
            kernel: Family::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "activations",
            "Finished activations by namespace, function, start path and status",
            m.activations.clone(),
        );
        registry.register(
            "activation_duration_seconds",
            "Activation duration (record's duration) by start path",
            m.duration.clone(),
        );
        registry.register(
            "activation_wait_seconds",
            "Time an activation was queued before its start (record's waitTime) by start path",
            m.wait.clone(),
        );
        registry.register(
            "evictions",
            "Snapshots and idle instances evicted to stay in the memory budget",
            m.evictions.clone(),
        );
        registry.register(
            "invocations_refused",
            "Invocations refused with 429 by an admission limit, by namespace and limit",
            m.refused.clone(),
        );
        registry.register(
            "activations_in_flight",
            "Activations admitted and not finished (running or queued)",
            m.in_flight.clone(),
        );
        registry.register("snapshots", "Snapshots seussd holds", m.snapshots.clone());
        registry.register(
            "snapshot_private_bytes",
            "Private memory of the snapshots seussd holds",
            m.snapshot_bytes.clone(),
        );
        registry.register(
            "instances",
            "Function instances by state (idle, busy)",
            m.instances.clone(),
        );
        registry.register(
            "memory_budget_bytes",
            "The configured memory budget",
            m.budget.clone(),
        );
        registry.register(
            "memory_used_bytes",
            "Memory counted against the budget (snapshots, idle and busy instances)",
            m.used.clone(),
        );
        registry.register(
            "kernel",
            "The kernel module's STATS counters (snapshots, pages_held, max_pages, deploys, instances, frozen)",
            m.kernel.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Counts a finished activation (called after its answer is on its way): its status, its duration and
    /// its wait (ms).
    pub fn activation(
        &self,
        namespace: &str,
        function: &str,
        path: Option<StartPath>,
        status: &str,
        duration_ms: u64,
        wait_ms: u64,
    ) {
        let path = path_label(path);
        self.activations
            .get_or_create(&ActivationLabels {
                namespace: namespace.into(),
                function: function.into(),
                start_path: path.clone(),
                status: status.into(),
            })
            .inc();
        let labels = PathLabels { start_path: path };
        self.duration
            .get_or_create(&labels)
            .observe(duration_ms as f64 / 1000.0);
        self.wait
            .get_or_create(&labels)
            .observe(wait_ms as f64 / 1000.0);
    }

    /// Counts `n` evictions of `kind` (`snapshot` or `instance`).
    pub fn evicted(&self, kind: &str, n: usize) {
        if n > 0 {
            self.evictions
                .get_or_create(&KindLabels { kind: kind.into() })
                .inc_by(n as u64);
        }
    }

    /// Counts an invocation refused by the admission limit `reason`.
    pub fn refused(&self, namespace: &str, reason: &str) {
        self.refused
            .get_or_create(&RefusedLabels {
                namespace: namespace.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// The text exposition of every metric, with `sample` and `kernel` as the sampled values.
    pub fn render(&self, sample: Sample, kernel: Option<KernelStats>) -> String {
        let _g = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.snapshots.set(gauge(sample.snapshots));
        self.snapshot_bytes
            .set(gauge(sample.snapshot_private_bytes));
        for (state, n) in [
            ("idle", sample.idle_instances),
            ("busy", sample.busy_instances),
        ] {
            self.instances
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(gauge(n));
        }
        self.budget.set(gauge(sample.budget_bytes));
        self.used.set(gauge(sample.used_bytes));
        self.in_flight.set(gauge(sample.in_flight));
        if let Some(k) = kernel {
            for (kind, v) in [
                ("snapshots", k.snapshots),
                ("pages_held", k.pages_held),
                ("max_pages", k.max_pages),
                ("deploys", k.deploys),
                ("instances", k.instances),
                ("frozen", k.frozen),
            ] {
                self.kernel
                    .get_or_create(&KindLabels { kind: kind.into() })
                    .set(gauge(v));
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_samples_appear_in_the_exposition() {
        let m = Metrics::default();
        for _ in 0..2 {
            m.activation("guest", "f", Some(StartPath::Warm), "success", 3, 2);
        }
        m.activation("guest", "f", None, "whisk internal error", 1, 0);
        m.evicted("snapshot", 2);
        m.evicted("instance", 0);
        m.refused("guest", "per_minute");
        let text = m.render(
            Sample {
                snapshots: 3,
                snapshot_private_bytes: 4096,
                idle_instances: 1,
                busy_instances: 2,
                budget_bytes: 10,
                used_bytes: 5,
                in_flight: 7,
            },
            None,
        );
        assert!(text.contains(
            "seuss_activations_total{namespace=\"guest\",function=\"f\",start_path=\"warm\",status=\"success\"} 2"
        ), "{text}");
        assert!(
            text.contains("seuss_activation_duration_seconds_count{start_path=\"warm\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("seuss_activation_wait_seconds_sum{start_path=\"warm\"} 0.004"),
            "{text}"
        );
        assert!(
            text.contains("seuss_invocations_refused_total{namespace=\"guest\",reason=\"per_minute\"} 1"),
            "{text}"
        );
        assert!(text.contains("seuss_activations_in_flight 7"), "{text}");
        assert!(
            text.contains("seuss_evictions_total{kind=\"snapshot\"} 2"),
            "{text}"
        );
        assert!(!text.contains("kind=\"instance\""), "{text}");
        assert!(
            text.contains("start_path=\"none\",status=\"whisk internal error\"} 1"),
            "{text}"
        );
        assert!(text.contains("seuss_instances{state=\"busy\"} 2"), "{text}");
        assert!(text.contains("seuss_snapshot_private_bytes 4096"), "{text}");
        assert!(
            !text.contains("seuss_kernel{"),
            "no kernel figures without an engine: {text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
