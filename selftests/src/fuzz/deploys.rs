//! Heavy operations on snapshots: deploys from forked stubs (plain, with valid or bad nested tid/cookie
//! pointers, with a fault in the argument, holding the instance alive, from callers that must be
//! refused, of ids that name nothing), SNAP_RELEASE, and a release racing a deploy. A stub's exit code
//! says what happened: the snapshot's own exit code when its copy ran, 100 + errno when refused.

use super::actor::*;
use super::calls::{self, blank, bytes_of, Fault, Prepared};
use super::children::{self, Addrs, StubKind};
use super::report::{self, Event};

impl Actor<'_> {
    /// Lays out a DEPLOY argument in the arena (the stub inherits it); returns the prepared call.
    pub(super) fn deploy_arg(&mut self, snap: u64, tid: Option<u64>, cookie: Option<u64>, fault: Fault) -> Prepared {
        let mut a: uapi::seuss_deploy = blank();
        a.snap_id = snap;
        if let Some(t) = tid {
            a.flags |= uapi::SEUSS_DEPLOY_TID;
            a.tid_addr = t;
        }
        if let Some(c) = cookie {
            a.flags |= uapi::SEUSS_DEPLOY_COOKIE;
            a.cookie_addr = c;
            a.cookie = self.rng.next();
        }
        calls::prepare(&mut self.arena, calls::DEPLOY, &bytes_of(&a), fault)
    }

    pub(super) fn stub(&mut self, kind: StubKind, p: &Prepared) -> Option<children::Stub> {
        match children::spawn_stub(kind, self.dev, self.sh.null_fd, p.req, p.addr, &mut self.stacks) {
            Ok(s) => Some(s),
            Err(e) => {
                self.fail(&e);
                None
            }
        }
    }

    /// A stub deploys one of our snapshots: plain, with valid or bad nested pointers, with a fault in its
    /// argument, or holding its stdin so the instance stays alive for ARM, DIRTY and CAPTURE.
    pub(super) fn act_deploy(&mut self) {
        let Some((snap, info)) = self.pick_deployable() else { return };
        let (mut tid, mut cookie) = (None, None);
        let mut codes = info.codes.to_vec();
        codes.push(REFUSED_ENOENT);
        let mut bad_nested = false;
        let mut misaligned = false;
        // `seuss_target sleep` prints no addresses: no valid nested pointers are known for its snapshots.
        let known = info.tidvar != 0 && info.cookie != 0;
        match self.rng.below(10) {
            0..=2 if known => {
                tid = Some(info.tidvar).filter(|_| self.rng.chance(700));
                cookie = Some(info.cookie).filter(|_| tid.is_none() || self.rng.chance(500));
            }
            3..=5 => {
                // Must fail: no writable mapping of the snapshot there (contract 3).
                let guard = self.arena.guard_addr();
                let bad = self.rng.pick(&[0, 4, 0xffff_8000_0000_0000, 0x7fff_ffff_f000, guard & !7, info.readonly & !7]);
                if self.rng.chance(500) { tid = Some(bad) } else { cookie = Some(bad) }
                codes = vec![100 + libc::EFAULT, REFUSED_ENOENT];
                bad_nested = true;
            }
            6 if known => {
                // Misaligned but inside the writable variable: either accepted or EFAULT.
                if self.rng.chance(500) { tid = Some(info.tidvar + 1) } else { cookie = Some(info.cookie + 4) }
                codes.push(100 + libc::EFAULT);
                misaligned = true;
            }
            _ => {}
        }
        let mut fault = Fault::None;
        if !bad_nested && self.rng.chance(250) {
            fault = calls::pick_fault(&mut self.rng, &calls::SPECS[calls::DEPLOY]);
        }
        let p = self.deploy_arg(snap, tid, cookie, fault);
        match (&p.want, fault) {
            (calls::Want::OneOf(set), _) => codes = set.iter().map(|e| 100 + e).collect(),
            (_, Fault::SizeHuge(_)) => codes.extend([100 + libc::E2BIG, 100 + libc::EINVAL]),
            _ => {}
        }
        // Only our own snapshots get instances we may capture (their children must be ours to release).
        let own = self.snaps.iter().any(|s| s.id == snap && !s.released);
        // A held stub's instance is expected to run (its codes are the snapshot's): only a deploy that
        // cannot be refused for its argument is held (seed 610881566 held a misaligned one: EFAULT).
        let held = own && !bad_nested && !misaligned && fault == Fault::None && self.live.len() < MAX_LIVE && self.rng.chance(300);
        let kind = if held { StubKind::Held } else { StubKind::Plain };
        let Some(s) = self.stub(kind, &p) else { return };
        let what = format!("{kind:?} stub pid {} deploying snapshot {snap} (tid_addr {tid:x?} cookie_addr {cookie:x?}; {})", s.pid, p.describe());
        if held {
            self.live.push(Live { pid: s.pid, kind: Kind::Instance { snap, confirmed: false }, stdin: s.stdin, addrs: Addrs::default(), deploy: Some(info), went: true, freeze: None });
        } else {
            if bad_nested {
                report::event(Event::BadNestedRefused);
            }
            self.pend(s.pid, what, codes, info.codes);
        }
    }

    /// A stub deploys an id that names no snapshot.
    pub(super) fn act_deploy_bad_id(&mut self) {
        let stale: Vec<u64> = self.snaps.iter().filter(|s| s.released).map(|s| s.id).collect();
        let id = match self.rng.below(4) {
            0 => 0,
            1 => u64::MAX,
            2 if !stale.is_empty() => stale[self.rng.below(stale.len() as u64) as usize],
            _ => (1 << 40) + self.rng.below(1 << 20),
        };
        let p = self.deploy_arg(id, None, None, Fault::None);
        let Some(s) = self.stub(StubKind::Plain, &p) else { return };
        let mut codes = vec![REFUSED_ENOENT];
        if id == 0 {
            codes.push(100 + libc::EINVAL);
        }
        self.pend(s.pid, format!("stub pid {} deploying snapshot id {id} (none such)", s.pid), codes, &[]);
    }

    /// Stubs that must be refused: multi-threaded, io_uring, vforked, sharing the fd table, ptraced.
    pub(super) fn act_deploy_refused(&mut self) {
        let Some((snap, _)) = self.pick_deployable() else { return };
        let kinds = [StubKind::Threaded, StubKind::IoUring, StubKind::Vfork, StubKind::SharedFiles, StubKind::Ptraced];
        let kind = self.rng.pick(&kinds);
        let p = self.deploy_arg(snap, None, None, Fault::None);
        let Some(s) = self.stub(kind, &p) else { return };
        let refusal = if kind == StubKind::Ptraced { libc::EBUSY } else { libc::EOPNOTSUPP };
        let mut codes = vec![100 + refusal, REFUSED_ENOENT];
        if kind == StubKind::IoUring {
            codes.push(children::STUB_NO_IO_URING);
        }
        self.pend(s.pid, format!("{kind:?} stub pid {} deploying snapshot {snap} (must be refused with {})", s.pid, report::errno_name(refusal)), codes, &[]);
    }

    pub(super) fn has_children(&self, id: u64) -> bool {
        self.snaps.iter().any(|s| s.parent == Some(id) && !s.released)
    }

    pub(super) fn mark_released(&mut self, id: u64) {
        for s in self.snaps.iter_mut().filter(|s| s.id == id) {
            s.released = true;
        }
        self.sh.board.lock().unwrap().retain(|(i, _)| *i != id);
    }

    pub(super) fn act_snap_release(&mut self) {
        let leaves: Vec<u64> = self.snaps.iter().filter(|s| !s.released && !self.has_children(s.id)).map(|s| s.id).collect();
        let all: Vec<u64> = self.snaps.iter().filter(|s| !s.released).map(|s| s.id).collect();
        let pool = if !leaves.is_empty() && self.rng.chance(850) { leaves } else { all };
        if pool.is_empty() {
            return;
        }
        // The oldest first, mostly: keeps the number of snapshots (and pages held) bounded.
        let id = if self.rng.chance(600) { pool[0] } else { pool[self.rng.below(pool.len() as u64) as usize] };
        let children = self.has_children(id);
        match self.snap_release(id) {
            Ok(_) => {
                if children {
                    self.fail(&format!("SNAP_RELEASE of snapshot {id} with a live child snapshot succeeded (want EBUSY)"));
                }
                report::event(Event::ReleasedSnapshot);
                self.mark_released(id);
                if let Ok(i) = self.snap_info(id) {
                    self.fail(&format!("SNAP_INFO of released snapshot {id} succeeded: {i:?}"));
                }
            }
            Err(libc::EBUSY) if !children => {
                // Another thread may have captured an instance deployed from a board entry: only ours are known.
            }
            Err(libc::ENOENT) => self.mark_released(id), // released by a racing thread
            Err(_) => {}
        }
    }

    /// A stub deploys a snapshot while this thread releases it; after a successful release a second
    /// deploy must find nothing.
    pub(super) fn act_race_release_deploy(&mut self) {
        let Some((snap, info)) = self.pick_deployable() else { return };
        let p = self.deploy_arg(snap, None, None, Fault::None);
        let Some(s) = self.stub(StubKind::Plain, &p) else { return };
        report::event(Event::RaceReleaseDeploy);
        let mut codes = info.codes.to_vec();
        codes.push(REFUSED_ENOENT);
        let what = format!("stub pid {} deploying snapshot {snap} racing its release", s.pid);
        let r = self.snap_release(snap);
        self.pend(s.pid, what, codes, info.codes);
        match r {
            Ok(_) => {
                report::event(Event::ReleasedSnapshot);
                self.mark_released(snap);
                let p = self.deploy_arg(snap, None, None, Fault::None);
                if let Some(s2) = self.stub(StubKind::Plain, &p) {
                    self.pend(s2.pid, format!("stub pid {} deploying released snapshot {snap}", s2.pid), vec![REFUSED_ENOENT], &[]);
                }
            }
            Err(libc::ENOENT) => self.mark_released(snap),
            Err(_) => {}
        }
    }
}
