//! The `engine` suite: freeze, capture, deploy, the snapshot tree, dirty accounting, and refusals.
//! Every case checks real memory contents and registers through `seuss_target` or a real `python3`.

use std::collections::HashSet;

use crate::ktap::{check, Case};
use crate::python::{python_call, python_snapshot};
use crate::util::*;
use nix::errno::Errno;
use uapi::{DeployOpts, Device, FreezePoint, FreezeState};

pub const CASES: &[Case] = &[
    Case { name: "watchpoint_freeze_capture_deploy_3_children", run: watch_deploy3 },
    Case { name: "exec_breakpoint_freezes_at_function_entry", run: exec_bp },
    Case { name: "children_are_isolated_from_siblings_snapshot_and_source", run: isolation },
    Case { name: "tree_child_snapshot_records_parent_and_diff", run: tree },
    Case { name: "dirty_counts_pages_an_instance_wrote", run: dirty },
    Case { name: "deploys_prefault_what_the_first_instance_touched", run: prefault },
    Case { name: "capture_shares_back_pages_copied_but_unchanged", run: share_unchanged },
    Case { name: "freeze_now_in_blocking_read_restarts_in_children", run: freeze_now },
    Case { name: "python3_20_children_answer_with_unique_random", run: python20 },
    Case { name: "deploy_writes_tid_and_cookie", run: tid_cookie },
    Case { name: "signals_wait_while_frozen_and_are_not_inherited", run: signals_frozen },
    Case { name: "arm_by_pidfd", run: pidfd },
    Case { name: "bad_ids_and_released_snapshots_are_enoent", run: bad_ids },
    Case { name: "second_freeze_on_same_task_is_ebusy", run: double_arm },
    Case { name: "unprivileged_arm_and_deploy_are_eperm", run: unprivileged },
    Case { name: "shared_writable_anonymous_memory_is_eopnotsupp", run: shared_anon },
    Case { name: "killing_a_frozen_task_leaves_it_dead", run: kill_frozen },
    Case { name: "exit_between_freeze_and_capture", run: exit_before_capture },
    Case { name: "closing_fd_releases_armed_and_frozen_tasks", run: close_fd },
    Case { name: "page_cap_gives_enospc", run: page_cap },
    Case { name: "deploy_exit_1000_cycles_leave_counters", run: cycles1000 },
    Case { name: "rmmod_with_live_snapshots_frees_them", run: rmmod_frees },
];


/// Spawns a target, arms a write watchpoint on its doorbell, lets it run into it, waits for FROZEN.
fn frozen_target(d: &Device, args: &[&str]) -> Result<(Target, u64), String> {
    let mut t = Target::spawn(args)?;
    let id = d.arm(t.pid(), FreezePoint::Write { addr: t.doorbell, len: 8 }).map_err(e("ARM"))?;
    t.send("go")?;
    match d.wait(id, FREEZE_MS).map_err(e("WAIT"))? {
        FreezeState::Frozen { .. } => Ok((t, id)),
        s => Err(format!("state {s:?}, want Frozen")),
    }
}

/// A snapshot of a `seuss_target` frozen at its doorbell; the source is killed afterwards.
fn snapshot_of(d: &Device, args: &[&str]) -> Result<u64, String> {
    let (t, id) = frozen_target(d, args)?;
    let snap = d.capture(id).map_err(e("CAPTURE"))?;
    d.release(id, true).map_err(e("KILL"))?;
    t.wait();
    Ok(snap)
}

/// Asks a deployed child for its report and waits for it to exit: a full, matching report and a normal exit.
/// Returns the report line.
fn checked_report(mut s: Stub) -> Result<String, String> {
    s.send("check")?;
    let line = s.line()?;
    let pid = s.pid;
    let code = s.wait();
    report_ok(&line, pid)?;
    check(code == REPORT_OK, || format!("child exit {code}: {line}"))?;
    Ok(line)
}

fn deploy_and_check(d: &Device, snap: u64) -> Result<(), String> {
    let line = checked_report(fork_deploy(d, snap, DeployOpts::default(), || {}))?;
    // MADV_WIPEONFORK memory is empty in a snapshot, as in a fork child.
    check(field(&line, "wipe") == Some("0"), || format!("wipe-on-fork page kept its data: {line}"))
}

