//! Races and the remaining fault cases of issue 10: SNAP_RELEASE racing DEPLOY of the same snapshot,
//! RESUME racing CAPTURE on one freeze from two controller threads, rmmod while a task is parked and while
//! instances live, a target that exits or execs while armed, freeze-now racing execve, and each refusal
//! (io_uring in a stub and in a target, hugetlb, device and shared mappings, 32-bit tasks).
//!
//! The two races run up to `SEUSS_RACE_ROUNDS` rounds (default 10,000) within `SEUSS_RACE_SECS` seconds
//! (default 150; TCG with KASAN is slow) and print how many they did. scripts/test.sh gives them 30 s on
//! the debug kernel and their 10,000 rounds on the test kernel (`seuss_test races race_`). Every wait is
//! bounded; every case ends with STATS back at its baseline.

use std::ffi::CString;
use std::fs::File;
use std::io::{BufReader, Write};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::fault_cases::{child_report, deploy_ok, frozen_target, resume_and_report, snapshot_of, STEP_MS};
use crate::ktap::{check, Case};
use crate::util::*;
use nix::errno::Errno;
use uapi::{DeployOpts, Device, FreezePoint, FreezeState};

pub const CASES: &[Case] = &[
    Case { name: "race_snap_release_vs_deploy_same_snapshot", run: release_vs_deploy },
    Case { name: "race_resume_vs_capture_two_controller_threads", run: resume_vs_capture },
    Case { name: "rmmod_while_parked_is_refused_and_task_stays_parked", run: rmmod_parked },
    Case { name: "rmmod_with_live_instances_succeeds_instances_run_on", run: rmmod_instances },
    Case { name: "target_exits_while_armed_wait_reports_dead_promptly", run: exit_armed },
    Case { name: "target_execs_while_armed_wait_reports_dead_promptly", run: exec_armed },
    Case { name: "freeze_now_racing_execve_never_parks_the_new_image", run: now_vs_exec },
    Case { name: "refuse_deploy_from_stub_holding_io_uring", run: uring_stub },
    Case { name: "refuse_capture_of_target_holding_io_uring", run: uring_target },
    Case { name: "refuse_capture_of_hugetlb_mappings", run: hugetlb },
    Case { name: "refuse_capture_of_device_and_shared_mappings", run: devmap },
    Case { name: "refuse_32bit_target_and_32bit_deploy", run: compat32 },
    Case { name: "stats_exact_once_instance_of_released_snapshot_exits", run: stats_after_released_instance },
];

/// An address no target executes: an execute breakpoint there keeps a freeze ARMED.
const NEVER: u64 = 0x1000;

/// (rounds, seconds) budget of the races.
fn budget() -> (u64, u64) {
    let get = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    (get("SEUSS_RACE_ROUNDS", 10_000), get("SEUSS_RACE_SECS", 150))
}

