//! Admission control, checked before an activation is queued: per namespace, the activations in flight
//! (running or queued) and the invocations admitted in the last minute; per function, how many wait for
//! an instance. Past a limit the invocation is refused (HTTP 429 with OpenWhisk's messages) and nothing
//! is queued. OpenWhisk deployments default to 100 concurrent and 600 per minute.
//!
//! Pure state and policy: no processes, no I/O; the limits can be replaced at any time (SIGHUP reload) and
//! apply to the next invocation. A [`Ticket`] is the admitted activation's place: dropping it (when the
//! activation's task ends, whatever way) gives the place back, so a drain can wait for [`Admission::idle`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The configurable limits; 0 disables a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Activations of one namespace in flight (running or queued).
    pub concurrent: u32,
    /// Invocations of one namespace admitted in the last 60 s.
    pub per_minute: u32,
    /// Activations of one function waiting for an instance (beyond the `running` that may run at once).
    pub function_queue: u32,
}

/// Why an invocation was refused. `Display` gives the message the caller sees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("Too many concurrent requests in flight (count: {count}, allowed: {allowed}).")]
    Concurrent { count: u32, allowed: u32 },
    #[error("Too many requests in the last minute (count: {count}, allowed: {allowed}).")]
    PerMinute { count: u32, allowed: u32 },
    #[error("Too many activations of '{function}' waiting for an instance (count: {count}, allowed: {allowed}).")]
    FunctionQueue {
        function: String,
        count: u32,
        allowed: u32,
    },
}

impl Refusal {
    /// The limit's name, for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Concurrent { .. } => "concurrent",
            Refusal::PerMinute { .. } => "per_minute",
            Refusal::FunctionQueue { .. } => "function_queue",
        }
    }
}

/// Invocations admitted per second over the last [`WINDOW_S`] seconds, as a ring of per-second counts:
/// a sliding minute (a fixed minute bucket would let twice the limit through around its boundary).
const WINDOW_S: usize = 60;

struct Window {
    counts: [u32; WINDOW_S],
    /// The second `counts[sec % WINDOW_S]` was last written for, per slot.
    secs: [u64; WINDOW_S],
}

impl Default for Window {
    fn default() -> Self {
        Self {
            counts: [0; WINDOW_S],
            secs: [0; WINDOW_S],
        }
    }
}

impl Window {
    fn total(&self, now_s: u64) -> u32 {
        self.counts
            .iter()
            .zip(self.secs.iter())
            .filter(|(_, &s)| s + (WINDOW_S as u64) > now_s && s <= now_s)
            .map(|(&c, _)| c)
            .sum()
    }

    fn add(&mut self, now_s: u64) {
        let i = (now_s % WINDOW_S as u64) as usize;
        if self.secs[i] != now_s {
            self.secs[i] = now_s;
            self.counts[i] = 0;
        }
        self.counts[i] += 1;
    }
}

#[derive(Default)]
struct Namespace {
    in_flight: u32,
    window: Window,
    /// Per function: activations in flight (running or waiting for an instance).
    functions: HashMap<String, u32>,
}

struct State {
    limits: Limits,
    namespaces: HashMap<String, Namespace>,
    total: u32,
}

/// The admission state of one host. Its mutex is a leaf: nothing else is locked while it is held.
pub struct Admission {
    st: Mutex<State>,
    /// Woken whenever the total in flight drops to 0 (see [`Admission::idle`]).
    drained: tokio::sync::Notify,
}

/// One admitted activation's place; dropping it gives the place back.
pub struct Ticket {
    adm: Arc<Admission>,
    namespace: String,
    function: String,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            st: Mutex::new(State {
                limits,
                namespaces: HashMap::new(),
                total: 0,
            }),
            drained: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the limits; activations already admitted keep their places.
    pub fn set_limits(&self, limits: Limits) {
        self.lock().limits = limits;
    }

    pub fn limits(&self) -> Limits {
        self.lock().limits
    }

    /// Admits one activation of `function` in `namespace` at `now_s` (seconds since the epoch), of which
    /// `running` may run at once (the rest of its in-flight ones wait in its queue), or says why not.
    /// A refused invocation changes nothing.
    pub fn admit(
        self: &Arc<Self>,
        namespace: &str,
        function: &str,
        running: u32,
        now_s: u64,
    ) -> Result<Ticket, Refusal> {
        let mut st = self.lock();
        let l = st.limits;
        let ns = st.namespaces.entry(namespace.to_string()).or_default();
        let minute = ns.window.total(now_s);
        if l.per_minute > 0 && minute >= l.per_minute {
            return Err(Refusal::PerMinute {
                count: minute + 1,
                allowed: l.per_minute,
            });
        }
        if l.concurrent > 0 && ns.in_flight >= l.concurrent {
            return Err(Refusal::Concurrent {
                count: ns.in_flight + 1,
                allowed: l.concurrent,
            });
        }
        let of_fn = ns.functions.get(function).copied().unwrap_or(0);
        let waiting = (of_fn + 1).saturating_sub(running);
        if l.function_queue > 0 && waiting > l.function_queue {
            return Err(Refusal::FunctionQueue {
                function: function.to_string(),
                count: waiting,
                allowed: l.function_queue,
            });
        }
        ns.window.add(now_s);
        ns.in_flight += 1;
        *ns.functions.entry(function.to_string()).or_default() += 1;
        st.total += 1;
        Ok(Ticket {
            adm: self.clone(),
            namespace: namespace.to_string(),
            function: function.to_string(),
        })
    }

