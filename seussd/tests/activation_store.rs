//! The activation database (`actdb.rs`): lists filtered, ordered, paged and counted in SQL, with records
//! still queued for the writer merged in once; retention by count and by age through a running host (the
//! pruning pass waited for, never slept on); the one-time import of the JSON files an older seussd wrote.

mod common;

use common::*;
use seussd::actdb::{ActivationDb, Retention};
use seussd::model::{Activation, ActivationQuery};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn rec(ns: &str, name: &str, n: u64, start: u64) -> Activation {
    serde_json::from_value(json!({
        "namespace": ns, "name": name, "version": "0.0.1", "subject": "s",
        "activationId": format!("{n:032x}"), "start": start, "end": start + 2, "duration": 2,
        "response": {"status": "success", "success": true, "result": {"n": n}},
        "logs": [], "annotations": [{"key": "startPath", "value": "cold"}], "publish": false
    }))
    .unwrap()
}

fn ids(v: &[Activation]) -> Vec<String> {
    v.iter().map(|a| a.activation_id.clone()).collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// What a list must return: `all` filtered as `q` says, newest first (ties by id, descending), paged.
fn expected(all: &[Activation], ns: &str, q: &ActivationQuery) -> (Vec<String>, usize) {
    let mut m: Vec<&Activation> = all.iter().filter(|a| a.namespace == ns && q.matches(a)).collect();
    m.sort_by(|a, b| b.start.cmp(&a.start).then_with(|| b.activation_id.cmp(&a.activation_id)));
    let page = m.iter().skip(q.skip).take(q.limit).map(|a| a.activation_id.clone()).collect();
    (page, m.len().saturating_sub(q.skip))
}

#[test]
fn the_database_filters_orders_pages_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let db = ActivationDb::open(dir.path()).unwrap();
    // 40 records: two namespaces, three names, starts with ties (several per millisecond).
    let all: Vec<Activation> = (0..40)
        .map(|n| rec(["guest", "other"][(n % 5 == 0) as usize], ["f", "g", "h"][(n % 3) as usize], n, 100 + n / 3))
        .collect();
    // 30 stored, 10 still "queued"; two of the queued ones were also written meanwhile.
    let (stored, queued) = all.split_at(30);
    let mut w = db.writer().unwrap();
    w.insert(stored, false).unwrap();
    w.insert(&queued[..2], false).unwrap();
    let pending = |q: &ActivationQuery| -> Vec<Activation> {
        queued.iter().filter(|a| a.namespace == "guest" && q.matches(a)).cloned().collect()
    };
    let mut checked = 0;
    for name in [None, Some("f"), Some("h"), Some("nobody")] {
        for (since, upto) in [(None, None), (Some(103), None), (None, Some(108)), (Some(104), Some(106))] {
            for skip in [0, 1, 5, 9, 31, 100] {
                for limit in [0, 1, 3, 30, 200] {
                    let q = ActivationQuery { name: name.map(String::from), skip, limit, since, upto };
                    let (want, count) = expected(&all, "guest", &q);
                    assert_eq!(ids(&db.page("guest", &q, pending(&q)).unwrap()), want, "{q:?}");
                    assert_eq!(db.count("guest", &q, pending(&q)).unwrap(), count, "{q:?}");
                    checked += usize::from(!want.is_empty());
                }
            }
        }
    }
    assert!(checked > 100, "most queries return something: {checked}");
    // Whole records come back as stored; another namespace's stay apart.
    let q = ActivationQuery { limit: 200, ..Default::default() };
    let other = db.page("other", &q, vec![]).unwrap();
    assert_eq!(other.len(), 7, "six stored, one queued and written");
    assert!(other.iter().all(|a| a.namespace == "other"));
    assert_eq!(db.get(&all[7].activation_id).unwrap().as_ref(), Some(&all[7]));
    assert_eq!(db.get(&format!("{:032x}", 999)).unwrap(), None);
    // Values past SQLite's integer range are clamped, not errors.
    let q = ActivationQuery { since: Some(u64::MAX), upto: Some(u64::MAX), ..Default::default() };
    assert_eq!(db.count("guest", &q, vec![]).unwrap(), 0);
}