/// xorshift64*: the races' interleaving choices (seed printed).
struct Rng(u64);
impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("SEUSS_RACE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
        });
        println!("# race seed {seed} (SEUSS_RACE_SEED reproduces the choices, not the timing)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn spin(n: u64) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}

// ---- the races' tiny processes ----
//
// Under TCG with KASAN a Rust process costs ~0.5 s per capture + deploy + exit; these two static x86-64
// programs (no libc; a handful of pages) make a round of the races cheap. Assembled from (GNU as, Intel
// syntax; everything position-independent in one RWX segment):
//
// Both first close_range(3, ~0, 0): descriptors a test harness leaks must not shift their fd numbers.
// RACE_SOURCE: pipe(fds) (fds 3, 4); read(3, buf, 1) (blocks forever on its own pipe: the freeze-now
//   point); then write(1, "D\n", 2); exit(42). A deployed child restarts the read on the *stub's* fd 3,
//   the "after" file, so it answers "D" at once and exits 42.
//     mov eax,436; mov edi,3; mov esi,-1; xor edx,edx; syscall; mov eax,22; lea rdi,[rip+fds]; syscall; xor eax,eax; mov edi,3; lea rsi,[rip+buf]; mov edx,1;
//     syscall; mov eax,1; mov edi,1; lea rsi,[rip+msg]; mov edx,2; syscall; mov eax,60; mov edi,42;
//     syscall; msg: "D\n"; fds: .quad 0; buf: .quad 0
// RACE_STUB: (close_range as above) fd 3 = open(AFTER_PATH), fd 4 = open("/dev/seuss", O_RDWR); loop { read(0, &arg.snap_id,
//   8) != 8 -> exit(0); ioctl(4, SEUSS_IOC_DEPLOY, &arg); write(1, {'E', -ret, '\n'}, 3) }.
//     1: xor eax,eax; xor edi,edi; lea rsi,[rip+arg+8]; mov edx,8; syscall; cmp rax,8; jne 2f;
//     mov eax,16; mov edi,4; mov esi,0x4028e505; lea rdx,[rip+arg]; syscall; neg eax;
//     mov [rip+rep+1],al; mov eax,1; mov edi,1; lea rsi,[rip+rep]; mov edx,3; syscall; jmp 1b;
//     2: mov eax,60; xor edi,edi; syscall; .balign 8; arg: .long 40,0; .quad 0,0,0,0; rep: "E?\n";
//     after: .asciz "/tmp/seuss_race_after"; dev: .asciz "/dev/seuss"
const RACE_SOURCE: &[u8] = &[
    0xb8, 0xb4, 0x01, 0x00, 0x00, 0xbf, 0x03, 0x00, 0x00, 0x00, 0xbe, 0xff, 0xff, 0xff, 0xff, 0x31, 0xd2, 0x0f, 0x05,
    0xb8, 0x16, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x3d, 0x3d, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x31, 0xc0, 0xbf, 0x03, 0x00,
    0x00, 0x00, 0x48, 0x8d, 0x35, 0x35, 0x00, 0x00, 0x00, 0xba, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x01, 0x00,
    0x00, 0x00, 0xbf, 0x01, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x35, 0x13, 0x00, 0x00, 0x00, 0xba, 0x02, 0x00, 0x00, 0x00,
    0x0f, 0x05, 0xb8, 0x3c, 0x00, 0x00, 0x00, 0xbf, 0x2a, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x44, 0x0a, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];
const RACE_STUB: &[u8] = &[
    0xb8, 0xb4, 0x01, 0x00, 0x00, 0xbf, 0x03, 0x00, 0x00, 0x00, 0xbe, 0xff, 0xff, 0xff, 0xff, 0x31, 0xd2, 0x0f, 0x05,
    0xb8, 0x02, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x3d, 0xa4, 0x00, 0x00, 0x00, 0x31, 0xf6, 0x31, 0xd2, 0x0f, 0x05, 0xb8,
    0x02, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x3d, 0xa8, 0x00, 0x00, 0x00, 0xbe, 0x02, 0x00, 0x00, 0x00, 0x31, 0xd2, 0x0f,
    0x05, 0x31, 0xc0, 0x31, 0xff, 0x48, 0x8d, 0x35, 0x5b, 0x00, 0x00, 0x00, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05,
    0x48, 0x83, 0xf8, 0x08, 0x75, 0x3a, 0xb8, 0x10, 0x00, 0x00, 0x00, 0xbf, 0x04, 0x00, 0x00, 0x00, 0xbe, 0x05, 0xe5,
    0x28, 0x40, 0x48, 0x8d, 0x15, 0x30, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xf7, 0xd8, 0x88, 0x05, 0x4f, 0x00, 0x00, 0x00,
    0xb8, 0x01, 0x00, 0x00, 0x00, 0xbf, 0x01, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x35, 0x3d, 0x00, 0x00, 0x00, 0xba, 0x03,
    0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xae, 0xb8, 0x3c, 0x00, 0x00, 0x00, 0x31, 0xff, 0x0f, 0x05, 0x0f, 0x1f, 0x00,
    0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x45, 0x3f, 0x0a, 0x2f, 0x74, 0x6d, 0x70, 0x2f, 0x73, 0x65, 0x75, 0x73, 0x73, 0x5f, 0x72, 0x61, 0x63,
    0x65, 0x5f, 0x61, 0x66, 0x74, 0x65, 0x72, 0x00, 0x2f, 0x64, 0x65, 0x76, 0x2f, 0x73, 0x65, 0x75, 0x73, 0x73, 0x00,
];
/// The file RACE_STUB opens as fd 3 (its path is in the stub's code).
const AFTER_PATH: &str = "/tmp/seuss_race_after";

/// A minimal static x86-64 ELF executable: one RWX PT_LOAD at 0x400000 holding `code`, entered at its start.
fn elf64(code: &[u8]) -> Vec<u8> {
    let base: u64 = 0x40_0000;
    let hdr = 64 + 56;
    let total = (hdr + code.len()) as u64;
    let mut v: Vec<u8> = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for h in [2u16, 62] {
        v.extend(h.to_le_bytes()); // ET_EXEC, EM_X86_64
    }
    v.extend(1u32.to_le_bytes());
    for w in [base + hdr as u64, 64, 0] {
        v.extend(w.to_le_bytes()); // entry, phoff, shoff
    }
    v.extend(0u32.to_le_bytes()); // flags
    for h in [64u16, 56, 1, 64, 0, 0] {
        v.extend(h.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    v.extend(1u32.to_le_bytes()); // PT_LOAD
    v.extend(7u32.to_le_bytes()); // RWX
    for w in [0u64, base, base, total, total, 0x1000] {
        v.extend(w.to_le_bytes()); // offset, vaddr, paddr, filesz, memsz, align
    }
    v.extend_from_slice(code);
    v
}

/// Writes the two race programs (and the stub's "after" file); returns (source path, stub path).
fn race_programs() -> Result<(String, String), String> {
    std::fs::write(AFTER_PATH, "a\n").map_err(|x| format!("{AFTER_PATH}: {x}"))?;
    let stub = write_exe("seuss_race_stub", &elf64(RACE_STUB), None)?;
    let src = write_exe("seuss_race_source", &elf64(RACE_SOURCE), Some(&stub))?;
    Ok((src, stub))
}

/// A running RACE_SOURCE (stdin, stdout null), waited for until it blocks in its read.
fn spawn_race_source(path: &str) -> Result<std::process::Child, String> {
    let c = std::process::Command::new(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|x| format!("spawn {path}: {x}"))?;
    let mut c = c;
    if let Err(x) = wait_pipe_read(c.id() as i32, STEP_MS) {
        let _ = c.kill();
        let _ = c.wait();
        return Err(x);
    }
    Ok(c)
}

/// A running RACE_STUB with pipes to its stdin (snapshot ids) and stdout (answers).
struct PoolStub {
    child: std::process::Child,
    cmd: std::process::ChildStdin,
    out: BufReader<std::process::ChildStdout>,
}

fn spawn_pool_stub(path: &str) -> Result<PoolStub, String> {
    let mut child = std::process::Command::new(path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|x| format!("spawn {path}: {x}"))?;
    let cmd = child.stdin.take().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    Ok(PoolStub { child, cmd, out })
}

/// What a pool stub did with a snapshot id.
enum Deployed {
    /// Deployed; the child answered and exited 42.
    Ran,
    /// DEPLOY failed with this errno; the stub waits for the next id.
    Refused(i32),
}

impl PoolStub {
    fn deploy(&mut self, snap: u64) -> Result<(), String> {
        self.cmd.write_all(&snap.to_ne_bytes()).map_err(e("stub command"))
    }

    /// The answer to the last `deploy`; a stub that ran is used up (reaped here).
    fn outcome(&mut self) -> Result<Deployed, String> {
        let pid = self.child.id();
        let l = line_within(&mut self.out, STEP_MS).map_err(|x| format!("stub {pid}: {x}"))?;
        let b = l.as_bytes();
        if l == "D" {
            let st = self.child.wait().map_err(e("wait"))?;
            check(st.code() == Some(REPORT_OK), || format!("deployed child {pid}: {st:?}"))?;
            Ok(Deployed::Ran)
        } else if b.len() == 2 && b[0] == b'E' {
            Ok(Deployed::Refused(b[1] as i32))
        } else {
            Err(format!("stub {pid} said {l:?}"))
        }
    }

    fn finish(mut self) {
        drop(self.cmd);
        let _ = self.child.wait();
    }
}

fn release_vs_deploy() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let (max_rounds, secs) = budget();
    let mut rng = Rng::new();
    let (src_path, stub_path) = race_programs()?;
    // The source: parked (freeze-now) in its read for the whole case; every round captures a new
    // snapshot of it, which a stub deploys while another thread releases it.
    let base = d.stats().map_err(e("STATS"))?;
    let mut src = spawn_race_source(&src_path)?;
    let fid = d.arm(src.id() as i32, FreezePoint::Now).map_err(e("ARM now"))?;
    check(matches!(d.wait(fid, FREEZE_MS).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "source did not park".into())?;
    let (mut rounds, mut deployed, mut lost) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    let mut pool: Vec<PoolStub> = Vec::new();
    let res: Result<(), String> = std::thread::scope(|sc| {
        let (to_rel, rel_rx) = mpsc::channel::<(u64, u64)>();
        let (rel_tx, from_rel) = mpsc::channel::<nix::Result<()>>();
        let dr = &d;
        sc.spawn(move || {
            for (snap, delay) in rel_rx {
                spin(delay);
                if rel_tx.send(dr.snap_release(snap)).is_err() {
                    break;
                }
            }
        });
        let r = (|| -> Result<(), String> {
            while rounds < max_rounds && t0.elapsed() < Duration::from_secs(secs) {
                let snap = d.capture(fid).map_err(|x| format!("round {rounds}: CAPTURE: {x}"))?;
                while pool.len() < 4 {
                    pool.push(spawn_pool_stub(&stub_path)?);
                }
                let mut s = pool.pop().unwrap();
                let delay = rng.below(20_000);
                if rng.below(2) == 0 {
                    s.deploy(snap)?;
                    to_rel.send((snap, delay)).unwrap();
                } else {
                    to_rel.send((snap, delay)).unwrap();
                    spin(rng.below(20_000));
                    s.deploy(snap)?;
                }
                let rel = from_rel.recv().map_err(e("releaser thread"))?;
                check(rel.is_ok(), || format!("round {rounds}: SNAP_RELEASE racing a DEPLOY: {rel:?}"))?;
                match s.outcome().map_err(|x| format!("round {rounds}: {x}"))? {
                    Deployed::Ran => deployed += 1,
                    Deployed::Refused(libc::ENOENT) => {
                        lost += 1;
                        pool.push(s);
                    }
                    Deployed::Refused(x) => {
                        s.finish();
                        return Err(format!("round {rounds}: DEPLOY racing SNAP_RELEASE: errno {x}, want ENOENT or success"));
                    }
                }
                rounds += 1;
            }
            Ok(())
        })();
        drop(to_rel);
        r
    });
    for s in pool.drain(..) {
        s.finish();
    }
    let rel = d.release(fid, true).map_err(e("KILL source"));
    let _ = src.kill();
    let _ = src.wait();
    println!(
        "# release vs deploy: {rounds} rounds in {:.1} s ({deployed} deploys won and ran from the released snapshot, {lost} got ENOENT)",
        t0.elapsed().as_secs_f64()
    );
    res?;
    rel?;
    // The engine still works after the race: a snapshot of a fresh source deploys.
    let mut src2 = spawn_race_source(&src_path)?;
    let id2 = d.arm(src2.id() as i32, FreezePoint::Now).map_err(e("ARM now"))?;
    check(matches!(d.wait(id2, FREEZE_MS).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "second source did not park".into())?;
    let snap = d.capture(id2).map_err(e("CAPTURE"))?;
    d.release(id2, true).map_err(e("KILL"))?;
    let _ = src2.wait();
    let mut s = spawn_pool_stub(&stub_path)?;
    s.deploy(snap)?;
    let out = s.outcome();
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
    check(matches!(out?, Deployed::Ran), || "deploy after the race refused".into())?;
    // Instances that exited are only forgotten lazily: one STATS call must already be exact (item 12).
    stats_back_to(&d, &base)
}

// ---- RESUME vs CAPTURE ----

fn resume_vs_capture() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let (max_rounds, secs) = budget();
    let mut rng = Rng::new();
    let (src_path, stub_path) = race_programs()?;
    let base = d.stats().map_err(e("STATS"))?;
    let mut t = spawn_race_source(&src_path)?;
    let pid = t.id() as i32;
    let (mut rounds, mut captured, mut frozen_first) = (0u64, 0u64, 0u64);
    let mut refused = std::collections::BTreeMap::<String, u64>::new();
    let mut checked_snapshots = 0;
    let t0 = Instant::now();
    let res: Result<(), String> = std::thread::scope(|sc| {
        let (to_cap, cap_rx) = mpsc::channel::<(u64, u64)>();
        let (cap_tx, from_cap) = mpsc::channel::<nix::Result<u64>>();
        let (to_res, res_rx) = mpsc::channel::<(u64, u64)>();
        let (res_tx, from_res) = mpsc::channel::<nix::Result<()>>();
        let dr = &d;
        sc.spawn(move || {
            for (id, delay) in cap_rx {
                spin(delay);
                if cap_tx.send(dr.capture(id)).is_err() {
                    break;
                }
            }
        });
        sc.spawn(move || {
            for (id, delay) in res_rx {
                spin(delay);
                if res_tx.send(dr.release(id, false)).is_err() {
                    break;
                }
            }
        });
        let r = (|| -> Result<(), String> {
            while rounds < max_rounds && t0.elapsed() < Duration::from_secs(secs) {
                let id = d.arm(pid, FreezePoint::Now).map_err(|x| format!("round {rounds}: ARM now: {x}"))?;
                // A quarter of the rounds race on a parked task, the rest on a freshly armed one (which
                // parks while they run, or after).
                let v = rng.below(4);
                if v == 0 {
                    let st = d.wait(id, FREEZE_MS).map_err(|x| format!("round {rounds}: WAIT: {x}"))?;
                    check(matches!(st, FreezeState::Frozen { .. }), || format!("round {rounds}: {st:?}, want Frozen (a RESUME lost earlier?)"))?;
                    frozen_first += 1;
                }
                let (dc, dr_) = match rng.below(3) {
                    0 => (0, rng.below(30_000)),
                    1 => (rng.below(30_000), 0),
                    _ => (rng.below(5_000), rng.below(5_000)),
                };
                to_cap.send((id, dc)).unwrap();
                to_res.send((id, dr_)).unwrap();
                let c = from_cap.recv().map_err(e("capture thread"))?;
                let rr = from_res.recv().map_err(e("resume thread"))?;
                check(rr.is_ok(), || format!("round {rounds}: RESUME racing CAPTURE: {rr:?}"))?;
                match c {
                    Ok(snap) => {
                        captured += 1;
                        if checked_snapshots < 5 {
                            // A capture that won the race made a good snapshot.
                            checked_snapshots += 1;
                            let mut s = spawn_pool_stub(&stub_path)?;
                            s.deploy(snap)?;
                            let out = s.outcome().map_err(|x| format!("round {rounds}: child of a racing capture: {x}"))?;
                            check(matches!(out, Deployed::Ran), || format!("round {rounds}: deploy of a racing capture refused"))?;
                        }
                        d.snap_release(snap).map_err(|x| format!("round {rounds}: SNAP_RELEASE: {x}"))?;
                    }
                    Err(x) if [Errno::ESRCH, Errno::ENOENT, Errno::EAGAIN].contains(&x) => {
                        *refused.entry(format!("{x:?}")).or_default() += 1;
                    }
                    Err(x) => return Err(format!("round {rounds}: CAPTURE racing RESUME: {x}")),
                }
                // RESUME returned 0: the task runs on, back in its read, whatever the CAPTURE did.
                wait_pipe_read(pid, STEP_MS).map_err(|x| format!("round {rounds}: task not running on after RESUME (lost resume?): {x}"))?;
                let s = d.stats().map_err(e("STATS"))?;
                check(s.frozen == base.frozen && s.snapshots == base.snapshots, || format!("round {rounds}: stats {s:?}"))?;
                rounds += 1;
            }
            Ok(())
        })();
        drop(to_cap);
        drop(to_res);
        r
    });
    let errs: Vec<String> = refused.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "# resume vs capture: {rounds} rounds in {:.1} s ({frozen_first} on a parked task): {captured} captures won, refused [{}]",
        t0.elapsed().as_secs_f64(),
        errs.join(" ")
    );
    // The target ran on after the last RESUME (checked every round); it blocks on its own pipe forever.
    let _ = t.kill();
    let _ = t.wait();
    res?;
    stats_back_to(&d, &base)
}

// ---- rmmod ----

fn reload() -> Result<(), String> {
    if !loaded() {
        sh("insmod", &[&ko_path()?])?;
    }
    wait_dev()
}

/// Unloads seuss once nothing references it any more (bounded: a freeze's task work may still be
/// finishing right after a close).
fn unload_when_free() -> Result<(), String> {
    wait_for("seuss refcnt 0", STEP_MS, || module_refcnt("seuss") == Some(0))
        .map_err(|x| format!("{x} (refcnt {:?})", module_refcnt("seuss")))?;
    delete_module("seuss").map_err(|x| format!("delete_module with refcnt 0: {x}"))?;
    check(!loaded(), || "still in /proc/modules after delete_module".into())
}

fn rmmod_parked() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let (t, id) = frozen_target(&d, &["watch"])?;
    // 6.12's delete_module answers EWOULDBLOCK (= EAGAIN) for a module in use; EBUSY is accepted too.
    let r = delete_module("seuss");
    let r8 = sh("rmmod", &["seuss"]);
    check(matches!(r, Err(Errno::EAGAIN) | Err(Errno::EBUSY)), || format!("delete_module while a task is parked: {r:?}"))?;
    check(r8.is_err() && loaded(), || "rmmod succeeded while a task is parked".into())?;
    println!("# rmmod while parked: delete_module {r:?}, refcnt {:?}", module_refcnt("seuss"));
    check(matches!(d.wait(id, 0).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "the task left its park after the refused rmmod".into())?;
    check(d.stats().map_err(e("STATS"))?.frozen == 1, || "frozen count".into())?;
    // Still controllable: capture works, the task resumes and reports.
    let snap = d.capture(id).map_err(e("CAPTURE after the refused rmmod"))?;
    resume_and_report(&d, t, id)?;
    deploy_ok(&d, snap)?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
    // Parked again, then the file is closed without a RESUME: the close releases the task, and the
    // module unloads once it is free.
    let (mut t2, id2) = frozen_target(&d, &["watch"])?;
    check(delete_module("seuss").is_err(), || "rmmod succeeded with a parked task".into())?;
    check(matches!(d.wait(id2, 0).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "second task not parked".into())?;
    drop(d);
    t2.send("check")?;
    let l = line_within(&mut t2.out, STEP_MS)?;
    let p2 = t2.pid();
    report_ok(&l, p2)?;
    check(t2.wait() == REPORT_OK, || "task released by close did not finish".into())?;
    let r = unload_when_free();
    reload()?;
    r?;
    let s = dev()?.stats().map_err(e("STATS"))?;
    check(s.snapshots == 0 && s.frozen == 0 && s.instances == 0, || format!("fresh module stats {s:?}"))
}

/// Whether process `pid` has a descriptor open on /dev/seuss.
fn holds_dev(pid: i32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| rd.flatten().any(|e| std::fs::read_link(e.path()).map(|p| p.to_string_lossy() == uapi::DEVICE_PATH).unwrap_or(false)))
        .unwrap_or(false)
}

fn rmmod_instances() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let (snap, _) = snapshot_of(&d, &["watch"])?;
    let a = fork_deploy(&d, snap, DeployOpts::default(), || {});
    let mut b = fork_deploy(&d, snap, DeployOpts::default(), || {});
    wait_pipe_read(a.pid, STEP_MS)?;
    wait_pipe_read(b.pid, STEP_MS)?;
    let held = [a.pid, b.pid].iter().filter(|p| holds_dev(**p)).count();
    drop(d);
    let r = if held > 0 {
        Err(format!("{held} deployed instances still hold /dev/seuss (contract item 1), so the module cannot unload"))
    } else {
        unload_when_free()
    };
    if r.is_err() {
        sigkill(a.pid);
        sigkill(b.pid);
        a.wait();
        b.wait();
        return r;
    }
    // With the module and its snapshot gone, the instances own their memory and run on.
    child_report(a)?;
    b.send("scribble")?;
    let l = line_within(&mut b.out, STEP_MS)?;
    check(l.starts_with("scribbled"), || format!("instance B: {l}"))?;
    b.send("check")?;
    let l = line_within(&mut b.out, STEP_MS)?;
    let code = b.wait();
    check(field(&l, "mem") == Some("false") && code == 11, || format!("instance B after scribbling: exit {code}, {l}"))?;
    reload()?;
    let s = dev()?.stats().map_err(e("STATS"))?;
    check(s.snapshots == 0 && s.instances == 0 && s.pages_held == 0, || format!("fresh module stats {s:?}"))
}

// ---- exit / exec while armed ----

/// Runs WAIT(id, 30 s) in another thread; returns its tid and a receiver of (result, when it returned).
/// Waits (bounded) until the thread sleeps in the kernel.
fn waiter<'s, 'e: 's>(sc: &'s std::thread::Scope<'s, 'e>, d: &'e Device, id: u64) -> Result<mpsc::Receiver<(nix::Result<FreezeState>, Instant)>, String> {
    let (tid_tx, tid_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    sc.spawn(move || {
        tid_tx.send(gettid()).unwrap();
        let r = d.wait(id, 30_000);
        let _ = tx.send((r, Instant::now()));
    });
    let tid = tid_rx.recv().map_err(e("waiter thread"))?;
    let me = std::process::id() as i32;
    // Asleep in WAIT (or already returned: then the receiver has it).
    let _ = wait_for("the WAIT thread to sleep", 10_000, || !matches!(wchan(me, tid).as_str(), "" | "0"));
    Ok(rx)
}

fn exit_armed() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    for how in ["exit", "sigkill", "exit, then WAIT"] {
        let mut t = Target::spawn(&["sleep"])?;
        let pid = t.pid();
        wait_pipe_read(pid, STEP_MS)?;
        let id = d.arm(pid, FreezePoint::Exec(NEVER)).map_err(e("ARM"))?;
        let r = std::thread::scope(|sc| -> Result<(), String> {
            // A WAIT already sleeping when the target exits, or (last) one issued after it exited.
            let rx = if how.contains("then") { None } else { Some(waiter(sc, &d, id)?) };
            let t1 = Instant::now();
            if how == "sigkill" {
                sigkill(pid);
            } else {
                t.send("bye")?;
            }
            let code = t.child.wait().map(|s| {
                use std::os::unix::process::ExitStatusExt;
                s.code().unwrap_or(128 + s.signal().unwrap_or(0))
            });
            check(matches!(code, Ok(1)) || matches!(code, Ok(c) if c == 128 + libc::SIGKILL), || format!("target exit {code:?}"))?;
            let (st, at) = match rx {
                Some(rx) => rx.recv_timeout(Duration::from_secs(60)).map_err(|_| "WAIT did not return within 60 s".to_string())?,
                None => (d.wait(id, 30_000), Instant::now()),
            };
            let took = at.saturating_duration_since(t1);
            println!("# {how}: WAIT returned {st:?} {:.2} s after the armed target was made to exit", took.as_secs_f64());
            check(st == Ok(FreezeState::Dead), || format!("{how}: WAIT gave {st:?}, want Dead"))?;
            check(took < Duration::from_secs(5), || format!("{how}: WAIT took {:.1} s to report the armed target dead (its timeout: 30 s)", took.as_secs_f64()))
        });
        let rel = d.release(id, false);
        sigkill(pid);
        let _ = t.child.wait();
        r?;
        check(rel.is_ok() || rel == Err(Errno::ENOENT), || format!("release of a dead freeze: {rel:?}"))?;
        stats_back_to(&d, &base)?;
    }
    Ok(())
}

