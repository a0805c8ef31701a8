//! Heavy operations on target processes: start them (`seuss_target` in its modes, forked sleepers),
//! arm freeze points (breakpoint, watchpoint, freeze-now; by pid or pidfd; on our own or a shared
//! descriptor), wait, capture, resume or kill through the module, SIGKILL at random moments, and let
//! them run to their end. Each step accepts any documented answer; where the outcome is certain (a
//! killed task is DEAD, a two-thread task is armed, contract item 9) it is checked exactly.

use std::io::Write;

use super::actor::*;
use super::calls::{self, blank, Fault};
use super::children::{self, Addrs, SleeperEnd};
use super::report::{self, now_ms, Event};

impl Actor<'_> {
    pub(super) fn act_spawn(&mut self) {
        let kinds = [Kind::Watch, Kind::Exec, Kind::Sleep, Kind::Threads, Kind::SharedMem, Kind::Sleeper];
        let kind = kinds[self.rng.weighted(&[35, 15, 15, 4, 4, 27])];
        let live = match kind {
            Kind::Sleeper => {
                let ticks = self.rng.range(5, 300) as u32;
                let end = if self.rng.chance(300) { SleeperEnd::ExecTrue } else { SleeperEnd::Exit };
                let pid = match children::fork_sleeper(ticks, end) {
                    Ok(p) => p,
                    Err(e) => return self.fail(&e),
                };
                // A sleeper that execs /bin/true may be frozen after the exec (freeze-now armed after it),
                // so its snapshot's mappings are /bin/true's: our variables' addresses are known valid in it
                // only if it never execs (seed 610881566 deployed such a snapshot with our cookie: EFAULT).
                let (tid, cookie) = match end {
                    SleeperEnd::Exit => (&raw const SLEEPER_TID as u64, &raw const SLEEPER_COOKIE as u64),
                    SleeperEnd::ExecTrue => (0, 0),
                };
                let readonly = &READ_ONLY_WORD as *const u64 as u64;
                let codes = match end {
                    SleeperEnd::Exit => SLEEPER_CODES,
                    SleeperEnd::ExecTrue => SLEEPER_EXEC_CODES,
                };
                let deploy = DeployInfo { codes, tidvar: tid, cookie, readonly };
                Live { pid, kind, stdin: None, addrs: Addrs::default(), deploy: Some(deploy), went: true, freeze: None }
            }
            _ => {
                let mode = match kind {
                    Kind::Watch => "watch",
                    Kind::Exec => "exec",
                    Kind::Sleep => "sleep",
                    Kind::Threads => "threads",
                    _ => "shared",
                };
                let t = match children::spawn_target(&self.cfg.target_exe, mode) {
                    Ok(t) => t,
                    Err(e) => return self.fail(&e),
                };
                let a = t.addrs;
                let deploy = match kind {
                    Kind::Watch | Kind::Exec => Some(WATCH_CODES),
                    Kind::Sleep => Some(SLEEP_CODES),
                    _ => None,
                }
                .map(|codes| DeployInfo { codes, tidvar: a.tidvar, cookie: a.cookie, readonly: a.func });
                Live { pid: t.pid, kind, stdin: Some(t.stdin), addrs: a, deploy, went: false, freeze: None }
            }
        };
        report::event(Event::Spawned);
        self.live.push(live);
    }

    /// Arms a freeze on a live target without one.
    pub(super) fn act_arm(&mut self) {
        let Some(i) = self.pick_live(|l| l.freeze.is_none()) else { return };
        let (pid, kind, went, a) = (self.live[i].pid, self.live[i].kind, self.live[i].went, self.live[i].addrs);
        if let Kind::Instance { snap, confirmed: false } = kind {
            // Only an instance that has really been deployed is armed (not the stub before its deploy).
            match self.dirty(pid) {
                Ok(d) if d.snap_id == snap => self.live[i].kind = Kind::Instance { snap, confirmed: true },
                Ok(d) => {
                    let released = self.snaps.iter().any(|s| s.id == snap && s.released);
                    if !released {
                        self.fail(&format!("DIRTY of pid {pid}, an instance of snapshot {snap}, says snapshot {}", d.snap_id));
                    }
                    return;
                }
                Err(_) => return,
            }
        }
        let (fd, private) = self.pick_dev();
        let mut arg: uapi::seuss_arm = blank();
        arg.pid = pid;
        let now = |arg: &mut uapi::seuss_arm| arg.kind = uapi::SEUSS_ARM_NOW;
        let mut will_go = false;
        match kind {
            Kind::Watch | Kind::SharedMem | Kind::Exec if !went => {
                let r = self.rng.below(10);
                if r < 2 {
                    now(&mut arg);
                } else if (kind == Kind::Exec) == (r < 8) {
                    arg.kind = uapi::SEUSS_ARM_EXEC;
                    arg.addr = a.func;
                } else {
                    let len = self.rng.pick(&[1u32, 2, 4, 8]);
                    arg.kind = uapi::SEUSS_ARM_WRITE;
                    arg.addr = a.doorbell;
                    arg.len = len;
                }
                will_go = self.rng.chance(800);
            }
            _ => now(&mut arg),
        }
        // The point fires if it is freeze-now, or the doorbell/breakpoint this target is about to reach.
        let fires = arg.kind == uapi::SEUSS_ARM_NOW
            || (will_go && ((arg.kind == uapi::SEUSS_ARM_EXEC) == (kind == Kind::Exec)));
        let mut pidfd = -1;
        if self.rng.chance(200) {
            // SAFETY: pidfd_open of our own unreaped child.
            pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
            if pidfd >= 0 {
                arg.flags = uapi::SEUSS_ARM_PIDFD;
                arg.pid = pidfd;
            }
        }
        let (r, o) = self.call(fd, private, calls::ARM, &arg);
        if pidfd >= 0 {
            // SAFETY: closing the pidfd opened above.
            unsafe { libc::close(pidfd) };
        }
        if kind == Kind::Threads && private && r == Err(libc::EOPNOTSUPP) {
            self.fail("ARM of a two-thread target gave EOPNOTSUPP (multi-threaded processes are frozen whole)");
        }
        if r.is_ok() {
            let id = o.map(|o| o.freeze_id).unwrap_or(0);
            if kind == Kind::Threads {
                let _ = self.resume(fd, private, id, false);
                return;
            }
            report::event(Event::Armed);
            self.live[i].freeze = Some(Freeze { id, fd, private, fires, frozen: false });
        }
        if will_go {
            self.go(i);
        }
    }

    pub(super) fn go(&mut self, i: usize) {
        let l = &mut self.live[i];
        l.went = true;
        if let Some(s) = l.stdin.as_mut() {
            let _ = writeln!(s, "go");
        }
    }

    pub(super) fn act_wait(&mut self) {
        let Some(i) = self.pick_live(|l| l.freeze.is_some()) else { return };
        let f = self.live[i].freeze.unwrap();
        let timeout = if f.fires && !f.frozen { FIRE_MS } else { self.rng.pick(&[0, 1, 10, 50]) };
        match self.wait(f.fd, f.private, f.id, timeout) {
            Ok(w) => match w.state {
                uapi::SEUSS_STATE_FROZEN => {
                    if !f.frozen {
                        report::event(Event::Frozen);
                    }
                    self.live[i].freeze.as_mut().unwrap().frozen = true;
                }
                uapi::SEUSS_STATE_ARMED if f.frozen && f.private => self.fail(&format!("WAIT says ARMED after FROZEN (pid {})", self.live[i].pid)),
                _ => {}
            },
            Err(libc::ETIMEDOUT) if f.private && timeout == FIRE_MS => {
                let l = &self.live[i];
                self.fail(&format!("freeze {} on pid {} ({:?}) did not fire within {FIRE_MS} ms: {}", f.id, l.pid, l.kind, children::describe_stuck(l.pid)));
                self.live[i].freeze.as_mut().unwrap().fires = false;
            }
            Err(libc::ENOENT) => self.live[i].freeze = None,
            Err(_) => {}
        }
    }

    pub(super) fn act_capture(&mut self) {
        let pick = self.pick_live(|l| l.freeze.is_some_and(|f| f.frozen)).or_else(|| self.pick_live(|l| l.freeze.is_some()));
        let Some(i) = pick else { return };
        let f = self.live[i].freeze.unwrap();
        let fault = if self.rng.chance(60) { Fault::ReadOnly } else { self.legal_fault(calls::CAPTURE) };
        let r = self.capture(f.fd, f.private, f.id, fault, false);
        self.after_capture(i, f, r, fault, &[]);
    }

    /// Records and judges a CAPTURE of live target `i` under freeze `f`.
    /// Checks a CAPTURE's answer against the model. `raced`: errnos a racing operation may give instead
    /// of the task's own answer (a RESUME that released the freeze first, a signal that interrupted it).
    pub(super) fn after_capture(&mut self, i: usize, f: Freeze, r: Result<u64, i32>, fault: Fault, raced: &[i32]) {
        let (kind, pid) = (self.live[i].kind, self.live[i].pid);
        let released_base = match kind {
            Kind::Instance { snap, .. } => self.snaps.iter().any(|s| s.id == snap && s.released),
            _ => false,
        };
        let strict = f.private && f.frozen;
        match r {
            Ok(id) => {
                if let Some(l) = self.live.get_mut(i) {
                    if let Some(fr) = l.freeze.as_mut() {
                        fr.frozen = true;
                    }
                }
                if kind == Kind::SharedMem {
                    self.fail(&format!("CAPTURE of a task with shared writable anonymous memory succeeded (snapshot {id})"));
                }
                if released_base {
                    self.fail(&format!("CAPTURE of pid {pid}, an instance of a released snapshot, succeeded (contract 9: ENOENT)"));
                }
                let parent = match kind {
                    Kind::Instance { snap, .. } => {
                        report::event(Event::InstanceCaptured);
                        Some(snap)
                    }
                    _ => None,
                };
                report::event(Event::Captured);
                let deploy = if kind == Kind::SharedMem { None } else { self.live[i].deploy };
                self.snaps.push(SnapRec { id, deploy, parent, released: false });
                if let Some(d) = deploy {
                    let mut b = self.sh.board.lock().unwrap();
                    b.push((id, d));
                    if b.len() > 16 {
                        b.remove(0);
                    }
                }
            }
            Err(e) => {
                if fault == Fault::ReadOnly && e == libc::EFAULT {
                    report::event(Event::ReadOnlyCaptureEfault);
                }
                if strict && kind == Kind::SharedMem && e != libc::EOPNOTSUPP && fault != Fault::ReadOnly && !raced.contains(&e) {
                    self.fail(&format!("CAPTURE of a task with shared writable anonymous memory gave {}, want EOPNOTSUPP", report::errno_name(e)));
                }
                if strict && released_base && ![libc::ENOENT, libc::ESRCH, libc::EFAULT].contains(&e) && !raced.contains(&e) {
                    self.fail(&format!("CAPTURE of an instance of a released snapshot gave {}, want ENOENT", report::errno_name(e)));
                }
                // ENOENT is also CAPTURE's answer for an instance of a released snapshot (contract 9),
                // whose freeze lives on and must still be released: only a freeze that WAIT no longer
                // knows is gone. (Dropping it on ENOENT alone left such instances parked until the
                // worker closed its descriptors: seeds 172820435 and 375812726.)
                if e == libc::ENOENT && matches!(self.wait(f.fd, f.private, f.id, 0), Err(libc::ENOENT)) {
                    if let Some(l) = self.live.get_mut(i) {
                        l.freeze = None;
                    }
                }
            }
        }
    }

    /// RESUME (or RESUME with KILL) of a freeze.
    pub(super) fn act_release(&mut self) {
        let Some(i) = self.pick_live(|l| l.freeze.is_some()) else { return };
        let f = self.live[i].freeze.unwrap();
        let kill = self.rng.chance(300);
        match self.resume(f.fd, f.private, f.id, kill) {
            Ok(_) if kill => {
                report::event(Event::KilledFrozen);
                let l = self.live.swap_remove(i);
                let codes = ended_or_killed(&l);
                self.pend(l.pid, format!("{:?} pid {} after RESUME|KILL", l.kind, l.pid), codes, &[]);
            }
            Ok(_) => {
                report::event(Event::Resumed);
                self.live[i].freeze = None;
            }
            Err(e) => {
                if f.private && e != libc::ENOENT {
                    self.fail(&format!("RESUME of live freeze {} gave {}", f.id, report::errno_name(e)));
                }
                self.live[i].freeze = None;
            }
        }
    }

    /// SIGKILL at a random moment. A freeze on it: WAIT must return at once if it was still armed
    /// (contract 7), report DEAD once the task is reaped, and CAPTURE must then fail.
    pub(super) fn act_sigkill(&mut self) {
        let Some(i) = self.pick_live(|_| true) else { return };
        let l = self.live.swap_remove(i);
        children::kill(l.pid);
        report::event(Event::SigKilled);
        let codes = ended_or_killed(&l);
        let what = format!("{:?} pid {} after SIGKILL", l.kind, l.pid);
        let Some(f) = l.freeze.filter(|f| f.private) else {
            if let Some(f) = l.freeze {
                let _ = self.resume(f.fd, f.private, f.id, false);
            }
            return self.pend(l.pid, what, codes, &[]);
        };
        if !f.frozen {
            let t0 = now_ms();
            if let Err(e) = self.wait(f.fd, true, f.id, 10_000) {
                if e != libc::ENOENT {
                    self.fail(&format!("WAIT on armed pid {} after SIGKILL gave {} after {} ms (contract 7: DEAD at once)", l.pid, report::errno_name(e), now_ms() - t0));
                }
            }
        }
        match children::reap_within(l.pid, 20_000) {
            Some(code) if codes.contains(&code) => {}
            Some(code) => self.fail(&format!("{what}: exit code {code}, want one of {codes:?}")),
            None => {
                self.fail(&format!("{what}: not dead after 20 s: {}", children::describe_stuck(l.pid)));
                let _ = self.resume(f.fd, true, f.id, false);
                return self.pend(l.pid, what, codes, &[]);
            }
        }
        self.note_reaped(l.pid);
        match self.wait(f.fd, true, f.id, 0) {
            Ok(w) if w.state == uapi::SEUSS_STATE_DEAD => {}
            Ok(w) => self.fail(&format!("WAIT on reaped pid {} says state {}, want DEAD", l.pid, w.state)),
            Err(_) => {}
        }
        if let Ok(id) = self.capture(f.fd, true, f.id, Fault::None, false) {
            self.fail(&format!("CAPTURE of reaped pid {} succeeded (snapshot {id})", l.pid));
            self.adopt_snapshot(id);
        }
        let _ = self.resume(f.fd, true, f.id, false);
    }

    /// Lets a target run to its end: releases its freeze and closes its stdin.
    pub(super) fn act_finish(&mut self) {
        let Some(i) = self.pick_live(|_| true) else { return };
        self.finish(i);
    }

    pub(super) fn finish(&mut self, i: usize) {
        if let Some(f) = self.live[i].freeze {
            let _ = self.resume(f.fd, f.private, f.id, false);
        }
        let l = self.live.swap_remove(i);
        let codes = ended_or_killed(&l);
        drop(l.stdin);
        self.pend(l.pid, format!("{:?} pid {} (finished)", l.kind, l.pid), codes, &[]);
    }
}

/// Exit codes a target may end with once we let it go or kill it: its kind's normal ends (it may have
/// ended by itself first), SIGKILL, and for a held stub a refused deploy (its snapshot was released).
fn ended_or_killed(l: &Live) -> Vec<i32> {
    let mut codes = kind_codes(l.kind, l.deploy).to_vec();
    codes.push(SIGKILLED);
    if let Kind::Instance { .. } = l.kind {
        codes.push(REFUSED_ENOENT);
    }
    codes
}