#[test]
fn pruning_by_count_and_by_age_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = ActivationDb::open(dir.path()).unwrap();
    let mut w = db.writer().unwrap();
    let recs: Vec<Activation> = (0..10).map(|n| rec("guest", "f", n, 1000 + n)).collect();
    w.insert(&recs, false).unwrap();
    w.insert(&[rec("other", "f", 50, 1000)], false).unwrap();
    let all = ActivationQuery { limit: 200, ..Default::default() };
    let none = Retention { max_age_ms: 0, max_per_namespace: 0, interval_ms: 1 };
    assert_eq!(w.prune(&none, 5000).unwrap(), 0);
    let by_count = Retention { max_per_namespace: 4, ..none };
    assert_eq!(w.prune(&by_count, 5000).unwrap(), 6);
    assert_eq!(ids(&db.page("guest", &all, vec![]).unwrap()), ids(&[9, 8, 7, 6].map(|n| rec("", "", n, 0))));
    assert_eq!(db.count("other", &all, vec![]).unwrap(), 1);
    // Age: start older than now - max_age goes (the bound itself stays).
    let by_age = Retention { max_age_ms: 1000, ..none };
    assert_eq!(w.prune(&by_age, 2007).unwrap(), 2, "1000 (other) and 1006 go, 1007.. stay");
    assert_eq!(ids(&db.page("guest", &all, vec![]).unwrap()), ids(&[9, 8, 7].map(|n| rec("", "", n, 0))));
    assert_eq!(db.count("other", &all, vec![]).unwrap(), 0);
}

/// Polls the host's count until `want` (a condition with a deadline).
async fn wait_count(h: &seussd::host::Host, want: usize) {
    let q = ActivationQuery::default();
    let t0 = Instant::now();
    loop {
        let n = h.count_activations(&q).await.unwrap();
        if n == want {
            return;
        }
        assert!(t0.elapsed() < WAIT, "count stayed {n}, not {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_host_keeps_the_newest_records_per_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.activations_max_per_namespace = 3;
    cfg.activations_prune_interval_ms = 20;
    let h = host_with(cfg, None).await;
    h.put_function("f", def("def main(a):\n    return {'i': a['i']}\n"), false).await.unwrap();
    let mut made = Vec::new();
    for i in 0..6 {
        let o = seussd::host::InvokeOpts { blocking: true, ..Default::default() };
        made.push(h.invoke("f", json!({"i": i}), o).await.unwrap());
    }
    wait_count(&h, 3).await;
    let kept = h.list_activations(&ActivationQuery::default()).await.unwrap();
    let mut newest = made.clone();
    newest.sort_by(|a, b| b.start.cmp(&a.start).then_with(|| b.activation_id.cmp(&a.activation_id)));
    assert_eq!(ids(&kept), ids(&newest[..3]));
    assert!(h.get_activation(&newest[5].activation_id).await.is_err(), "the oldest is gone");
    h.shutdown().await;
}

/// An old seussd's record file, as it wrote them (pretty JSON, named for the id).
fn write_legacy(state: &Path, a: &Activation) {
    let dir = state.join("activations");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{}.json", a.activation_id));
    std::fs::write(p, serde_json::to_vec_pretty(a).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_record_files_are_imported_once_and_aged_records_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let (state, now, day) = (dir.path(), now_ms(), 86_400_000);
    let ns = config(state).namespace;
    let recent: Vec<Activation> = (0..5).map(|n| rec(&ns, "f", n, now - 1000 + n)).collect();
    let old = rec(&ns, "f", 9, now - 3 * day);
    for a in recent.iter().chain([&old]) {
        write_legacy(state, a);
    }
    let legacy = state.join("activations");
    // What a crash mid-write left, a torn file and one not holding the record it is named for.
    std::fs::write(legacy.join(".x.json.1.2.tmp"), b"{").unwrap();
    std::fs::write(legacy.join(format!("{:032x}.json", 7)), b"{\"namespace\": \"gu").unwrap();
    std::fs::write(legacy.join(format!("{:032x}.json", 8)), serde_json::to_vec(&recent[0]).unwrap()).unwrap();

    let mut cfg = config(state);
    cfg.activations_max_age_s = 0;
    let h = host_with(cfg.clone(), None).await;
    let all = ActivationQuery { limit: 200, ..Default::default() };
    let listed = h.list_activations(&all).await.unwrap();
    let mut want: Vec<Activation> = recent.iter().rev().cloned().collect();
    want.push(old.clone());
    assert_eq!(listed, want, "every record imported, whole");
    let mut left: Vec<String> =
        std::fs::read_dir(&legacy).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, vec![format!("{:032x}.json", 7), format!("{:032x}.json", 8)], "only the unreadable stay");
    h.shutdown().await;
    drop(h);

    // The next start imports nothing twice; with a maximum age of a day the old record goes.
    cfg.activations_max_age_s = 86_400;
    cfg.activations_prune_interval_ms = 20;
    let h = host_with(cfg.clone(), None).await;
    wait_count(&h, 5).await;
    assert_eq!(h.list_activations(&all).await.unwrap(), want[..5].to_vec());
    h.shutdown().await;
    drop(h);

    // Once the directory is empty it is removed.
    std::fs::remove_dir_all(&legacy).unwrap();
    write_legacy(state, &rec(&ns, "g", 20, now));
    let h = host_with(cfg, None).await;
    assert!(!legacy.exists(), "an emptied directory is removed");
    assert_eq!(h.count_activations(&all).await.unwrap(), 6);
    h.shutdown().await;
}