/// A forked child that waits for a byte on its "go" pipe, then execs `argv`; with stdin/stdout pipes.
struct GoChild {
    pid: i32,
    go: File,
    stdin: File,
    out: BufReader<File>,
}

fn fork_exec_on_go(argv: &[&str]) -> GoChild {
    let (go_r, go_w) = pipe_pair();
    let (in_r, in_w) = pipe_pair();
    let (out_r, out_w) = pipe_pair();
    let cs: Vec<CString> = argv.iter().map(|a| CString::new(*a).unwrap()).collect();
    let mut ptrs: Vec<*const libc::c_char> = cs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let (gr, ir, ow) = (go_r.as_raw_fd(), in_r.as_raw_fd(), out_w.as_raw_fd());
    // SAFETY: raw syscalls on memory prepared before the fork, then exec or _exit.
    match unsafe { libc::fork() } {
        // SAFETY: the forked child: raw syscalls on memory prepared before the fork, then exec or _exit.
        0 => unsafe {
            let g = libc::fcntl(gr, libc::F_DUPFD_CLOEXEC, 100);
            libc::dup2(ir, 0);
            libc::dup2(ow, 1);
            let mut b = 0u8;
            if libc::read(g, &mut b as *mut u8 as *mut _, 1) != 1 {
                libc::_exit(126);
            }
            libc::execv(ptrs[0], ptrs.as_ptr());
            libc::_exit(127)
        },
        pid if pid > 0 => GoChild { pid, go: go_w, stdin: in_w, out: BufReader::new(out_r) },
        _ => panic!("fork failed"),
    }
}

