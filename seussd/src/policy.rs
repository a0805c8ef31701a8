//! Placement and memory policy as pure functions over plain data, so every decision is unit-testable
//! without processes: which start path an invocation takes, what to evict to stay in the memory budget,
//! which idle instances have expired.
//!
//! Eviction is LRU weighted by cost: each candidate scores `(age_ms + 1) * bytes * weight`, highest first.
//! Idle instances weigh more than snapshots (`INSTANCE_WEIGHT`) because a warm deploy recreates one cheaply,
//! while a lost function snapshot costs a runtime-path start. Pinned candidates (the runtime snapshot, which
//! every function snapshot hangs off) are never chosen.

use crate::model::StartPath;

/// What is available for one invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathState {
    /// The snapshot engine is usable.
    pub snapshots: bool,
    pub idle_instance: bool,
    pub function_snapshot: bool,
    pub runtime_snapshot: bool,
    /// Another invocation is already capturing this function's snapshot.
    pub capture_in_progress: bool,
    /// A forced path (tests, benchmarks).
    pub forced: Option<StartPath>,
}

/// The decision for one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathPlan {
    pub path: StartPath,
    /// On the runtime path: capture the function snapshot after the import.
    pub capture: bool,
}

/// Chooses the cheapest available start path (hot, warm, runtime, cold), or checks a forced one.
pub fn choose_path(s: &PathState) -> Result<PathPlan, String> {
    let capture = !s.function_snapshot && !s.capture_in_progress;
    let avail = |p: StartPath| match p {
        StartPath::Hot => s.idle_instance,
        StartPath::Warm => s.snapshots && s.function_snapshot,
        StartPath::Runtime => s.snapshots && s.runtime_snapshot,
        StartPath::Cold => true,
    };
    let plan = |path| PathPlan {
        path,
        capture: path == StartPath::Runtime && capture,
    };
    if let Some(p) = s.forced {
        return if avail(p) {
            Ok(plan(p))
        } else {
            Err(format!("start path {} is not available now", p.as_str()))
        };
    }
    let path = [
        StartPath::Hot,
        StartPath::Warm,
        StartPath::Runtime,
        StartPath::Cold,
    ]
    .into_iter()
    .find(|p| avail(*p))
    .unwrap_or(StartPath::Cold);
    Ok(plan(path))
}

/// Something that occupies budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Victim {
    Snapshot(u64),
    Instance(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub victim: Victim,
    pub bytes: u64,
    pub last_used_ms: u64,
    /// Never evicted (the runtime snapshot, snapshots with children, instances in use).
    pub pinned: bool,
}

/// Weight of idle instances relative to snapshots in the eviction score.
pub const INSTANCE_WEIGHT: u128 = 4;

/// The outcome of [`plan_eviction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvictionPlan {
    /// What to evict, in order.
    pub victims: Vec<Victim>,
    /// Whether `need` more bytes fit once the victims are gone.
    pub fits: bool,
}

/// Picks what to evict so that `used + need <= budget`, or says it cannot fit (then nothing is evicted).
pub fn plan_eviction(
    cands: &[Candidate],
    used: u64,
    need: u64,
    budget: u64,
    now_ms: u64,
) -> EvictionPlan {
    if used.saturating_add(need) <= budget {
        return EvictionPlan {
            victims: vec![],
            fits: true,
        };
    }
    let mut order: Vec<&Candidate> = cands.iter().filter(|c| !c.pinned).collect();
    let score = |c: &Candidate| {
        let w = match c.victim {
            Victim::Instance(_) => INSTANCE_WEIGHT,
            Victim::Snapshot(_) => 1,
        };
        u128::from(now_ms.saturating_sub(c.last_used_ms) + 1) * u128::from(c.bytes.max(1)) * w
    };
    order.sort_by(|a, b| {
        score(b)
            .cmp(&score(a))
            .then(a.last_used_ms.cmp(&b.last_used_ms))
    });
    let mut freed = 0u64;
    let mut victims = Vec::new();
    for c in order {
        if used.saturating_sub(freed).saturating_add(need) <= budget {
            break;
        }
        freed += c.bytes;
        victims.push(c.victim);
    }
    if used.saturating_sub(freed).saturating_add(need) <= budget {
        EvictionPlan {
            victims,
            fits: true,
        }
    } else {
        EvictionPlan {
            victims: vec![],
            fits: false,
        }
    }
}

