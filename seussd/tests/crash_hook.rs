//! A seussd that dies between a CAPTURE and its index write (the `capture-after` test hook stands in for
//! the kill) leaves a snapshot nobody lists; the next seussd on the same state directory releases it and
//! builds its own. Its own test binary: the hook is read once per process, from the environment.

mod common;

use common::fake::Fake;
use common::*;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_cut_off_before_its_index_write_is_released_by_the_next_seussd() {
    // Set before anything in this process reads it (the hook is read once).
    std::env::set_var("SEUSSD_TEST_HOOK", "capture-after@runtime");
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let mut cfg = config(dir.path());
    cfg.device = dir.path().join("no-such-device");
    let dead = host_with(cfg.clone(), Some(fake.clone())).await;
    // The runtime build captures, then stops at the hook: the snapshot exists, nothing records it.
    for _ in 0..2400 {
        if seussd::testhook::reached().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seussd::testhook::reached(), Some("capture-after"), "the runtime build reached the hook");
    let orphan = fake.snaps.lock().unwrap().keys().next().copied().expect("the runtime build captured");
    assert!(dead.list_snapshots().await.is_empty(), "stopped before recording it");
    assert!(!dir.path().join("snapshots.json").exists(), "and before any index write");

    // "Restart" (the first host stays stuck at its hook; the hook fires once, so this one builds).
    let h = host_with(cfg, Some(fake.clone())).await;
    assert!(fake.released.lock().unwrap().contains(&orphan), "the orphan is released at start");
    let mut held = Vec::new();
    for _ in 0..400 {
        held = h.list_snapshots().await;
        if !held.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(held.len(), 1);
    assert_ne!(held[0].id, orphan);
    let live: Vec<u64> = fake.snaps.lock().unwrap().keys().copied().collect();
    assert_eq!(live, vec![held[0].id], "the fake kernel holds only what the new host holds");
}