fn exec_armed() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let exe = sibling("seuss_target");
    let mut c = fork_exec_on_go(&[&exe, "sleep"]);
    wait_pipe_read(c.pid, STEP_MS)?;
    let id = d.arm(c.pid, FreezePoint::Exec(NEVER)).map_err(e("ARM"))?;
    let r = std::thread::scope(|sc| -> Result<(), String> {
        let rx = waiter(sc, &d, id)?;
        let t1 = Instant::now();
        c.go.write_all(b"g").map_err(e("go"))?;
        let l = line_within(&mut c.out, STEP_MS).map_err(|x| format!("new image: {x}"))?;
        check(l == "ready", || format!("new image said {l}"))?;
        let (st, at) = rx.recv_timeout(Duration::from_secs(60)).map_err(|_| "WAIT did not return within 60 s".to_string())?;
        let took = at.saturating_duration_since(t1);
        let now = d.wait(id, 0);
        println!("# exec while armed: WAIT returned {st:?} {:.2} s after the exec began; a query now says {now:?}", took.as_secs_f64());
        check(st == Ok(FreezeState::Dead), || format!("WAIT across execve gave {st:?}, want Dead (a query now: {now:?})"))?;
        check(took < Duration::from_secs(5), || format!("WAIT took {:.1} s to report the exec", took.as_secs_f64()))
    });
    // The task runs on in its new image.
    let ran = (|| -> Result<(), String> {
        writeln!(c.stdin, "after").map_err(e("stdin"))?;
        let l = line_within(&mut c.out, STEP_MS)?;
        check(l == format!("got after pid={}", c.pid), || format!("new image: {l}"))
    })();
    let rel = d.release(id, false);
    if ran.is_err() {
        sigkill(c.pid);
    }
    let code = wait_pid(c.pid);
    r?;
    ran?;
    check(code == REPORT_OK, || format!("new image exit {code}"))?;
    check(rel.is_ok() || rel == Err(Errno::ENOENT), || format!("release after exec: {rel:?}"))?;
    stats_back_to(&d, &base)
}

