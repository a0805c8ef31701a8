//! The snapshot machinery against a fake engine and a real `python3`: the runtime doorbell protocol
//! (the launcher reports its bell, waits for `armed`, then stores to it), snapshot bookkeeping, the budget
//! refusing a snapshot that does not fit, re-adoption and invalidation across restarts, and the fallback to
//! a cold start when a deploy fails. The fake "freezes" by watching the bell through /proc/PID/mem.

mod common;

use common::fake::Fake;
use common::*;
use serde_json::json;
use seussd::engine::SnapStat;
use seussd::host::{HostError, HostEvent, InvokeOpts};
use seussd::proc::{Proc, SpawnSpec};
use std::sync::Arc;
use std::time::Duration;

async fn wait_for_snapshots(h: &seussd::host::Host, n: usize) -> Vec<seussd::host::SnapshotInfo> {
    for _ in 0..400 {
        let s = h.list_snapshots().await;
        if s.len() >= n {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no runtime snapshot was built");
}

fn fake_config(dir: &std::path::Path) -> seussd::config::Config {
    let mut cfg = config(dir);
    cfg.device = dir.join("no-such-device");
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_snapshot_doorbell_then_deploy_failure_falls_back_to_cold() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let h = host_with(fake_config(dir.path()), Some(fake.clone())).await;
    let snaps = wait_for_snapshots(&h, 1).await;
    assert_eq!(snaps.len(), 1);
    let rt = &snaps[0];
    assert_eq!(rt.function, None);
    assert_eq!(rt.private_pages, 100);
    assert!(rt.runtime.contains(&seussd::launcher::kernel_release()));
    assert_eq!(
        fake.killed.lock().unwrap().len(),
        1,
        "the runtime snapshot's source is killed after capture"
    );
    assert!(h.stats().module_present);
    assert_eq!(h.stats().used_bytes, 100 * 4096);

    // A deploy needs the device; the stub fails, the invocation still succeeds cold.
    h.put_function("f", def("def main(a):\n    return {'ok': a['v']}\n"), false)
        .await
        .unwrap();
    let a = h
        .invoke(
            "f",
            json!({"v": 3}),
            InvokeOpts {
                blocking: true,
                path: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(a.response.result, json!({"ok": 3}));
    assert_eq!(a.annotation("startPath"), Some(&json!("cold")));
    // The runtime snapshot is still known (the failure was the device, not the snapshot).
    assert_eq!(h.list_snapshots().await.len(), 1);
    // A forced runtime path reports the deploy failure instead of falling back.
    let b = h
        .invoke(
            "f",
            json!({"v": 1}),
            InvokeOpts {
                blocking: true,
                path: Some(seussd::host::StartPath::Runtime),
            },
        )
        .await
        .unwrap();
    assert_eq!(b.response.status, "whisk internal error");
    assert!(
        b.response.result["error"]
            .as_str()
            .unwrap()
            .contains("open"),
        "{:?}",
        b.response.result
    );

    let mut ev = h.subscribe();
    h.drop_snapshot(rt.id).await.unwrap();
    assert_eq!(
        ev.recv().await.unwrap(),
        HostEvent::SnapshotEvicted { id: rt.id }
    );
    assert_eq!(*fake.released.lock().unwrap(), vec![rt.id]);
    assert!(matches!(
        h.drop_snapshot(rt.id).await,
        Err(HostError::NotFound(_))
    ));
    assert!(h.list_snapshots().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_readopted_or_dropped_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let id = {
        let h = host_with(fake_config(dir.path()), Some(fake.clone())).await;
        let id = wait_for_snapshots(&h, 1).await[0].id;
        h.shutdown().await;
        id
    };
    // Same runtime key, snapshot still alive in the "kernel": re-adopted, not rebuilt.
    {
        let h = host_with(fake_config(dir.path()), Some(fake.clone())).await;
        // The build kicked at start has decided (found the adopted snapshot, or built another) once
        // its flag drops.
        for _ in 0..400 {
            if !h.runtime_build_running() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(!h.runtime_build_running(), "the kicked runtime build finishes");
        let s = h.list_snapshots().await;
        assert_eq!(s.iter().map(|s| s.id).collect::<Vec<_>>(), vec![id]);
        assert_eq!(fake.killed.lock().unwrap().len(), 1, "no second build");
        h.shutdown().await;
    }
    // Another runtime key (e.g. a new interpreter or kernel): the old snapshot is freed and rebuilt.
    let idx_path = dir.path().join("snapshots.json");
    let mut idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&idx_path).unwrap()).unwrap();
    idx["key"] = json!("python:/old@1:2:3:4/kernel:0.0/launcher:0");
    std::fs::write(&idx_path, serde_json::to_vec(&idx).unwrap()).unwrap();
    let h = host_with(fake_config(dir.path()), Some(fake.clone())).await;
    assert!(fake.released.lock().unwrap().contains(&id));
    let s = wait_for_snapshots(&h, 1).await;
    assert_ne!(s[0].id, id);
}

/// Snapshots outlive the seussd that captured them: one killed after a CAPTURE but before its index write
/// leaves snapshots nobody lists. A new seussd releases every snapshot of its instance user it does not
/// re-adopt (children first), keeps the indexed one that is still the same snapshot, and leaves other
/// users' snapshots alone; an index entry whose id now names another snapshot (e.g. after a module reload)
/// is not adopted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_a_crash_left_behind_are_released_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let rt = {
        let h = host_with(fake_config(dir.path()), Some(fake.clone())).await;
        let id = wait_for_snapshots(&h, 1).await[0].id;
        h.shutdown().await;
        id
    };
    let owner = fake.snaps.lock().unwrap()[&rt].uid;
    let stat = |parent, uid| SnapStat { parent, uid, private_pages: 7, unchanged_pages: 0, children: 0, threads: 1 };
    {
        let mut snaps = fake.snaps.lock().unwrap();
        snaps.insert(1000, stat(None, owner)); // a runtime capture never indexed
        snaps.insert(1001, stat(Some(rt), owner)); // a function capture of the adopted runtime, never indexed
        snaps.insert(1002, stat(Some(1000), owner)); // and a child of the unindexed one
        snaps.insert(1003, stat(None, owner.wrapping_add(1))); // another user's
    }
    let h = host_with(fake_config(dir.path()), Some(fake.clone())).await;
    let released = fake.released.lock().unwrap().clone();
    let pos = |id| released.iter().position(|&r| r == id);
    assert!(pos(1000).is_some() && pos(1001).is_some() && pos(1002).is_some(), "{released:?}");
    assert!(pos(1002) < pos(1000), "children first: {released:?}");
    assert_eq!(pos(1003), None, "another user's snapshot is not seussd's");
    assert_eq!(pos(rt), None);
    assert_eq!(h.list_snapshots().await.iter().map(|s| s.id).collect::<Vec<_>>(), vec![rt]);
    assert_eq!(fake.snaps.lock().unwrap().keys().copied().collect::<Vec<_>>(), vec![rt, 1003]);
    h.shutdown().await;

    // The indexed id now names a different snapshot (other page count): not adopted, released, rebuilt.
    fake.snaps.lock().unwrap().get_mut(&rt).unwrap().private_pages = 55;
    let h = host_with(fake_config(dir.path()), Some(fake.clone())).await;
    assert!(fake.released.lock().unwrap().contains(&rt));
    let s = wait_for_snapshots(&h, 1).await;
    assert_ne!(s[0].id, rt);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_over_budget_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let mut cfg = fake_config(dir.path());
    cfg.memory_budget_mb = 0;
    let h = host_with(cfg, Some(fake.clone())).await;
    for _ in 0..400 {
        if !fake.released.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        fake.released.lock().unwrap().len(),
        1,
        "captured, then freed for lack of budget"
    );
    assert!(h.list_snapshots().await.is_empty());
    assert_eq!(h.stats().used_bytes, 0);
    // Still serves, cold.
    h.put_function("f", def("def main(a):\n    return {'y': 1}\n"), false)
        .await
        .unwrap();
    let a = h
        .invoke(
            "f",
            json!({}),
            InvokeOpts {
                blocking: true,
                path: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(a.response.result, json!({"y": 1}));
    assert_eq!(a.annotation("startPath"), Some(&json!("cold")));
    // With a zero budget the used instance cannot stay idle either.
    assert_eq!(h.stats().instances, 0);
}

/// The stub on a device that is not /dev/seuss: it opens it, drops privileges, reads its command, and
/// reports the failed deploy on fd 4 with exit status 70.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stub_reports_a_failed_deploy() {
    let mut args = vec!["--device".to_string(), "/dev/null".to_string()];
    if nix::unistd::geteuid().is_root() {
        args.extend(["--uid", "65534", "--gid", "65534"].map(String::from));
    }
    let spec = SpawnSpec {
        program: env!("CARGO_BIN_EXE_seuss-stub").into(),
        args,
        env: vec![],
        cred: None,
        cgroup_procs: None,
        max_line: 1 << 16,
    };
    let mut p = Proc::spawn(&spec).unwrap();
    p.send_ctl("deploy 1 4096 77 0").await.unwrap();
    let line = String::from_utf8(p.recv_ctl(Duration::from_secs(10)).await.unwrap()).unwrap();
    assert!(line.starts_with("error deploy 25 ENOTTY"), "{line}");
    assert_eq!(p.wait_exit(Duration::from_secs(5)).await, Some(70));

    let mut p = Proc::spawn(&SpawnSpec {
        args: vec!["--device".into(), "/nonexistent".into()],
        ..spec.clone()
    })
    .unwrap();
    let line = String::from_utf8(p.recv_ctl(Duration::from_secs(10)).await.unwrap()).unwrap();
    assert!(
        line.starts_with("error open /nonexistent: 2 ENOENT"),
        "{line}"
    );

    let mut p = Proc::spawn(&spec).unwrap();
    p.send_ctl("bogus").await.unwrap();
    assert_eq!(p.wait_exit(Duration::from_secs(5)).await, Some(64));
}

/// Stubs forked by the zygote get their five descriptors in place (the deploy error arrives on fd 4, the
/// stub's message on fd 2), are watched through a pidfd (exit seen, kill works), and each is its own process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zygote_forks_working_stubs() {
    let mut args = vec!["--device".to_string(), "/dev/null".to_string()];
    if nix::unistd::geteuid().is_root() {
        args.extend(["--uid", "65534", "--gid", "65534"].map(String::from));
    }
    let z = seussd::zygote::Zygote::start(env!("CARGO_BIN_EXE_seuss-stub").as_ref(), &args).unwrap();
    let mut a = Proc::spawn_via(&z, None, 1 << 16).unwrap();
    let mut b = Proc::spawn_via(&z, None, 1 << 16).unwrap();
    assert_ne!(a.pid, b.pid);
    assert!(a.alive() && b.alive());
    a.send_ctl("deploy 1 4096 77 0").await.unwrap();
    let line = String::from_utf8(a.recv_ctl(Duration::from_secs(10)).await.unwrap()).unwrap();
    assert!(line.starts_with("error deploy 25 ENOTTY"), "{line}");
    assert!(a.stderr_text(Duration::from_secs(2)).await.contains("seuss-stub: deploy 25 ENOTTY"));
    assert_eq!(a.wait_exit(Duration::from_secs(5)).await, Some(-1));
    assert!(!a.alive());
    if nix::unistd::geteuid().is_root() {
        // The zygote answers right after its fork; the child drops privileges on its own, before it
        // reads a command, so the change is awaited here (it raced this read under load).
        let status = || std::fs::read_to_string(format!("/proc/{}/status", b.pid)).unwrap();
        let dropped = |s: &str| s.lines().any(|l| l.starts_with("Uid:") && l.contains("65534"));
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while !dropped(&status()) && std::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s = status();
        assert!(dropped(&s), "{s}");
    }
    b.kill().await;
    assert!(!b.alive());
    // A request after the zygote is gone fails cleanly.
    drop(z);
    let e = Proc::spawn_via(
        &seussd::zygote::Zygote::start("/bin/true".as_ref(), &[]).unwrap(),
        None,
        1 << 16,
    );
    assert!(e.is_err());
}

/// A stand-in for `seuss-stub` that cannot deploy: on `deploy ...` it execs a fresh launcher, which behaves
/// like an instance just deployed from the runtime snapshot (same pid, same pipes, ready line on fd 4).
const FAKE_STUB: &str = r#"#!/usr/bin/python3
import glob, os, sys
line = b""
while not line.endswith(b"\n"):
    c = os.read(4, 1)
    if not c:
        sys.exit(0)
    line += c
state = os.path.dirname(sys.argv[sys.argv.index("--device") + 1])
launcher = glob.glob(os.path.join(state, "runtime", "launcher-*.py"))[0]
os.execve("/usr/bin/python3", ["python3", "-I", launcher], {"PATH": "/usr/bin:/bin"})
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_path_captures_the_function_snapshot_at_the_init_doorbell() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("fake-stub");
    std::fs::write(&stub, FAKE_STUB).unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = Arc::new(Fake::default());
    let mut cfg = fake_config(dir.path());
    cfg.stub = Some(stub);
    cfg.stub_zygote = false; // the stand-in has no zygote mode
    cfg.stub_pool = 1;
    let h = host_with(cfg, Some(fake.clone())).await;
    let rt = wait_for_snapshots(&h, 1).await[0].id;
    let mut events = h.subscribe();

    let code = "print('importing f')\ndef main(a):\n    return {'twice': a['n'] * 2}\n";
    h.put_function("f", def(code), false).await.unwrap();
    let a = h
        .invoke(
            "f",
            json!({"n": 21}),
            InvokeOpts {
                blocking: true,
                path: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(a.response.result, json!({"twice": 42}), "{a:?}");
    assert_eq!(a.annotation("startPath"), Some(&json!("runtime")));
    // The runtime path initialises the function's code in a new instance: an OpenWhisk cold start.
    assert!(a.annotation("initTime").and_then(|v| v.as_u64()).is_some_and(|t| t >= 1 && t <= a.duration));
    assert!(
        a.logs.iter().any(|l| l.ends_with("stdout: importing f")),
        "{:?}",
        a.logs
    );
    let snaps = h.list_snapshots().await;
    let fsnap = snaps
        .iter()
        .find(|s| s.function.as_deref() == Some("f"))
        .expect("function snapshot recorded");
    assert_ne!(fsnap.id, rt);
    let mut captured = None;
    while let Ok(ev) = events.try_recv() {
        if let HostEvent::SnapshotCaptured { id, function } = ev {
            captured = Some((id, function));
        }
    }
    assert_eq!(captured, Some((fsnap.id, Some("f".to_string()))));
    assert_eq!(
        fake.killed.lock().unwrap().len(),
        1,
        "the function snapshot's source is resumed, not killed"
    );
    // The source serves on as a hot instance.
    let b = h
        .invoke(
            "f",
            json!({"n": 1}),
            InvokeOpts {
                blocking: true,
                path: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(b.response.result, json!({"twice": 2}));
    assert_eq!(b.annotation("startPath"), Some(&json!("hot")));
    assert_eq!(h.prewarm("f").await.unwrap(), fsnap.id);
    // An update drops the stale snapshot.
    h.put_function("f", def("def main(a):\n    return {}\n"), true)
        .await
        .unwrap();
    assert!(fake.released.lock().unwrap().contains(&fsnap.id));
    assert!(h
        .list_snapshots()
        .await
        .iter()
        .all(|s| s.function.is_none()));
    let idx = std::fs::read_to_string(dir.path().join("snapshots.json")).unwrap();
    assert!(
        !idx.contains("\"f\""),
        "the index no longer lists f's snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_function_capture_still_serves_the_request() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("fake-stub");
    std::fs::write(&stub, FAKE_STUB).unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = Arc::new(Fake::default());
    let mut cfg = fake_config(dir.path());
    cfg.stub = Some(stub);
    cfg.stub_zygote = false; // the stand-in has no zygote mode
    let h = host_with(cfg, Some(fake.clone())).await;
    wait_for_snapshots(&h, 1).await;
    fake.fail_capture
        .store(true, std::sync::atomic::Ordering::SeqCst);
    h.put_function("f", def("def main(a):\n    return {'ok': True}\n"), false)
        .await
        .unwrap();
    let a = h
        .invoke(
            "f",
            json!({}),
            InvokeOpts {
                blocking: true,
                path: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(a.response.result, json!({"ok": true}), "{a:?}");
    assert_eq!(a.annotation("startPath"), Some(&json!("runtime")));
    let snaps = h.list_snapshots().await;
    assert_eq!(snaps.len(), 1, "no function snapshot was recorded: {snaps:?}");
    assert_eq!(
        fake.killed.lock().unwrap().len(),
        1,
        "the instance was resumed, not killed"
    );
    // The next runtime start captures again.
    let b = h
        .invoke(
            "f",
            json!({}),
            InvokeOpts {
                blocking: true,
                path: Some(seussd::host::StartPath::Runtime),
            },
        )
        .await
        .unwrap();
    assert_eq!(b.annotation("startPath"), Some(&json!("runtime")));
    assert!(h
        .list_snapshots()
        .await
        .iter()
        .any(|s| s.function.as_deref() == Some("f")));
}
