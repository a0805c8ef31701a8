//! One worker thread ("actor"): a seeded loop of operations on /dev/seuss. Most operations are cheap
//! calls of a random ioctl with at most one fault in its argument (see `cheap.rs`); a smaller share
//! (`--heavy` per mille) drive real processes through arm, wait, capture, resume, kill, deploy and
//! release (`targets.rs`, `deploys.rs`), race them against each other and close descriptors under them
//! (`races.rs`). This file holds the actor's state, the calls they share, and the children's reaping.
//!
//! The actor keeps everything it created (targets, freezes, snapshots, children) and at the end
//! releases, reaps and checks all of it: every child must end with an exit code its kind explains.

use std::fs::File;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use super::arena::Arena;
use super::calls::{self, blank, bytes_of, out, Fault, Prepared};
use super::children::{self, Addrs, StubStacks};
use super::report::{self, now_ms, Event, Slot};
use super::rng::Rng;
use super::worker::{open_raw, ProcShared};
use crate::Cfg;

/// Names of the operations, for failure reports and the watchdog (index + 1 is stored in the slot).
pub const OP_NAMES: &[&str] = &[
    "cheap", "spawn", "arm", "wait", "capture", "release", "sigkill", "finish", "deploy", "deploy_bad_id",
    "deploy_refused", "snap_release", "race_resume_capture", "race_release_deploy", "close_private",
    "close_shared", "interrupt", "cleanup",
];
const OP_CHEAP: usize = 0;
const OP_CLEANUP: usize = 17;

/// Most live targets and unreaped children per actor.
pub(super) const MAX_LIVE: usize = 4;
pub(super) const MAX_PENDING: usize = 8;
/// How long a child may take to end once nothing holds it (TCG and KASAN are slow).
pub(super) const CHILD_MS: u64 = 90_000;
/// How long a freeze that must fire may take.
pub(super) const FIRE_MS: u32 = 30_000;

pub(super) const SIGKILLED: i32 = 128 + libc::SIGKILL;
pub(super) const REFUSED_ENOENT: i32 = 100 + libc::ENOENT;

/// How deployed copies of a snapshot end (exit codes), and addresses valid in it for DEPLOY's nested
/// pointers.
#[derive(Clone, Copy, Debug)]
pub struct DeployInfo {
    pub codes: &'static [i32],
    pub tidvar: u64,
    pub cookie: u64,
    /// An address mapped read-only in the snapshot.
    pub readonly: u64,
}

/// Exit codes of `seuss_target watch|exec` and their copies (report, all checks passed).
pub(super) const WATCH_CODES: &[i32] = &[42];
/// Of `seuss_target sleep` (stdin closed: 1; "after": 42).
pub(super) const SLEEP_CODES: &[i32] = &[1, 42];
/// Of a forked sleeper (exit 7, or /bin/true).
pub(super) const SLEEPER_CODES: &[i32] = &[0, children::SLEEPER_DONE];
/// Of copies of a sleeper that execs /bin/true. Freeze-now may park it inside the new image's dynamic
/// loader, between opening a library and reading or mapping it; a copy runs on with the stub's
/// descriptors (a snapshot holds no file table yet), so the loader fails: exit 127 or 1, or a signal
/// (SIGABRT, SIGSEGV) where it trusted what it could not read. Seen with seed 343124147 (127 and 1).
pub(super) const SLEEPER_EXEC_CODES: &[i32] = &[0, children::SLEEPER_DONE, 1, 127, 128 + libc::SIGABRT, 128 + libc::SIGSEGV];
/// Of `seuss_target threads`.
pub(super) const THREADS_CODES: &[i32] = &[0];

// Nested-pointer targets of a sleeper snapshot (the sleeper is a fork of this process).
pub(super) static mut SLEEPER_TID: u32 = 0;
pub(super) static mut SLEEPER_COOKIE: u64 = 0;
pub(super) static READ_ONLY_WORD: u64 = 0x5e55;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Watch,
    Exec,
    Sleep,
    Threads,
    SharedMem,
    Sleeper,
    /// A deployed instance of snapshot `snap` (a held stub); `confirmed` once DIRTY says so.
    Instance { snap: u64, confirmed: bool },
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Freeze {
    pub(super) id: u64,
    pub(super) fd: i32,
    /// On the actor's own descriptor (results can be judged strictly), not a shared slot.
    pub(super) private: bool,
    /// The freeze point will be reached (freeze-now, or a doorbell/breakpoint the target is about to hit).
    pub(super) fires: bool,
    pub(super) frozen: bool,
}