fn watch_deploy3() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let (mut t, id) = frozen_target(&d, &["watch"])?;
    let snap = d.capture(id).map_err(e("CAPTURE"))?;
    check(snap >= 1, || "snapshot id 0".into())?;
    for _ in 0..3 {
        deploy_and_check(&d, snap)?;
    }
    d.release(id, false).map_err(e("RESUME"))?;
    t.send("check")?;
    let line = t.line()?;
    let pid = t.pid();
    report_ok(&line, pid)?;
    check(field(&line, "wipe") == Some("85"), || format!("the source lost its wipe-on-fork page: {line}"))?;
    check(t.wait() == REPORT_OK, || "source did not finish normally".into())?;
    let info = d.snap_info(snap).map_err(e("SNAP_INFO"))?;
    check(info.deployed == 3 && info.parent_id == 0 && info.depth == 0, || format!("info {info:?}"))?;
    check(info.pages_mapped >= 256 && info.pages_private >= 256, || format!("page counts {info:?}"))?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))
}

fn exec_bp() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let mut t = Target::spawn(&["exec"])?;
    let id = d.arm(t.pid(), FreezePoint::Exec(t.func)).map_err(e("ARM exec"))?;
    t.send("go")?;
    let ip = match d.wait(id, FREEZE_MS).map_err(e("WAIT"))? {
        FreezeState::Frozen { ip } => ip,
        s => return Err(format!("state {s:?}")),
    };
    check(ip == t.func, || format!("frozen at {ip:#x}, function at {:#x}", t.func))?;
    let snap = d.capture(id).map_err(e("CAPTURE"))?;
    d.release(id, true).map_err(e("KILL"))?;
    let code = t.wait();
    check(code == 128 + libc::SIGKILL, || format!("source exit {code}, want SIGKILL"))?;
    for _ in 0..2 {
        deploy_and_check(&d, snap)?;
    }
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))
}

fn isolation() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let (mut t, id) = frozen_target(&d, &["watch"])?;
    let snap = d.capture(id).map_err(e("CAPTURE"))?;
    d.release(id, false).map_err(e("RESUME"))?;
    // The source scribbles first: the snapshot must not see it.
    t.send("scribble")?;
    check(t.line()?.starts_with("scribbled"), || "source did not scribble".into())?;
    let mut a = fork_deploy(&d, snap, DeployOpts::default(), || {});
    a.send("scribble")?;
    check(a.line()?.starts_with("scribbled"), || "child A did not scribble".into())?;
    // Sibling B, deployed after A wrote, sees the snapshot's pattern.
    deploy_and_check(&d, snap)?;
    // A sees its own writes (so the report says mem=false, exit 11).
    a.send("check")?;
    let la = a.line()?;
    let ca = a.wait();
    check(field(&la, "mem") == Some("false") && ca == 11, || format!("A: {la} exit {ca}"))?;
    t.send("check")?;
    let lt = t.line()?;
    check(field(&lt, "mem") == Some("false") && t.wait() == 11, || format!("source: {lt}"))?;
    // And the snapshot is still pristine.
    deploy_and_check(&d, snap)?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))
}

