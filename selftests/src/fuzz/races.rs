//! Heavy operations that race: RESUME against CAPTURE and WAIT from other threads, closing descriptors
//! (our own, and shared ones other threads are using), and signals interrupting WAIT and CAPTURE.

use std::sync::atomic::Ordering::SeqCst;

use super::actor::*;
use super::calls::{self, blank, Fault};
use super::report::{self, Event};
use super::worker::open_raw;

impl Actor<'_> {
    /// Two threads: one RESUMEs a frozen task while another CAPTUREs it and a third WAITs on it.
    /// Every call must return, the RESUME must succeed, and the task must run on to its normal end.
    pub(super) fn act_race_resume_capture(&mut self) {
        let Some(i) = self.pick_live(|l| l.freeze.is_some_and(|f| f.frozen && f.private)) else { return };
        let f = self.live[i].freeze.unwrap();
        let spin = self.rng.below(20_000);
        report::event(Event::RaceResumeCapture);
        let (cap, res, wt) = std::thread::scope(|s| {
            let fd = f.fd;
            let resumer = s.spawn(move || {
                for _ in 0..spin {
                    std::hint::spin_loop();
                }
                let mut a: uapi::seuss_release_task = blank();
                a.freeze_id = f.id;
                calls::ioctl(fd, uapi::request::RESUME, &a as *const _ as u64)
            });
            let waiter = s.spawn(move || {
                let mut a: uapi::seuss_wait = blank();
                a.freeze_id = f.id;
                a.timeout_ms = 200;
                calls::ioctl(fd, uapi::request::WAIT, &mut a as *mut _ as u64)
            });
            let cap = self.capture(f.fd, true, f.id, Fault::None, false);
            (cap, resumer.join().unwrap(), waiter.join().unwrap())
        });
        for (what, r) in [("RESUME", res), ("WAIT", wt)] {
            report::tally(r.map(|_| ()));
            if let Err(e) = r {
                if !report::documented(e, false) {
                    self.fail(&format!("racing {what}: undocumented errno {}", report::errno_name(e)));
                }
            }
        }
        if let Err(e) = res {
            self.fail(&format!("RESUME racing CAPTURE gave {} (a RESUME must not be lost)", report::errno_name(e)));
        }
        if let Err(e) = cap {
            if ![libc::ESRCH, libc::ENOENT, libc::EAGAIN, libc::ENOSPC, libc::ENOMEM, libc::EOPNOTSUPP].contains(&e) {
                self.fail(&format!("CAPTURE racing RESUME gave {}", report::errno_name(e)));
            }
        }
        // A RESUME that won takes the freeze away first: ENOENT (no such freeze) or ESRCH (released).
        self.after_capture(i, f, cap, Fault::None, &[libc::ENOENT, libc::ESRCH, libc::EAGAIN]);
        self.stale_freezes.push(f.id);
        self.live[i].freeze = None;
        self.finish(i);
    }



    /// Closes our own descriptor with freezes on it (they are released) and opens a new one.
    pub(super) fn act_close_private(&mut self) {
        // SAFETY: closing our own descriptor; nothing else in this thread uses it any more.
        unsafe { libc::close(self.dev) };
        self.dev = open_raw();
        self.stale_freezes.clear();
        for l in &mut self.live {
            if l.freeze.is_some_and(|f| f.private) {
                l.freeze = None;
            }
        }
        report::event(Event::DevClosed);
    }

    /// Closes a descriptor other threads may be using right now, and puts a new one in its slot.
    pub(super) fn act_close_shared(&mut self) {
        let i = self.rng.below(2) as usize;
        let old = self.sh.slots[i].swap(-1, SeqCst);
        if old >= 0 {
            // SAFETY: the slot owned this descriptor; threads that loaded its number see EBADF or another file.
            unsafe { libc::close(old) };
            for l in &mut self.live {
                if l.freeze.is_some_and(|f| !f.private && f.fd == old) {
                    l.freeze = None;
                }
            }
        }
        self.sh.slots[i].store(open_raw(), SeqCst);
        report::event(Event::DevClosed);
    }

    /// A signal interrupts a WAIT (armed) or a CAPTURE (frozen): EINTR is allowed, nothing may leak.
    pub(super) fn act_interrupt(&mut self) {
        let Some(i) = self.pick_live(|l| l.freeze.is_some_and(|f| f.private)) else { return };
        let f = self.live[i].freeze.unwrap();
        let delay = self.rng.range(1, 40);
        // SAFETY: gettid and getpid have no preconditions.
        let (pid, tid) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid) as i32) };
        std::thread::scope(|s| {
            s.spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(delay));
                // SAFETY: signals a thread of our own process, which handles SIGUSR1 with a no-op.
                unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1) };
            });
            if f.frozen {
                let r = self.capture(f.fd, true, f.id, Fault::None, true);
                if r == Err(libc::EINTR) {
                    report::event(Event::Interrupted);
                }
                self.after_capture(i, f, r, Fault::None, &[libc::EINTR]);
            } else {
                let mut a: uapi::seuss_wait = blank();
                a.freeze_id = f.id;
                a.timeout_ms = 3000;
                let (r, o) = self.call_with(f.fd, true, calls::WAIT, &a, Fault::None, true);
                match r {
                    Err(libc::EINTR) => report::event(Event::Interrupted),
                    Ok(_) if o.is_some_and(|o| o.state == uapi::SEUSS_STATE_FROZEN) => {
                        if let Some(fr) = self.live[i].freeze.as_mut() {
                            fr.frozen = true;
                        }
                    }
                    _ => {}
                }
            }
        });
    }
}