/// A live target process.
pub(super) struct Live {
    pub(super) pid: i32,
    pub(super) kind: Kind,
    pub(super) stdin: Option<File>,
    pub(super) addrs: Addrs,
    /// How a snapshot of it deploys (None: it must not be captured).
    pub(super) deploy: Option<DeployInfo>,
    /// `go` sent: it has passed (or is passing) its doorbell.
    pub(super) went: bool,
    pub(super) freeze: Option<Freeze>,
}

/// A snapshot this actor created.
pub(super) struct SnapRec {
    pub(super) id: u64,
    pub(super) deploy: Option<DeployInfo>,
    pub(super) parent: Option<u64>,
    pub(super) released: bool,
}

/// A child that should end by itself.
pub(super) struct Pending {
    pub(super) pid: i32,
    pub(super) what: String,
    pub(super) codes: Vec<i32>,
    /// Codes meaning "a deployed copy ran to its normal end".
    pub(super) ok_codes: &'static [i32],
    pub(super) deadline_ms: u64,
}

/// One worker thread's state.
pub struct Actor<'a> {
    pub(super) sh: &'a ProcShared,
    pub(super) cfg: &'a Cfg,
    pub(super) rng: Rng,
    pub(super) name: String,
    pub(super) slot: &'static Slot,
    pub(super) ops_left: u64,
    pub(super) arena: Arena,
    pub(super) stacks: StubStacks,
    /// This actor's own /dev/seuss descriptor.
    pub(super) dev: i32,
    pub(super) live: Vec<Live>,
    pub(super) snaps: Vec<SnapRec>,
    /// Freeze ids released on the current `dev`.
    pub(super) stale_freezes: Vec<u64>,
    /// Pids of children already reaped.
    pub(super) stale_pids: Vec<i32>,
    pub(super) pending: Vec<Pending>,
    pub(super) zombie: i32,
    pub(super) op_no: u64,
    pub(super) op: usize,
    /// When the current operation began (for the time-by-op summary).
    pub(super) op_started_ms: u64,
}

pub(super) fn kind_codes(k: Kind, deploy: Option<DeployInfo>) -> &'static [i32] {
    match k {
        Kind::Watch | Kind::Exec | Kind::SharedMem => WATCH_CODES,
        Kind::Sleep => SLEEP_CODES,
        Kind::Threads => THREADS_CODES,
        Kind::Sleeper => SLEEPER_CODES,
        Kind::Instance { .. } => deploy.map(|d| d.codes).unwrap_or(&[]),
    }
}