fn tree() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    const N: u64 = 64;
    let (t, id) = frozen_target(&d, &["layer", "64"])?;
    let base = d.capture(id).map_err(e("CAPTURE base"))?;
    d.release(id, true).map_err(e("KILL"))?;
    t.wait();
    let mut x = fork_deploy(&d, base, DeployOpts::default(), || {});
    let l = x.line()?;
    check(l.starts_with("layer"), || format!("X said {l}"))?;
    // doorbell2 lives at the same place in X as in the captured source; learn it from X's maps.
    let db2 = doorbell2_of(x.pid)?;
    let fid = d.arm(x.pid, FreezePoint::Write { addr: db2, len: 8 }).map_err(e("ARM doorbell2"))?;
    x.send("go")?;
    check(matches!(d.wait(fid, FREEZE_MS).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "X not frozen".into())?;
    let child = d.capture(fid).map_err(e("CAPTURE child"))?;
    d.release(fid, true).map_err(e("KILL X"))?;
    x.wait();
    let info = d.snap_info(child).map_err(e("SNAP_INFO"))?;
    check(info.parent_id == base && info.depth == 1, || format!("child info {info:?}"))?;
    // N pages written, plus a few: the stack, heap metadata, stdio buffers touched after the deploy.
    check(info.pages_private >= N && info.pages_private <= N + 48, || format!("private pages {} for N={N}", info.pages_private))?;
    let binfo = d.snap_info(base).map_err(e("SNAP_INFO base"))?;
    check(binfo.children == 1, || format!("base children {}", binfo.children))?;
    // Both layers visible in a deploy of the child snapshot.
    let mut y = fork_deploy(&d, child, DeployOpts::default(), || {});
    let ly = y.line()?;
    let py = y.pid;
    let cy = y.wait();
    report_ok(&ly, py)?;
    check(cy == REPORT_OK, || format!("Y exit {cy}"))?;
    check(d.snap_release(base) == Err(Errno::EBUSY), || "released a parent with children".into())?;
    d.snap_release(child).map_err(e("release child"))?;
    d.snap_release(base).map_err(e("release base"))?;
    println!("# tree: base private {} pages, child private {} pages (N={N}), child pt {} bytes", binfo.pages_private, info.pages_private, info.pt_bytes);
    Ok(())
}

/// Reads `doorbell2` of a seuss_target process from its symbol address: same binary, and statics sit
/// at the same offset from the executable's load base, which /proc/PID/maps gives.
fn doorbell2_of(pid: i32) -> Result<u64, String> {
    let me_exe = sibling("seuss_target");
    let base_of = |p: &str| -> Result<u64, String> {
        let maps = std::fs::read_to_string(format!("/proc/{p}/maps")).map_err(|e| e.to_string())?;
        maps.lines().find(|l| l.ends_with(&me_exe)).and_then(|l| l.split('-').next()).map(|s| u64::from_str_radix(s, 16).unwrap()).ok_or("no mapping".into())
    };
    // A reference target tells us doorbell2's offset from its own base.
    let r = Target::spawn(&["watch"])?;
    let off = r.doorbell2 - base_of(&r.pid().to_string())?;
    sigkill(r.pid());
    r.wait();
    Ok(base_of(&pid.to_string())? + off)
}

fn dirty() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let snap = snapshot_of(&d, &["watch"])?;
    let mut a = fork_deploy(&d, snap, DeployOpts::default(), || {});
    // The stub is an instance once its DEPLOY has run: until then DIRTY says ENOENT.
    let (sid, before) = wait_instance(&d, a.pid)?;
    check(sid == snap, || format!("dirty snap {sid} != {snap}"))?;
    a.send("scribble")?;
    a.line()?;
    let (_, after) = d.dirty(a.pid).map_err(e("DIRTY after"))?;
    a.send("check")?;
    a.line()?;
    a.wait();
    println!("# dirty: {before} private pages after deploy, {after} after writing 256 pages");
    check(after >= before + 256 && before < 64, || format!("before {before} after {after}"))?;
    check(d.dirty(std::process::id() as i32) == Err(Errno::ENOENT), || "DIRTY of a non-instance".into())?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))
}

/// Kilobytes of executable file mappings a process has in memory (smaps `Rss` of `x` mappings).
fn text_rss_kib(pid: i32) -> Result<u64, String> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).map_err(|x| format!("smaps: {x}"))?;
    let (mut exec, mut kib) = (false, 0);
    for l in smaps.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 5 && f[0].contains('-') && f[1].len() == 4 {
            exec = f[1].contains('x') && f.len() >= 6;
        } else if exec && f.first() == Some(&"Rss:") {
            kib += f.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok(kib)
}