/// Executable mappings of this process (a forked child has the same ones until it execs).
fn own_exec_ranges() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            if !perms.contains('x') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
        })
        .collect()
}

fn exe_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe")).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

fn now_vs_exec() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let mut rng = Rng::new();
    let exe = sibling("seuss_target");
    let old_exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
    let old = own_exec_ranges();
    let (mut parked_old, mut gone, mut after_exec, mut refused) = (0, 0, 0, 0);
    let rounds = 24;
    for round in 0..rounds {
        let mut c = fork_exec_on_go(&[&exe, "sleep"]);
        wait_pipe_read(c.pid, STEP_MS)?;
        c.go.write_all(b"g").map_err(e("go"))?;
        spin(rng.below(200_000));
        let r = d.arm(c.pid, FreezePoint::Now);
        let post = exe_of(c.pid);
        let outcome = (|| -> Result<(), String> {
            let id = match r {
                Ok(id) => id,
                Err(x) => {
                    // Mid-exec the task may be refused (e.g. transiently multi-threaded or exiting).
                    check([Errno::ESRCH, Errno::EOPNOTSUPP, Errno::EBUSY, Errno::EAGAIN].contains(&x), || format!("round {round}: ARM now racing execve: {x}"))?;
                    refused += 1;
                    return Ok(());
                }
            };
            let st = d.wait(id, FREEZE_MS).map_err(|x| format!("round {round}: WAIT: {x}"));
            let at = exe_of(c.pid);
            let res = (|| -> Result<(), String> {
                match st? {
                    FreezeState::Frozen { ip } => {
                        if at == old_exe && old.iter().any(|(a, b)| (*a..*b).contains(&ip)) {
                            parked_old += 1;
                        } else if post == old_exe {
                            return Err(format!(
                                "round {round}: armed before the exec (exe still {post} after ARM returned) but parked in the new image {at} at ip {ip:#x}"
                            ));
                        } else {
                            after_exec += 1; // ARM itself came after the exec: a fresh freeze of the new image
                        }
                    }
                    FreezeState::Dead => gone += 1,
                    s => return Err(format!("round {round}: freeze-now racing execve ended {s:?}")),
                }
                Ok(())
            })();
            let rel = d.release(id, false);
            res?;
            check(rel.is_ok() || rel == Err(Errno::ENOENT), || format!("round {round}: release: {rel:?}"))
        })();
        // Whatever happened, the task execs and runs on in its new image.
        let ran = (|| -> Result<(), String> {
            let l = line_within(&mut c.out, STEP_MS)?;
            check(l == "ready", || format!("new image said {l}"))?;
            writeln!(c.stdin, "after").map_err(e("stdin"))?;
            let l = line_within(&mut c.out, STEP_MS)?;
            check(l == format!("got after pid={}", c.pid), || format!("new image: {l}"))
        })();
        if outcome.is_err() || ran.is_err() {
            sigkill(c.pid);
        }
        let code = wait_pid(c.pid);
        outcome?;
        ran.map_err(|x| format!("round {round}: {x}"))?;
        check(code == REPORT_OK, || format!("round {round}: new image exit {code}"))?;
        stats_back_to(&d, &base)?;
    }
    println!("# freeze-now vs execve, {rounds} rounds: {parked_old} parked in the old image, {gone} reported gone, {after_exec} armed after the exec, {refused} refused");
    Ok(())
}