/// Idle instances (id, last used) whose idle time reached `idle_timeout_ms`.
pub fn expired(idle: &[(u64, u64)], now_ms: u64, idle_timeout_ms: u64) -> Vec<u64> {
    idle.iter()
        .filter(|(_, t)| now_ms.saturating_sub(*t) >= idle_timeout_ms)
        .map(|(id, _)| *id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use StartPath::*;

    fn st() -> PathState {
        PathState {
            snapshots: true,
            ..Default::default()
        }
    }

    #[test]
    fn prefers_hot_then_warm_then_runtime_then_cold() {
        let all = PathState {
            idle_instance: true,
            function_snapshot: true,
            runtime_snapshot: true,
            ..st()
        };
        assert_eq!(choose_path(&all).unwrap().path, Hot);
        let no_idle = PathState {
            idle_instance: false,
            ..all
        };
        assert_eq!(
            choose_path(&no_idle).unwrap(),
            PathPlan {
                path: Warm,
                capture: false
            }
        );
        let runtime = PathState {
            function_snapshot: false,
            ..no_idle
        };
        assert_eq!(
            choose_path(&runtime).unwrap(),
            PathPlan {
                path: Runtime,
                capture: true
            }
        );
        let busy = PathState {
            capture_in_progress: true,
            ..runtime
        };
        assert_eq!(
            choose_path(&busy).unwrap(),
            PathPlan {
                path: Runtime,
                capture: false
            }
        );
        assert_eq!(choose_path(&st()).unwrap().path, Cold);
    }

    #[test]
    fn without_the_engine_only_cold_and_hot_remain() {
        let s = PathState {
            snapshots: false,
            function_snapshot: true,
            runtime_snapshot: true,
            ..st()
        };
        assert_eq!(choose_path(&s).unwrap().path, Cold);
        assert_eq!(
            choose_path(&PathState {
                idle_instance: true,
                ..s
            })
            .unwrap()
            .path,
            Hot
        );
        assert!(choose_path(&PathState {
            forced: Some(Warm),
            ..s
        })
        .is_err());
    }

    #[test]
    fn forced_paths_are_checked() {
        let s = PathState {
            runtime_snapshot: true,
            idle_instance: true,
            ..st()
        };
        assert_eq!(
            choose_path(&PathState {
                forced: Some(Cold),
                ..s
            })
            .unwrap()
            .path,
            Cold
        );
        assert_eq!(
            choose_path(&PathState {
                forced: Some(Runtime),
                ..s
            })
            .unwrap(),
            PathPlan {
                path: Runtime,
                capture: true
            }
        );
        assert!(choose_path(&PathState {
            forced: Some(Warm),
            ..s
        })
        .is_err());
        assert!(choose_path(&PathState {
            forced: Some(Hot),
            idle_instance: false,
            ..s
        })
        .is_err());
    }

    fn snap(id: u64, bytes: u64, t: u64) -> Candidate {
        Candidate {
            victim: Victim::Snapshot(id),
            bytes,
            last_used_ms: t,
            pinned: false,
        }
    }

    #[test]
    fn no_eviction_under_budget() {
        let p = plan_eviction(&[snap(1, 50, 0)], 50, 50, 100, 10);
        assert_eq!(
            p,
            EvictionPlan {
                victims: vec![],
                fits: true
            }
        );
    }

    #[test]
    fn evicts_oldest_and_largest_first_until_it_fits() {
        let c = [
            snap(1, 10, 900),
            snap(2, 10, 100),
            snap(3, 40, 800),
            snap(4, 10, 999),
        ];
        // used 70, need 20, budget 60: must free 30.
        let p = plan_eviction(&c, 70, 20, 60, 1000);
        // scores: #1 101*10=1010, #2 901*10=9010, #3 201*40=8040, #4 2*10=20
        assert_eq!(
            p,
            EvictionPlan {
                victims: vec![Victim::Snapshot(2), Victim::Snapshot(3)],
                fits: true
            }
        );
    }

    #[test]
    fn idle_instances_go_before_equally_old_snapshots() {
        let c = [
            snap(1, 10, 0),
            Candidate {
                victim: Victim::Instance(7),
                bytes: 10,
                last_used_ms: 0,
                pinned: false,
            },
        ];
        let p = plan_eviction(&c, 20, 5, 20, 100);
        assert_eq!(p.victims, vec![Victim::Instance(7)]);
    }

    #[test]
    fn pinned_are_kept_and_impossible_requests_evict_nothing() {
        let c = [
            Candidate {
                pinned: true,
                ..snap(1, 100, 0)
            },
            snap(2, 10, 0),
        ];
        let p = plan_eviction(&c, 110, 10, 100, 5);
        assert_eq!(
            p,
            EvictionPlan {
                victims: vec![],
                fits: false
            }
        );
        let p = plan_eviction(&c, 110, 0, 100, 5);
        assert_eq!(
            p,
            EvictionPlan {
                victims: vec![Victim::Snapshot(2)],
                fits: true
            }
        );
    }

    #[test]
    fn idle_expiry() {
        assert_eq!(
            expired(&[(1, 0), (2, 500), (3, 1000)], 1000, 500),
            vec![1, 2]
        );
        assert!(expired(&[(1, 999)], 1000, 500).is_empty());
    }
}