/// The first DIRTY of an instance records what it touched as its snapshot's touch set; a later deploy
/// starts with the pages it wrote already copied (private), holding the snapshot's data, and with the
/// program text it ran already mapped, unless `prefault` says otherwise (bit 0 writes, bit 1 reads).
fn prefault() -> Result<(), String> {
    const PARAM: &str = "/sys/module/seuss/parameters/prefault";
    ensure_loaded()?;
    let d = dev()?;
    let set = |v: &str| std::fs::write(PARAM, v).map_err(|x| format!("{PARAM}: {x}"));
    set("3")?;
    let snap = snapshot_of(&d, &["watch"])?;
    let mut a = fork_deploy(&d, snap, DeployOpts::default(), || {});
    a.send("scribble")?;
    a.line()?;
    let (_, wrote) = d.dirty(a.pid).map_err(e("DIRTY of the first instance"))?;
    sigkill(a.pid);
    a.wait();
    // (private pages, KiB of program text mapped) of a fresh child waiting for its command.
    let fresh = |d: &Device| -> Result<(u64, u64), String> {
        let b = fork_deploy(d, snap, DeployOpts::default(), || {});
        let (_, at_start) = wait_instance(d, b.pid)?;
        let text = text_rss_kib(b.pid)?;
        checked_report(b)?;
        Ok((at_start, text))
    };
    let with = fresh(&d)?;
    set("1")?;
    let writes_only = fresh(&d);
    set("0")?;
    let without = fresh(&d);
    set("3")?;
    let (writes_only, without) = (writes_only?, without?);
    println!("# prefault: first instance wrote {wrote} pages; next deploy starts with (private pages, text KiB) {with:?}, \
              {writes_only:?} with prefault=1 (writes only), {without:?} with prefault=0");
    check(wrote >= 256 && with.0 >= 256 && writes_only.0 >= 256 && without.0 < 64, || format!("wrote {wrote}, private {with:?} {writes_only:?} {without:?}"))?;
    check(with.1 > writes_only.1, || format!("text mapped with reads {} KiB, without {} KiB", with.1, writes_only.1))?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))
}

/// Deploys `base` (a `layer N M` target), freezes the child at its second doorbell and captures it; the
/// child is resumed, waiting for a command. Returns the new snapshot and the child.
fn layer_over(d: &Device, base: u64) -> Result<(u64, Stub), String> {
    let mut x = fork_deploy(d, base, DeployOpts::default(), || {});
    let l = x.line()?;
    check(l.starts_with("layer"), || format!("X said {l}"))?;
    let fid = d.arm(x.pid, FreezePoint::Write { addr: doorbell2_of(x.pid)?, len: 8 }).map_err(e("ARM doorbell2"))?;
    x.send("go")?;
    check(matches!(d.wait(fid, FREEZE_MS).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "X not frozen".into())?;
    let snap = d.capture(fid).map_err(e("CAPTURE"));
    d.release(fid, false).map_err(e("RESUME"))?;
    Ok((snap?, x))
}

/// Scribbles over a child's first layer, then asks for its report: the memory check must fail (exit 11),
/// so the write really went to the child's own copy.
fn scribbled_report(mut s: Stub) -> Result<(), String> {
    s.send("scribble")?;
    let l = s.line()?;
    check(l.starts_with("scribbled"), || format!("scribble: {l}"))?;
    s.send("check")?;
    let line = s.line()?;
    let code = s.wait();
    check(field(&line, "mem") == Some("false") && code == 11, || format!("after scribbling: exit {code}, {line}"))
}

/// A capture gives back the pages the task copied without changing them: a child that writes N new pages
/// and writes M of its parent's pages away and back is stored as about N pages, unless
/// `share_unchanged=0`. The pages given back stay copy-on-write: the resumed source and the snapshot's
/// own instances scribble on them without changing what later instances of either snapshot see.
fn share_unchanged() -> Result<(), String> {
    const PARAM: &str = "/sys/module/seuss/parameters/share_unchanged";
    const N: u64 = 16;
    const M: u64 = 128;
    ensure_loaded()?;
    let d = dev()?;
    let set = |v: &str| std::fs::write(PARAM, v).map_err(|x| format!("{PARAM}: {x}"));
    let base = snapshot_of(&d, &["layer", &N.to_string(), &M.to_string()])?;
    set("1")?;
    let (with, x) = layer_over(&d, base)?;
    let info = d.snap_info(with).map_err(e("SNAP_INFO"))?;
    set("0")?;
    let without = layer_over(&d, base);
    set("1")?;
    let (without, x0) = without?;
    let info0 = d.snap_info(without).map_err(e("SNAP_INFO without"))?;
    sigkill(x0.pid);
    x0.wait();
    println!(
        "# share_unchanged: N={N} new, M={M} unchanged: {} private + {} given back; with share_unchanged=0 {} private",
        info.pages_private, info.pages_unchanged, info0.pages_private
    );
    check(info.pages_private >= N && info.pages_private <= N + 48 && info.pages_unchanged >= M, || format!("with: {info:?}"))?;
    check(info0.pages_private >= N + M && info0.pages_unchanged == 0, || format!("without: {info0:?}"))?;
    // The source writes over the pages it gave back; the snapshot's instances still see the original.
    scribbled_report(x)?;
    checked_report(fork_deploy(&d, with, DeployOpts::default(), || {}))?;
    scribbled_report(fork_deploy(&d, with, DeployOpts::default(), || {}))?;
    checked_report(fork_deploy(&d, with, DeployOpts::default(), || {}))?;
    checked_report(fork_deploy(&d, without, DeployOpts::default(), || {}))?;
    // And the base is untouched too.
    let mut z = fork_deploy(&d, base, DeployOpts::default(), || {});
    let l = z.line()?;
    check(l.starts_with("layer"), || format!("Z said {l}"))?;
    z.send("go")?;
    checked_report(z)?;
    for id in [with, without, base] {
        d.snap_release(id).map_err(e("SNAP_RELEASE"))?;
    }
    Ok(())
}

fn freeze_now() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let mut t = Target::spawn(&["sleep"])?;
    wait_sleeping(t.pid())?; // blocked in read()
    let id = d.arm(t.pid(), FreezePoint::Now).map_err(e("ARM now"))?;
    check(matches!(d.wait(id, FREEZE_MS).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "not frozen".into())?;
    let snap = d.capture(id).map_err(e("CAPTURE"))?;
    d.release(id, false).map_err(e("RESUME"))?;
    t.send("after")?;
    let lt = t.line()?;
    check(lt.starts_with("got after") && t.wait() == REPORT_OK, || format!("source: {lt}"))?;
    for _ in 0..2 {
        let mut c = fork_deploy(&d, snap, DeployOpts::default(), || {});
        c.send("after")?;
        let l = c.line()?;
        let pid = c.pid;
        let code = c.wait();
        check(l == format!("got after pid={pid}") && code == REPORT_OK, || format!("child: {l} exit {code}"))?;
    }
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))
}