// ---- refusals ----

fn io_uring_setup() -> i32 {
    let mut params = [0u32; 30]; // struct io_uring_params, 120 bytes
    // SAFETY: a valid, zeroed io_uring_params.
    let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if r < 0 {
        -std::io::Error::last_os_error().raw_os_error().unwrap_or(1)
    } else {
        r as i32
    }
}

fn uring_stub() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let (snap, _) = snapshot_of(&d, &["watch"])?;
    let s = fork_deploy(&d, snap, DeployOpts::default(), || {
        let fd = io_uring_setup();
        if fd < 0 {
            // SAFETY: leaving the forked child.
            unsafe { libc::_exit(200 + (-fd).min(50)) };
        }
    });
    let code = s.wait();
    let info = d.snap_info(snap).map_err(e("SNAP_INFO"));
    deploy_ok(&d, snap)?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
    if code >= 200 {
        return Err(format!("SKIP io_uring_setup failed in the stub: errno {}", code - 200));
    }
    check(code == 100 + libc::EOPNOTSUPP, || format!("DEPLOY from a stub holding an io_uring: stub exit {code}, want {} (EOPNOTSUPP)", 100 + libc::EOPNOTSUPP))?;
    check(info?.deployed == 0, || "the refused deploy was counted".into())?;
    stats_back_to(&d, &base)
}

/// A forked child that runs `setup` (raw syscalls only; returns 0 or an errno), reports its result as one
/// byte, then blocks reading its "go" pipe and exits with `finish()`.
struct PlainChild {
    pid: i32,
    go: File,
    status: i32,
}

fn fork_plain(setup: impl FnOnce() -> i32, finish: impl FnOnce() -> i32) -> Result<PlainChild, String> {
    let (go_r, go_w) = pipe_pair();
    let (st_r, st_w) = pipe_pair();
    let (gr, sw) = (go_r.as_raw_fd(), st_w.as_raw_fd());
    // SAFETY: the child makes raw syscalls and leaves with _exit.
    match unsafe { libc::fork() } {
        // SAFETY: the forked child: raw syscalls on memory prepared before the fork, then exec or _exit.
        0 => unsafe {
            let s = setup() as u8;
            libc::write(sw, &s as *const u8 as *const _, 1);
            let mut b = 0u8;
            libc::read(gr, &mut b as *mut u8 as *mut _, 1);
            libc::_exit(finish())
        },
        pid if pid > 0 => {
            drop(st_w);
            let mut b = [0u8; 1];
            use std::io::Read;
            let mut st_r = st_r;
            st_r.read_exact(&mut b).map_err(e("child status"))?;
            Ok(PlainChild { pid, go: go_w, status: b[0] as i32 })
        }
        _ => Err("fork failed".into()),
    }
}

impl PlainChild {
    /// Lets it finish; returns its exit status.
    fn finish(mut self) -> i32 {
        let _ = self.go.write_all(b"g");
        wait_pid(self.pid)
    }
}

/// Freezes a plain child (freeze-now in its pipe read) and returns what CAPTURE says; the child is
/// resumed afterwards and must finish with exit 0.
fn capture_plain(d: &Device, what: &str, c: PlainChild) -> Result<nix::Result<u64>, String> {
    let r = (|| -> Result<nix::Result<u64>, String> {
        wait_pipe_read(c.pid, STEP_MS)?;
        let id = d.arm(c.pid, FreezePoint::Now).map_err(|x| format!("{what}: ARM: {x}"))?;
        let st = d.wait(id, FREEZE_MS).map_err(e("WAIT"));
        let r = d.capture(id);
        d.release(id, false).map_err(e("RESUME"))?;
        check(matches!(st?, FreezeState::Frozen { .. }), || format!("{what}: not frozen"))?;
        Ok(r)
    })();
    if r.is_err() {
        sigkill(c.pid);
    }
    let code = c.finish();
    let r = r?;
    check(code == 0, || format!("{what}: the refused task exited {code} after RESUME, want 0"))?;
    Ok(r)
}