impl<'a> Actor<'a> {
    pub fn new(sh: &'a ProcShared, cfg: &'a Cfg, proc_idx: usize, thread: usize) -> Actor<'a> {
        let g = proc_idx * cfg.threads + thread;
        let n = (cfg.procs * cfg.threads) as u64;
        let ops_left = cfg.ops / n + u64::from((g as u64) < cfg.ops % n);
        Actor {
            sh,
            cfg,
            rng: Rng::for_thread(cfg.seed, proc_idx as u64, thread as u64),
            name: format!("p{proc_idx}t{thread}"),
            slot: &report::board().slots[g],
            ops_left,
            arena: Arena::new(),
            stacks: StubStacks::new(),
            dev: open_raw(),
            live: Vec::new(),
            snaps: Vec::new(),
            stale_freezes: Vec::new(),
            stale_pids: Vec::new(),
            pending: Vec::new(),
            zombie: children::fork_zombie(),
            op_no: 0,
            op: OP_CHEAP,
            op_started_ms: now_ms(),
        }
    }

    /// Pids of our live targets.
    pub(super) fn live_pids(&self) -> Vec<i32> {
        self.live.iter().map(|l| l.pid).collect()
    }

    /// Ids of our live freezes on our own descriptor.
    pub(super) fn freeze_ids(&self) -> Vec<u64> {
        self.live.iter().filter_map(|l| l.freeze.filter(|f| f.private).map(|f| f.id)).collect()
    }

    /// Our snapshots: (live, released).
    pub(super) fn snap_ids(&self) -> (Vec<u64>, Vec<u64>) {
        let live = self.snaps.iter().filter(|s| !s.released).map(|s| s.id).collect();
        let stale = self.snaps.iter().filter(|s| s.released).map(|s| s.id).collect();
        (live, stale)
    }

    /// Takes responsibility for releasing a snapshot that should not exist.
    pub(super) fn adopt_snapshot(&mut self, id: u64) {
        self.snaps.push(SnapRec { id, deploy: None, parent: None, released: false });
    }

    /// Runs the operations, then cleans up.
    pub fn run(mut self) {
        let b = report::board();
        // SAFETY: gettid has no preconditions.
        self.slot.tid.store(unsafe { libc::syscall(libc::SYS_gettid) } as u32, SeqCst);
        loop {
            let soak = b.soak_until_ms.load(Relaxed);
            let more = if soak != 0 { now_ms() < soak } else { self.ops_left > 0 };
            if !more || b.stop.load(Relaxed) != 0 {
                break;
            }
            self.ops_left = self.ops_left.saturating_sub(1);
            self.op_no += 1;
            if self.rng.chance(self.cfg.heavy) {
                self.heavy_op();
            } else {
                self.begin(OP_CHEAP);
                self.cheap_op();
            }
            self.slot.done.fetch_add(1, Relaxed);
            b.ops.fetch_add(1, Relaxed);
        }
        self.begin(OP_CLEANUP);
        self.cleanup();
        self.begin(OP_CLEANUP); // counts the cleanup's time
        self.slot.op.store(0, SeqCst);
    }

    pub(super) fn begin(&mut self, op: usize) {
        let now = now_ms();
        report::timed(self.op, now.saturating_sub(self.op_started_ms));
        self.op_started_ms = now;
        self.op = op;
        self.slot.since_ms.store(now, SeqCst);
        self.slot.op.store(op as u32 + 1, SeqCst);
    }

    /// Records a failure of the current operation (its class: the operation and the message's words
    /// without numbers).
    pub(super) fn fail(&self, what: &str) {
        let words: Vec<&str> = what
            .split_whitespace()
            .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
            .take(8)
            .collect();
        let class = format!("{} {}", OP_NAMES[self.op], words.join(" "));
        self.fail_as(&class, what);
    }

    /// Records a failure of the current operation in class `class`.
    pub(super) fn fail_as(&self, class: &str, what: &str) {
        report::fail(class, &format!("{} op#{} {}", self.name, self.op_no, OP_NAMES[self.op]), what);
    }

    /// A legal oddity (or nothing) for a lifecycle call: these must not change its outcome.
    pub(super) fn legal_fault(&mut self, spec: usize) -> Fault {
        let ks = calls::SPECS[spec].size as u64;
        match self.rng.below(10) {
            0 => Fault::Misaligned(self.rng.range(1, 7) as usize),
            1 => Fault::FlushEnd,
            2 => Fault::TailZero(self.rng.range(1, 4096 - ks) as u32),
            3 => Fault::OutGarbage,
            _ => Fault::None,
        }
    }

    /// Issues a prepared call on `fd`, counts it and judges it; returns the result.
    pub(super) fn issue(&mut self, fd: i32, p: &Prepared, exact: bool, signalled: bool) -> Result<i64, i32> {
        let r = calls::ioctl(fd, p.req, p.addr);
        report::tally(r.map(|_| ()));
        if let Some(problem) = calls::verdict(&self.arena, p, r, signalled, exact) {
            let class = format!("{} {} {}: {}", OP_NAMES[self.op], calls::SPECS[p.spec].name, p.fault.kind(), problem.split(',').next().unwrap_or(""));
            self.fail_as(&class, &format!("{} on fd {fd}: {problem}", p.describe()));
        }
        r
    }

    /// A plain lifecycle call of `spec` with payload `v` (a legal oddity applied); returns the result and
    /// the struct as the kernel left it.
    pub(super) fn call<T: Copy>(&mut self, fd: i32, private: bool, spec: usize, v: &T) -> (Result<i64, i32>, Option<T>) {
        let fault = self.legal_fault(spec);
        self.call_with(fd, private, spec, v, fault, false)
    }

    pub(super) fn call_with<T: Copy>(&mut self, fd: i32, private: bool, spec: usize, v: &T, fault: Fault, signalled: bool) -> (Result<i64, i32>, Option<T>) {
        let p = calls::prepare(&mut self.arena, spec, &bytes_of(v), fault);
        let r = self.issue(fd, &p, private, signalled);
        (r, out::<T>(&self.arena, &p))
    }

    pub(super) fn resume(&mut self, fd: i32, private: bool, id: u64, kill: bool) -> Result<i64, i32> {
        let mut a: uapi::seuss_release_task = blank();
        a.freeze_id = id;
        a.flags = if kill { uapi::SEUSS_RELEASE_KILL } else { 0 };
        let r = self.call(fd, private, calls::RESUME, &a).0;
        if r.is_ok() && private {
            self.stale_freezes.push(id);
        }
        r
    }

    pub(super) fn wait(&mut self, fd: i32, private: bool, id: u64, timeout_ms: u32) -> Result<uapi::seuss_wait, i32> {
        let mut a: uapi::seuss_wait = blank();
        a.freeze_id = id;
        a.timeout_ms = timeout_ms;
        let (r, o) = self.call(fd, private, calls::WAIT, &a);
        r.map(|_| o.unwrap_or(a))
    }

    pub(super) fn capture(&mut self, fd: i32, private: bool, id: u64, fault: Fault, signalled: bool) -> Result<u64, i32> {
        let mut a: uapi::seuss_capture = blank();
        a.freeze_id = id;
        let (r, o) = self.call_with(fd, private, calls::CAPTURE, &a, fault, signalled);
        r.map(|_| o.map(|o| o.snap_id).unwrap_or(0))
    }

    pub(super) fn snap_release(&mut self, id: u64) -> Result<i64, i32> {
        let mut a: uapi::seuss_snap_release = blank();
        a.snap_id = id;
        let dev = self.dev;
        self.call(dev, true, calls::SNAP_RELEASE, &a).0
    }

    pub(super) fn snap_info(&mut self, id: u64) -> Result<uapi::seuss_snap_info, i32> {
        let mut a: uapi::seuss_snap_info = blank();
        a.snap_id = id;
        let dev = self.dev;
        let (r, o) = self.call(dev, true, calls::SNAP_INFO, &a);
        r.map(|_| o.unwrap_or(a))
    }

    pub(super) fn dirty(&mut self, pid: i32) -> Result<uapi::seuss_dirty, i32> {
        let mut a: uapi::seuss_dirty = blank();
        a.pid = pid;
        let dev = self.dev;
        let (r, o) = self.call(dev, true, calls::DIRTY, &a);
        r.map(|_| o.unwrap_or(a))
    }

    /// A device descriptor for a lifecycle call: mostly our own, sometimes a shared slot.
    pub(super) fn pick_dev(&mut self) -> (i32, bool) {
        if self.rng.chance(200) {
            let i = self.rng.below(2) as usize;
            let fd = self.sh.slots[i].load(SeqCst);
            if fd >= 0 {
                return (fd, false);
            }
        }
        (self.dev, true)
    }

    pub(super) fn pick_live(&mut self, pred: impl Fn(&Live) -> bool) -> Option<usize> {
        let idx: Vec<usize> = (0..self.live.len()).filter(|i| pred(&self.live[*i])).collect();
        if idx.is_empty() { None } else { Some(idx[self.rng.below(idx.len() as u64) as usize]) }
    }

    pub(super) fn deployable(&self) -> Vec<(u64, DeployInfo)> {
        self.snaps.iter().filter(|s| !s.released).filter_map(|s| s.deploy.map(|d| (s.id, d))).collect()
    }

    /// A snapshot to deploy: one of ours, or sometimes one another thread of this process offers.
    pub(super) fn pick_deployable(&mut self) -> Option<(u64, DeployInfo)> {
        if self.rng.chance(250) {
            let board = self.sh.board.lock().unwrap().clone();
            if !board.is_empty() {
                return Some(board[self.rng.below(board.len() as u64) as usize]);
            }
        }
        let d = self.deployable();
        if d.is_empty() { None } else { Some(d[self.rng.below(d.len() as u64) as usize]) }
    }

    pub(super) fn heavy_op(&mut self) {
        self.reap_pending(false);
        let has = |f: &dyn Fn(&Live) -> bool| self.live.iter().any(f);
        let unarmed = has(&|l| l.freeze.is_none());
        let armed = has(&|l| l.freeze.is_some());
        let frozen = has(&|l| l.freeze.is_some_and(|f| f.frozen));
        let frozen_private = has(&|l| l.freeze.is_some_and(|f| f.frozen && f.private));
        let deployable = !self.deployable().is_empty();
        let live_snaps = self.snaps.iter().filter(|s| !s.released).count();
        let any_live = !self.live.is_empty();
        let w = |c: bool, n: u32| if c { n } else { 0 };
        let weights = [
            0,
            w(self.live.len() < MAX_LIVE, 20),
            w(unarmed, 22),
            w(armed, 16),
            if frozen { 16 } else { w(armed, 2) },
            w(armed, 8),
            w(any_live, 4),
            w(any_live, 6),
            w(deployable, 20),
            3,
            w(deployable, 6),
            w(live_snaps > 0, if live_snaps > 3 { 20 } else { 4 }),
            w(frozen_private, 4),
            w(deployable, 3),
            w(armed, 2),
            2,
            w(armed, 3),
        ];
        let op = self.rng.weighted(&weights);
        self.begin(op);
        match op {
            1 => self.act_spawn(),
            2 => self.act_arm(),
            3 => self.act_wait(),
            4 => self.act_capture(),
            5 => self.act_release(),
            6 => self.act_sigkill(),
            7 => self.act_finish(),
            8 => self.act_deploy(),
            9 => self.act_deploy_bad_id(),
            10 => self.act_deploy_refused(),
            11 => self.act_snap_release(),
            12 => self.act_race_resume_capture(),
            13 => self.act_race_release_deploy(),
            14 => self.act_close_private(),
            15 => self.act_close_shared(),
            _ => self.act_interrupt(),
        }
    }

    pub(super) fn pend(&mut self, pid: i32, what: String, codes: Vec<i32>, ok_codes: &'static [i32]) {
        let what = format!("{what} [from op#{} {}]", self.op_no, OP_NAMES[self.op]);
        self.pending.push(Pending { pid, what, codes, ok_codes, deadline_ms: now_ms() + CHILD_MS });
        while self.pending.len() > MAX_PENDING {
            let p = self.pending.remove(0);
            self.reap_one(p, true);
        }
    }

    pub(super) fn reap_pending(&mut self, block: bool) {
        let all = std::mem::take(&mut self.pending);
        for p in all {
            if let Some(p) = self.reap_one(p, block) {
                self.pending.push(p);
            }
        }
    }

    /// Reaps one pending child (waiting for it if `block`); returns it if it is still running.
    pub(super) fn reap_one(&mut self, p: Pending, block: bool) -> Option<Pending> {
        if block {
            // Waiting for a child (bounded by its deadline) is progress, not a hang of this thread.
            self.slot.since_ms.store(now_ms(), SeqCst);
        }
        let code = if block {
            children::reap_within(p.pid, p.deadline_ms.saturating_sub(now_ms()))
        } else {
            children::try_reap(p.pid)
        };
        let code = match code {
            Some(c) => c,
            None if now_ms() < p.deadline_ms => return Some(p),
            None => {
                self.fail(&format!("{} did not end within {} s: {}", p.what, CHILD_MS / 1000, children::describe_stuck(p.pid)));
                children::kill(p.pid);
                match children::reap_within(p.pid, 20_000) {
                    Some(_) => {}
                    None => self.fail(&format!("{}: still there 20 s after SIGKILL: {}", p.what, children::describe_stuck(p.pid))),
                }
                return None;
            }
        };
        self.note_reaped(p.pid);
        if p.ok_codes.contains(&code) {
            report::event(Event::DeployedChildOk);
        } else if code >= 100 && code != REFUSED_ENOENT {
            report::event(Event::StubRefused);
        }
        if code == children::STUB_NO_IO_URING {
            report::event(Event::IoUringUnavailable);
        }
        if !p.codes.contains(&code) {
            let kind: Vec<&str> = p.what.split_whitespace().take(2).collect();
            let class = format!("child {} ended with {} (want {:?})", kind.join(" "), describe_code(code), p.codes);
            self.fail_as(&class, &format!("{} ended with {}, want one of {:?}{}", p.what, describe_code(code), p.codes, if (100..240).contains(&code) { format!(" (code 100+{})", report::errno_name(code - 100)) } else { String::new() }));
        }
        None
    }

    /// Remembers a reaped child's pid (a stale pid for the pools).
    pub(super) fn note_reaped(&mut self, pid: i32) {
        self.stale_pids.push(pid);
        if self.stale_pids.len() > 16 {
            self.stale_pids.remove(0);
        }
    }

    /// Releases, reaps and checks everything this actor created.
    pub(super) fn cleanup(&mut self) {
        while !self.live.is_empty() {
            self.finish(0);
        }
        self.reap_pending(true);
        // Children before parents: the newest first, a few rounds for EBUSY from races.
        for _ in 0..20 {
            let ids: Vec<u64> = self.snaps.iter().rev().filter(|s| !s.released).map(|s| s.id).collect();
            if ids.is_empty() {
                break;
            }
            for id in ids {
                match self.snap_release(id) {
                    Ok(_) | Err(libc::ENOENT) => self.mark_released(id),
                    Err(_) => {}
                }
            }
            if self.snaps.iter().any(|s| !s.released) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        for s in self.snaps.iter().filter(|s| !s.released) {
            self.fail(&format!("snapshot {} could not be released", s.id));
        }
        if children::reap_within(self.zombie, 5000).is_none() {
            self.fail("zombie child not reaped");
        }
        // SAFETY: closing our own descriptor at the end.
        unsafe { libc::close(self.dev) };
    }
}

fn describe_code(code: i32) -> String {
    if code > 128 && code < 160 { format!("signal {}", code - 128) } else { format!("exit {code}") }
}