fn python20() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let (snap, cookie_addr, _) = python_snapshot(&d, "/usr/bin/python3")?;
    let mut rands = HashSet::new();
    for i in 0..20i64 {
        let (l, pid, code) = python_call(&d, snap, cookie_addr, 0x5eed_0000 + i as u64 * 7919, i, 2 * i)?;
        check(code == 0, || format!("child {i} exit {code}: {l}"))?;
        check(l.contains(&format!("\"sum\": {}", 3 * i)) && l.contains(&format!("\"pid\": {pid}")), || format!("child {i}: {l}"))?;
        let r = l.split("\"rand\": ").nth(1).unwrap_or("").trim_end_matches('}').to_string();
        rands.insert(r);
    }
    check(rands.len() == 20, || format!("only {} distinct random values over 20 children", rands.len()))?;
    let info = d.snap_info(snap).map_err(e("SNAP_INFO"))?;
    println!("# python snapshot: {} pages mapped, {} private, {} KiB page tables, capture {} us", info.pages_mapped, info.pages_private, info.pt_bytes / 1024, info.capture_ns / 1000);
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))
}

fn tid_cookie() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let (t, id) = frozen_target(&d, &["watch"])?;
    let (tidvar, cookie) = (t.tidvar, t.cookie);
    let snap = d.capture(id).map_err(e("CAPTURE"))?;
    d.release(id, true).map_err(e("KILL"))?;
    t.wait();
    for k in 0..3u64 {
        let val = 0xc00c_1e00 + k;
        let s = fork_deploy(&d, snap, DeployOpts { tid_addr: Some(tidvar), cookie: Some((cookie, val)) }, || {});
        let pid = s.pid;
        let l = checked_report(s)?;
        check(field(&l, "tidvar") == Some(&pid.to_string()) && field(&l, "tid") == Some(&pid.to_string()), || format!("tid not written: {l}"))?;
        check(field(&l, "cookie") == Some(&val.to_string()), || format!("cookie not written: {l}"))?;
    }
    // Misaligned or kernel addresses are refused before anything changes.
    check(stub_errno_opts(&d, snap, DeployOpts { tid_addr: Some(tidvar + 1), cookie: None }) == libc::EFAULT, || "misaligned tid_addr".into())?;
    check(stub_errno_opts(&d, snap, DeployOpts { tid_addr: None, cookie: Some((0xffff_8000_0000_0000, 1)) }) == libc::EFAULT, || "kernel cookie_addr".into())?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))
}