fn expect_refused(d: &Device, what: &str, r: nix::Result<u64>) -> Result<(), String> {
    if let Ok(snap) = r {
        let _ = d.snap_release(snap);
    }
    check(r == Err(Errno::EOPNOTSUPP), || format!("CAPTURE of a task with {what}: {r:?}, want EOPNOTSUPP"))
}

fn uring_target() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let c = fork_plain(|| { let fd = io_uring_setup(); if fd < 0 { -fd } else { 0 } }, || 0)?;
    if c.status != 0 {
        let s = c.status;
        c.finish();
        return Err(format!("SKIP io_uring_setup failed: errno {s}"));
    }
    let r = capture_plain(&d, "an io_uring", c)?;
    expect_refused(&d, "an io_uring", r)?;
    stats_back_to(&d, &base)
}

fn meminfo(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok()?.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.trim_start_matches(':').split_whitespace().next()).and_then(|v| v.parse().ok()))
}

fn hugetlb() -> Result<(), String> {
    const NR: &str = "/proc/sys/vm/nr_hugepages";
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let Ok(old) = std::fs::read_to_string(NR) else {
        return Err("SKIP no /proc/sys/vm/nr_hugepages: kernel without hugetlbfs, MAP_HUGETLB cannot be mapped".into());
    };
    let old: u64 = old.trim().parse().unwrap_or(0);
    std::fs::write(NR, (old + 2).to_string()).map_err(e("nr_hugepages"))?;
    let r = (|| -> Result<(), String> {
        let free = meminfo("HugePages_Free").unwrap_or(0);
        if free < 2 {
            return Err(format!("SKIP could not reserve 2 huge pages (HugePages_Free {free})"));
        }
        const LEN: usize = 2 << 20;
        for (name, flags) in [
            ("a private MAP_HUGETLB mapping", libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB),
            ("a shared MAP_HUGETLB mapping", libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB),
        ] {
            let p = std::cell::Cell::new(0usize);
            let c = fork_plain(
                || {
                    // SAFETY: a fresh mapping, touched once.
                    let m = unsafe { libc::mmap(std::ptr::null_mut(), LEN, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
                    if m == libc::MAP_FAILED {
                        return std::io::Error::last_os_error().raw_os_error().unwrap_or(1);
                    }
                    // SAFETY: inside the new mapping.
                    unsafe { *(m as *mut u8) = 0x5a };
                    p.set(m as usize);
                    0
                },
                || {
                    // SAFETY: the mapping made in setup, in this same child.
                    if unsafe { *(p.get() as *const u8) } == 0x5a { 0 } else { 9 }
                },
            )?;
            if c.status != 0 {
                let s = c.status;
                c.finish();
                return Err(format!("SKIP mmap of {name} failed: errno {s}"));
            }
            let r = capture_plain(&d, name, c)?;
            expect_refused(&d, name, r)?;
        }
        Ok(())
    })();
    let _ = std::fs::write(NR, old.to_string());
    r?;
    stats_back_to(&d, &base)
}

fn devmap() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let mem = CString::new("/dev/mem").unwrap();
    let zero = CString::new("/dev/zero").unwrap();
    // (what, path, prot, flags, write to it)
    let cases: [(&str, &CString, i32, i32, bool); 2] = [
        ("a /dev/mem mapping (VM_IO | VM_PFNMAP)", &mem, libc::PROT_READ, libc::MAP_SHARED, false),
        ("a shared writable /dev/zero mapping (shmem)", &zero, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, true),
    ];
    let mut tested = 0;
    for (what, path, prot, flags, write) in cases {
        let c = fork_plain(
            || {
                // SAFETY: open and map in the child; the mapping is touched once.
                unsafe {
                    let fd = libc::open(path.as_ptr(), if write { libc::O_RDWR } else { libc::O_RDONLY });
                    if fd < 0 {
                        return *libc::__errno_location();
                    }
                    let m = libc::mmap(std::ptr::null_mut(), 4096, prot, flags, fd, 0);
                    if m == libc::MAP_FAILED {
                        return *libc::__errno_location();
                    }
                    if write {
                        *(m as *mut u8) = 1;
                    } else {
                        std::ptr::read_volatile(m as *const u8);
                    }
                    0
                }
            },
            || 0,
        )?;
        if c.status != 0 {
            println!("# {what}: could not be made in this VM (errno {}): not tested", c.status);
            c.finish();
            continue;
        }
        let r = capture_plain(&d, what, c)?;
        expect_refused(&d, what, r)?;
        tested += 1;
    }
    check(tested > 0, || "no device or shared mapping could be made".into())?;
    stats_back_to(&d, &base)
}

/// A minimal static i386 ELF executable: one RWX PT_LOAD at 0x08048000 holding `code` then `data`.
fn elf32(code: &[u8], data: &[u8]) -> Vec<u8> {
    let base: u32 = 0x0804_8000;
    let hdr = 52 + 32;
    let total = (hdr + code.len() + data.len()) as u32;
    let mut v: Vec<u8> = vec![0x7f, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for h in [2u16, 3] {
        v.extend(h.to_le_bytes()); // ET_EXEC, EM_386
    }
    for w in [1u32, base + hdr as u32, 52, 0, 0] {
        v.extend(w.to_le_bytes()); // version, entry, phoff, shoff, flags
    }
    for h in [52u16, 32, 1, 0, 0, 0] {
        v.extend(h.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    for w in [1u32, 0, base, base, total, total, 7, 0x1000] {
        v.extend(w.to_le_bytes()); // PT_LOAD, offset, vaddr, paddr, filesz, memsz, RWX, align
    }
    v.extend_from_slice(code);
    v.extend_from_slice(data);
    v
}

/// i386: read(0, esp-16, 1); exit(0).
fn elf32_reader() -> Vec<u8> {
    let code = [
        0xb8, 3, 0, 0, 0, // mov eax, 3 (read)
        0x31, 0xdb, // xor ebx, ebx
        0x8d, 0x4c, 0x24, 0xf0, // lea ecx, [esp-16]
        0xba, 1, 0, 0, 0, // mov edx, 1
        0xcd, 0x80, // int 0x80
        0xb8, 1, 0, 0, 0, // mov eax, 1 (exit)
        0x31, 0xdb, // xor ebx, ebx
        0xcd, 0x80, // int 0x80
    ];
    elf32(&code, &[])
}

/// i386: fd = open("/dev/seuss", O_RDWR); r = ioctl(fd, SEUSS_IOC_DEPLOY, &{snap}); exit(-r).
fn elf32_deployer(snap: u64) -> Vec<u8> {
    const CODE_LEN: u32 = 49 + 7; // padded to 8 so the argument is aligned
    let data_at = 0x0804_8000 + 84 + CODE_LEN;
    let arg_at = data_at;
    let path_at = data_at + 40;
    let req = uapi::request::DEPLOY as u32;
    let mut code: Vec<u8> = Vec::new();
    code.push(0xb8);
    code.extend(5u32.to_le_bytes()); // mov eax, 5 (open)
    code.push(0xbb);
    code.extend(path_at.to_le_bytes()); // mov ebx, path
    code.push(0xb9);
    code.extend(2u32.to_le_bytes()); // mov ecx, O_RDWR
    code.extend([0x31, 0xd2, 0xcd, 0x80]); // xor edx, edx; int 0x80
    code.extend([0x89, 0xc3]); // mov ebx, eax
    code.push(0xb8);
    code.extend(54u32.to_le_bytes()); // mov eax, 54 (ioctl)
    code.push(0xb9);
    code.extend(req.to_le_bytes()); // mov ecx, request
    code.push(0xba);
    code.extend(arg_at.to_le_bytes()); // mov edx, arg
    code.extend([0xcd, 0x80, 0xf7, 0xd8, 0x89, 0xc3]); // int 0x80; neg eax; mov ebx, eax
    code.push(0xb8);
    code.extend(1u32.to_le_bytes()); // mov eax, 1 (exit)
    code.extend([0xcd, 0x80]);
    assert_eq!(code.len(), 49);
    code.resize(CODE_LEN as usize, 0x90);
    let mut data = Vec::new();
    data.extend(40u32.to_le_bytes()); // size
    data.extend(0u32.to_le_bytes()); // flags
    data.extend(snap.to_le_bytes());
    data.extend([0u8; 24]); // tid_addr, cookie_addr, cookie
    data.extend(b"/dev/seuss\0");
    elf32(&code, &data)
}

/// Writes an executable through a temporary name and a rename, so a copy still running from an earlier
/// case (ETXTBSY on an in-place write) does not matter.
fn put_exe(p: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, p)
}

/// Writes an executable file in the first directory that lets it run (`probe`: it is run once, stdin
/// and stdout null, to see that it does; else it goes where `near` is).
fn write_exe(name: &str, bytes: &[u8], near: Option<&str>) -> Result<String, String> {
    if let Some(n) = near {
        let p = std::path::Path::new(n).with_file_name(name);
        put_exe(&p, bytes).map_err(|x| format!("{}: {x}", p.display()))?;
        return Ok(p.to_string_lossy().into_owned());
    }
    let mut dirs = vec![std::env::temp_dir()];
    if let Ok(o) = std::env::var("SEUSS_OUT") {
        dirs.push(o.into());
    }
    let mut why = Vec::new();
    for dir in dirs {
        let p = dir.join(name);
        if put_exe(&p, bytes).is_err() {
            continue;
        }
        match std::process::Command::new(&p).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).status() {
            Ok(_) => return Ok(p.to_string_lossy().into_owned()),
            Err(x) => why.push(format!("{}: {x}", p.display())),
        }
    }
    Err(format!("SKIP cannot run a 32-bit ELF here ({}): no CONFIG_IA32_EMULATION or noexec", why.join("; ")))
}

fn compat32() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let reader = write_exe("seuss_i386_reader", &elf32_reader(), None)?;
    let mut c = std::process::Command::new(&reader)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(e("spawn the i386 reader"))?;
    let pid = c.id() as i32;
    let r = (|| -> Result<(), String> {
        wait_pipe_read(pid, STEP_MS)?;
        let now = d.arm(pid, FreezePoint::Now);
        let bp = d.arm(pid, FreezePoint::Exec(0x0804_8000 + 84));
        for (k, r) in [("ARM now", &now), ("ARM breakpoint", &bp)] {
            if let Ok(id) = r {
                let _ = d.release(*id, false);
            }
            check(*r == Err(Errno::EOPNOTSUPP), || format!("{k} on a 32-bit task: {r:?}, want EOPNOTSUPP"))?;
        }
        Ok(())
    })();
    let _ = c.stdin.take().map(|mut s| s.write_all(b"x"));
    let st = c.wait().map_err(e("wait i386 reader"))?;
    r?;
    check(st.code() == Some(0), || format!("the refused 32-bit task exited {st:?}"))?;
    // A 32-bit process asking for a DEPLOY (compat ioctl): refused, the process unchanged.
    let (snap, _) = snapshot_of(&d, &["watch"])?;
    let deployer = write_exe("seuss_i386_deployer", &elf32_deployer(snap), Some(&reader))?;
    let st = std::process::Command::new(&deployer)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(e("run the i386 deployer"))?;
    let info = d.snap_info(snap).map_err(e("SNAP_INFO"))?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
    let _ = std::fs::remove_file(&reader);
    let _ = std::fs::remove_file(&deployer);
    println!("# 32-bit DEPLOY: the process exited {st:?} (-errno of the ioctl)");
    check(matches!(st.code(), Some(c) if c == libc::EOPNOTSUPP || c == libc::ENOTTY), || format!("32-bit DEPLOY: exit {st:?}, want EOPNOTSUPP (95) or ENOTTY (25)"))?;
    check(info.deployed == 0, || "a 32-bit DEPLOY was counted".into())?;
    stats_back_to(&d, &base)
}

/// Contract item 12 with the last reference to a snapshot held by an instance: the snapshot is released
/// while its child runs; once the child has exited, the very next STATS is back at the baseline (no
/// second call needed for a lazy prune to catch up).
fn stats_after_released_instance() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let (snap, _) = snapshot_of(&d, &["watch"])?;
    let c = fork_deploy(&d, snap, DeployOpts::default(), || {});
    wait_pipe_read(c.pid, STEP_MS)?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
    child_report(c)?;
    let first = stats_back_to(&d, &base);
    let second = stats_back_to(&d, &base);
    check(second.is_ok(), || format!("STATS never came back: {second:?}"))?;
    first.map_err(|x| format!("first STATS after the instance exited: {x} (a second call was exact: a lazy prune ran after the counters were read)"))
}