    /// Activations in flight, all namespaces.
    pub fn in_flight(&self) -> u32 {
        self.lock().total
    }

    /// Resolves once no activation is in flight.
    pub async fn idle(&self) {
        loop {
            let woken = self.drained.notified();
            tokio::pin!(woken);
            // Registered before the check, so a release between the check and the wait is not missed.
            woken.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            woken.await;
        }
    }

    fn release(&self, namespace: &str, function: &str) {
        let mut st = self.lock();
        if let Some(ns) = st.namespaces.get_mut(namespace) {
            ns.in_flight = ns.in_flight.saturating_sub(1);
            if let Some(n) = ns.functions.get_mut(function) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    ns.functions.remove(function);
                }
            }
        }
        st.total = st.total.saturating_sub(1);
        if st.total == 0 {
            drop(st);
            self.drained.notify_waiters();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.adm.release(&self.namespace, &self.function);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adm(concurrent: u32, per_minute: u32, function_queue: u32) -> Arc<Admission> {
        Admission::new(Limits {
            concurrent,
            per_minute,
            function_queue,
        })
    }

    #[test]
    fn concurrent_limit_counts_running_and_queued_and_frees_on_drop() {
        let a = adm(2, 0, 0);
        let t1 = a.admit("ns", "f", 8, 100).unwrap();
        let _t2 = a.admit("ns", "g", 8, 100).unwrap();
        assert_eq!(
            a.admit("ns", "f", 8, 100).err(),
            Some(Refusal::Concurrent { count: 3, allowed: 2 })
        );
        // Another namespace has its own count.
        let _o = a.admit("other", "f", 8, 100).unwrap();
        drop(t1);
        assert!(a.admit("ns", "f", 8, 100).is_ok());
    }

    #[test]
    fn per_minute_limit_slides_and_refusals_do_not_count() {
        let a = adm(0, 3, 0);
        for s in [10, 20, 30] {
            drop(a.admit("ns", "f", 1, s).unwrap());
        }
        for _ in 0..5 {
            assert_eq!(
                a.admit("ns", "f", 1, 40).err(),
                Some(Refusal::PerMinute { count: 4, allowed: 3 })
            );
        }
        // At 70 the one from 10 has left the window, the refused ones never entered it.
        assert!(a.admit("ns", "f", 1, 70).is_ok());
        assert!(a.admit("ns", "f", 1, 71).is_err());
        // Long idle: everything has left, including slots last written a minute ago to the second.
        for _ in 0..3 {
            drop(a.admit("ns", "f", 1, 200).unwrap());
        }
        assert!(a.admit("ns", "f", 1, 259).is_err());
        assert!(a.admit("ns", "f", 1, 260).is_ok());
    }

    #[test]
    fn function_queue_bounds_what_waits_beyond_the_running() {
        let a = adm(0, 0, 2);
        // One may run, two may wait: the fourth is refused, other functions are not affected.
        let ts: Vec<_> = (0..3).map(|_| a.admit("ns", "f", 1, 5).unwrap()).collect();
        assert_eq!(
            a.admit("ns", "f", 1, 5).err(),
            Some(Refusal::FunctionQueue {
                function: "f".into(),
                count: 3,
                allowed: 2
            })
        );
        assert!(a.admit("ns", "g", 1, 5).is_ok());
        drop(ts);
        assert!(a.admit("ns", "f", 1, 5).is_ok());
    }

    #[test]
    fn new_limits_apply_to_the_next_invocation() {
        let a = adm(1, 0, 0);
        let _t = a.admit("ns", "f", 8, 1).unwrap();
        assert!(a.admit("ns", "f", 8, 1).is_err());
        a.set_limits(Limits {
            concurrent: 0,
            per_minute: 0,
            function_queue: 0,
        });
        assert!(a.admit("ns", "f", 8, 1).is_ok());
    }

    #[test]
    fn messages_are_openwhisks() {
        assert_eq!(
            Refusal::Concurrent { count: 101, allowed: 100 }.to_string(),
            "Too many concurrent requests in flight (count: 101, allowed: 100)."
        );
        assert_eq!(
            Refusal::PerMinute { count: 601, allowed: 600 }.to_string(),
            "Too many requests in the last minute (count: 601, allowed: 600)."
        );
    }

    #[tokio::test]
    async fn idle_resolves_when_the_last_ticket_goes() {
        let a = adm(0, 0, 0);
        a.idle().await;
        let t = a.admit("ns", "f", 1, 1).unwrap();
        let a2 = a.clone();
        let w = tokio::spawn(async move { a2.idle().await });
        tokio::task::yield_now().await;
        assert!(!w.is_finished());
        drop(t);
        tokio::time::timeout(std::time::Duration::from_secs(5), w)
            .await
            .expect("idle resolves")
            .unwrap();
    }
}