fn stub_errno_opts(d: &Device, snap: u64, opts: DeployOpts) -> i32 {
    fork_deploy(d, snap, opts, || {}).wait() - 100
}

fn signals_frozen() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let (mut t, id) = frozen_target(&d, &["watch"])?;
    let pid = nix::unistd::Pid::from_raw(t.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).map_err(e("kill USR1"))?;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).map_err(e("kill CONT"))?;
    // SIGUSR1 stays pending (the park sleeps killable); SIGCONT has been handled by then too.
    wait_signal_pending(t.pid(), libc::SIGUSR1)?;
    check(matches!(d.wait(id, 0).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "a non-fatal signal released the freeze".into())?;
    let snap = d.capture(id).map_err(e("CAPTURE"))?;
    d.release(id, false).map_err(e("RESUME"))?;
    t.send("check")?;
    let l = t.line()?;
    check(field(&l, "usr1") == Some("1") && t.wait() == REPORT_OK, || format!("source after release: {l}"))?;
    // The pending signal belonged to the source task, not to the snapshot.
    let mut s = fork_deploy(&d, snap, DeployOpts::default(), || {});
    s.send("check")?;
    let lc = s.line()?;
    let code = s.wait();
    check(field(&lc, "usr1") == Some("0") && code == REPORT_OK, || format!("child: {lc}"))?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))
}

fn pidfd() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let mut t = Target::spawn(&["watch"])?;
    // SAFETY: pidfd_open on our child.
    let pfd = unsafe { libc::syscall(libc::SYS_pidfd_open, t.pid(), 0) } as i32;
    check(pfd >= 0, || "pidfd_open failed".into())?;
    let id = d.arm_pidfd(pfd, FreezePoint::Write { addr: t.doorbell, len: 8 }).map_err(e("ARM pidfd"))?;
    t.send("go")?;
    check(matches!(d.wait(id, FREEZE_MS).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "not frozen".into())?;
    d.release(id, false).map_err(e("RESUME"))?;
    t.send("check")?;
    let l = t.line()?;
    let pid = t.pid();
    report_ok(&l, pid)?;
    check(t.wait() == REPORT_OK, || "source".into())?;
    // A descriptor that is not a pidfd.
    check(d.arm_pidfd(0, FreezePoint::Now).is_err(), || "arm with fd 0 as pidfd".into())?;
    // SAFETY: closing our pidfd.
    unsafe { libc::close(pfd) };
    Ok(())
}

fn stub_errno(d: &Device, snap: u64, setup: impl FnOnce()) -> i32 {
    let s = fork_deploy(d, snap, DeployOpts::default(), setup);
    s.wait() - 100
}

fn bad_ids() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    check(stub_errno(&d, 999_999, || {}) == libc::ENOENT, || "deploy of unknown id".into())?;
    check(d.snap_info(999_999).err() == Some(Errno::ENOENT), || "info of unknown id".into())?;
    check(d.snap_release(999_999).err() == Some(Errno::ENOENT), || "release of unknown id".into())?;
    check(d.wait(999, 0).err() == Some(Errno::ENOENT), || "wait on unknown freeze".into())?;
    check(d.capture(999).err() == Some(Errno::ENOENT), || "capture of unknown freeze".into())?;
    check(d.release(999, false).err() == Some(Errno::ENOENT), || "resume of unknown freeze".into())?;
    check(d.arm(0x3fff_fff0, FreezePoint::Now).err() == Some(Errno::ESRCH), || "arm of no such pid".into())?;
    // A released snapshot is gone for deploy too.
    let snap = snapshot_of(&d, &["watch"])?;
    d.snap_release(snap).map_err(e("release"))?;
    check(stub_errno(&d, snap, || {}) == libc::ENOENT, || "deploy of released snapshot".into())?;
    // Capturing a freeze that is still armed (not frozen) is EAGAIN.
    let t = Target::spawn(&["watch"])?;
    let id = d.arm(t.pid(), FreezePoint::Write { addr: t.doorbell, len: 8 }).map_err(e("ARM"))?;
    check(d.capture(id).err() == Some(Errno::EAGAIN), || "capture while armed".into())?;
    check(d.wait(id, 50).err() == Some(Errno::ETIMEDOUT), || "wait timeout".into())?;
    d.release(id, true).map_err(e("KILL"))?;
    t.wait();
    Ok(())
}

fn double_arm() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let d2 = dev()?;
    let t = Target::spawn(&["watch"])?;
    let id = d.arm(t.pid(), FreezePoint::Write { addr: t.doorbell, len: 8 }).map_err(e("ARM"))?;
    check(d.arm(t.pid(), FreezePoint::Exec(t.func)).err() == Some(Errno::EBUSY), || "second arm same fd".into())?;
    check(d2.arm(t.pid(), FreezePoint::Now).err() == Some(Errno::EBUSY), || "second arm other fd".into())?;
    d.release(id, true).map_err(e("KILL"))?;
    t.wait();
    check(d.arm(std::process::id() as i32, FreezePoint::Now).err() == Some(Errno::EINVAL), || "arming oneself".into())
}

fn unprivileged() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let t = Target::spawn(&["watch"])?;
    let pid = t.pid();
    // The device fd is passed down (opened as root); the caller then drops to nobody.
    let fd = d.raw_fd();
    // SAFETY: single-threaded fork; the child makes syscalls and exits.
    let code = match unsafe { libc::fork() } {
        0 => {
            become_nobody();
            // SAFETY: `fd` is the open /dev/seuss inherited through fork; this child owns its copy.
            let dev = Device::from_fd(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            let r = dev.arm(pid, FreezePoint::Now);
            // SAFETY: leave the child.
            unsafe { libc::_exit(r.err().map(|e| e as i32).unwrap_or(0)) }
        }
        p => wait_pid(p),
    };
    check(code == libc::EPERM, || format!("arm as nobody: errno {code}"))?;
    let (t2, id) = frozen_target(&d, &["watch"])?;
    let snap = d.capture(id).map_err(e("CAPTURE"))?;
    d.release(id, true).map_err(e("KILL"))?;
    t2.wait();
    check(stub_errno(&d, snap, become_nobody) == libc::EPERM, || "deploy of root's snapshot as nobody".into())?;
    sigkill(pid);
    t.wait();
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))
}

fn shared_anon() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let before = d.stats().map_err(e("STATS"))?;
    let (mut t, id) = frozen_target(&d, &["shared"])?;
    let r = d.capture(id);
    // The refused task is still frozen and can run on.
    d.release(id, false).map_err(e("RESUME"))?;
    t.send("check")?;
    let l = t.line()?;
    check(t.wait() == REPORT_OK, || format!("source after refusal: {l}"))?;
    check(r.err() == Some(Errno::EOPNOTSUPP), || format!("capture with MAP_SHARED|MAP_ANONYMOUS: {r:?}"))?;
    let after = d.stats().map_err(e("STATS"))?;
    check(after.snapshots == before.snapshots && after.pages_held == before.pages_held, || format!("{before:?} -> {after:?}"))
}

fn kill_frozen() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let (t, id) = frozen_target(&d, &["watch"])?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(t.pid()), nix::sys::signal::Signal::SIGKILL).map_err(e("kill"))?;
    let code = t.wait();
    check(code == 128 + libc::SIGKILL, || format!("exit {code}"))?;
    check(d.wait(id, 1000).map_err(e("WAIT"))? == FreezeState::Dead, || "state not Dead".into())?;
    check(d.capture(id).err() == Some(Errno::ESRCH), || "capture of a dead task".into())?;
    d.release(id, false).map_err(e("release"))
}

fn exit_before_capture() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let before = d.stats().map_err(e("STATS"))?;
    let (t, id) = frozen_target(&d, &["watch"])?;
    // Kill and capture at once: either the capture wins (a valid snapshot) or it sees the task dead.
    let pid = t.pid();
    let killer = std::thread::spawn(move || {
        sigkill(pid);
    });
    let r = d.capture(id);
    killer.join().unwrap();
    t.wait();
    match r {
        Ok(snap) => {
            deploy_and_check(&d, snap)?;
            d.snap_release(snap).map_err(e("release"))?;
        }
        Err(x) => check(x == Errno::ESRCH, || format!("capture racing a kill: {x}"))?,
    }
    d.release(id, false).map_err(e("release freeze"))?;
    let after = d.stats().map_err(e("STATS"))?;
    check(after.snapshots == before.snapshots && after.pages_held == before.pages_held && after.frozen == before.frozen, || format!("stats {before:?} -> {after:?}"))
}

fn close_fd() -> Result<(), String> {
    ensure_loaded()?;
    // Frozen, then the controlling fd closes: the task runs on.
    let d = dev()?;
    let (mut t, _id) = frozen_target(&d, &["watch"])?;
    drop(d);
    t.send("check")?;
    let l = t.line()?;
    let pid = t.pid();
    report_ok(&l, pid)?;
    check(t.wait() == REPORT_OK, || "frozen source did not resume after close".into())?;
    // Armed but not fired, then closed: no freeze ever happens.
    let d = dev()?;
    let mut t = Target::spawn(&["watch"])?;
    d.arm(t.pid(), FreezePoint::Write { addr: t.doorbell, len: 8 }).map_err(e("ARM"))?;
    drop(d);
    t.send("go")?;
    t.send("check")?;
    let l = t.line()?;
    let pid = t.pid();
    report_ok(&l, pid)?;
    check(t.wait() == REPORT_OK, || "armed target did not run through".into())?;
    let s = dev()?.stats().map_err(e("STATS"))?;
    check(s.frozen == 0, || format!("frozen count {} after close", s.frozen))
}

fn page_cap() -> Result<(), String> {
    ensure_loaded()?;
    let p = "/sys/module/seuss/parameters/max_pages";
    let old = std::fs::read_to_string(p).map_err(|x| format!("{p}: {x}"))?;
    let d = dev()?;
    let (t, id) = frozen_target(&d, &["watch"])?;
    std::fs::write(p, "10").map_err(|x| x.to_string())?;
    let r = d.capture(id);
    std::fs::write(p, old.trim()).map_err(|x| x.to_string())?;
    check(r.err() == Some(Errno::ENOSPC), || format!("capture over cap: {r:?}"))?;
    let snap = d.capture(id).map_err(e("CAPTURE under cap"))?;
    d.release(id, true).map_err(e("KILL"))?;
    t.wait();
    d.snap_release(snap).map_err(e("release"))
}

fn cycles1000() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let snap = snapshot_of(&d, &["watch"])?;
    let before = d.stats().map_err(e("STATS"))?;
    for i in 0..1000 {
        let mut s = fork_deploy(&d, snap, DeployOpts::default(), || {});
        s.send("check")?;
        let code = s.wait();
        check(code == REPORT_OK, || format!("cycle {i}: exit {code}"))?;
    }
    let after = d.stats().map_err(e("STATS"))?;
    check(after.deploys == before.deploys + 1000, || format!("deploys {} -> {}", before.deploys, after.deploys))?;
    check(after.instances == before.instances && after.pages_held == before.pages_held && after.snapshots == before.snapshots,
        || format!("counters moved: {before:?} -> {after:?}"))?;
    d.snap_release(snap).map_err(e("release"))?;
    let end = d.stats().map_err(e("STATS"))?;
    check(end.snapshots + 1 == after.snapshots && end.pages_held < after.pages_held, || format!("after release {end:?}"))
}

fn rmmod_frees() -> Result<(), String> {
    ensure_loaded()?;
    {
        let d = dev()?;
        let (t, id) = frozen_target(&d, &["watch"])?;
        d.capture(id).map_err(e("CAPTURE"))?;
        d.release(id, true).map_err(e("KILL"))?;
        t.wait();
    }
    sh("rmmod", &["seuss"])?;
    check(!loaded(), || "still loaded".into())?;
    sh("insmod", &[&ko_path()?])?;
    wait_dev()?;
    let s = dev()?.stats().map_err(e("STATS"))?;
    check(s.snapshots == 0 && s.pages_held == 0, || format!("fresh module stats {s:?}"))
}
