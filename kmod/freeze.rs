// SPDX-License-Identifier: GPL-2.0
//! Freezing a process at a breakpoint, a watchpoint or its next return to user mode, and parking every
//! one of its threads there.
//!
//! Everything that touches the target's user state runs in the target's own context: the breakpoint
//! handler only queues a task work; the work parks the task and serves what controllers ask (CAPTURE,
//! RESUME, KILL). Before it reports itself parked, that task (the *leader* of the freeze: the armed
//! thread) parks every other thread of its process (*followers*) with a task work of their own, each of
//! which saves its thread's user state in its own context and sleeps until the leader leaves its park.
//! One typed state machine ([`Phase`] plus the requests in [`State`]) lives under one spinlock;
//! controllers sleep on a `CondVar` (interruptible), the parked task on its own wait queue (killable and
//! freezable, with no lock held: 6.12's `CondVar` has neither mode), woken through the `mail` flag that
//! every request raises under the lock.
//!
//! ```text
//!   Armed --(park work runs)--> Parked <--(CAPTURE)--> Capturing
//!     |                           |
//!     +--(released / exec'd / exited)--+--(released)--> Resumed | Dead   (final)
//! ```
//! While the leader parks its followers the phase stays `Armed`: WAIT reports FROZEN only when every
//! thread is parked. Threads created meanwhile: the leader re-scans the thread list until a scan finds
//! no thread it has not seen and every thread seen has parked or gone (a parked thread creates none, and
//! a thread that a running one creates is on the list before its creator can park), rather than blocking
//! clone, which would need a hook in `copy_process()` for every process on the machine.
//!
//! A release is a sticky request (`State::release`), never a command slot a CAPTURE can overwrite; a
//! capture's result goes to the controller that asked (tickets), or, if that controller gave up (signal,
//! death), the snapshot is released again by the task.
//!
//! References: the session holds one `Arc<Freeze>`; a registered breakpoint's context holds one (dropped
//! after `unregister_hw_breakpoint`, which waits for running handlers); a queued task work holds one, and
//! the kernel-side trampoline of [`ModuleWork`] holds a module reference until the work has returned.
//! Each follower holds one `Arc<Freeze>`, and the freeze's `followers` list holds the followers until
//! the leader leaves its park (`leave`), which breaks that cycle on every path out of the park.
//! Locks: `bp` (a mutex, process context), `followers` (a mutex, only the leader takes it) and `state`
//! (a spinlock) are never held together; a follower's `slot` (a spinlock) is a leaf, taken alone or
//! under `followers` (the leader reading the slots); the breakpoint handler takes none.

use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use kernel::alloc::{flags::GFP_KERNEL, KVec};
use kernel::bindings;
use kernel::error::{code::*, Error, Result};
use kernel::init::InPlaceInit;
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow, CondVar, Mutex, SpinLock};
use kernel::{new_condvar, new_mutex, new_spinlock};

use crate::sys::bp::{self, BpKind, Breakpoint, ModuleWork, Notify};
use crate::sys::cpu::{self, TaskState};
use crate::sys::task::{self, TaskRef};
use crate::sys::wait::WaitQueue;

/// Where to freeze.
#[derive(Clone, Copy)]
pub(crate) enum Point {
    Breakpoint(BpKind, u64),
    Now,
}

/// Where a freeze is in its life.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the freeze point (breakpoint registered, or the park work queued).
    Armed,
    /// Parked at the freeze point, serving requests.
    Parked,
    /// The parked task is capturing itself for a controller.
    Capturing,
    /// Released; the task runs on (final).
    Resumed,
    /// Exited, killed, or exec'd before it could park (final).
    Dead,
}

impl Phase {
    /// The uapi `SEUSS_STATE_*` value.
    pub(crate) fn uapi(self) -> u32 {
        match self {
            Phase::Armed => bindings::SEUSS_STATE_ARMED,
            Phase::Parked | Phase::Capturing => bindings::SEUSS_STATE_FROZEN,
            Phase::Resumed => bindings::SEUSS_STATE_RESUMED,
            Phase::Dead => bindings::SEUSS_STATE_DEAD,
        }
    }
}

/// The state under the lock.
struct State {
    phase: Phase,
    /// User instruction pointer where the task parked.
    ip: u64,
    /// A release was asked (sticky): `Some(kill)`.
    release: Option<bool>,
    /// The ticket of the last capture asked.
    ticket: u64,
    /// The finished capture of `ticket`, until its controller takes it.
    result: Option<(u64, Result<u64>)>,
    /// The controller of the capture in progress stopped waiting: the task releases its snapshot.
    abandoned: bool,
}

/// One armed or frozen task.
#[pin_data]
#[repr(C)]
pub(crate) struct Freeze {
    work: ModuleWork,
    wq: WaitQueue,
    pub(crate) task: TaskRef,
    /// The process's key in the armed set (its mm's identity at ARM).
    pub(crate) key: usize,
    /// The task's exec generation when ARM checked permission: a task that exec'd since never parks.
    exec_id: u64,
    /// The park work has been queued (set once, by the breakpoint handler or at arm for freeze-now).
    fired: AtomicBool,
    /// Non-zero when the parked task has a request to look at (see the module docs).
    mail: AtomicI32,
    #[pin]
    state: SpinLock<State>,
    #[pin]
    cv: CondVar,
    #[pin]
    bp: Mutex<Option<Breakpoint>>,
    /// The process's other threads the leader has asked to park (see the module docs).
    #[pin]
    followers: Mutex<KVec<Arc<Follower>>>,
    /// Set (and the queue woken) when the leader leaves its park: the followers leave theirs.
    released: AtomicI32,
}

/// Where one follower is.
enum Slot {
    /// Its park work is queued.
    Queued,
    /// Parked, with the user state it saved in its own context.
    Parked(Arc<TaskState>),
    /// Parked, but it holds something that cannot be captured: what CAPTURE answers.
    Refused(Error),
    /// Exited, exiting or killed before or while parked: not part of a snapshot.
    Gone,
}

/// Another thread of the freezing process, parked by its own task work.
#[pin_data]
#[repr(C)]
struct Follower {
    work: ModuleWork,
    task: TaskRef,
    freeze: Arc<Freeze>,
    #[pin]
    slot: SpinLock<Slot>,
}

impl Follower {
    /// Queues the park work on `task` (ours, not yet queued): `Ok(false)` if the task no longer runs
    /// task works (it is exiting: its slot says `Gone`).
    fn enlist(task: TaskRef, freeze: Arc<Freeze>) -> Result<(Arc<Follower>, bool)> {
        let f = Arc::pin_init(
            pin_init!(Follower {
                work: ModuleWork::new(),
                task,
                freeze,
                slot <- new_spinlock!(Slot::Queued, "seuss:follower_slot"),
            }),
            GFP_KERNEL,
        )?;
        let raw = Arc::into_raw(f.clone());
        // SAFETY: `work` lives inside the Arc whose reference we just leaked, so it stays put until the
        // callback reclaims it; this follower is new, so its work is queued once.
        let queued = unsafe { f.work.queue(f.task.as_ptr(), on_follower_work, Notify::Signal) }.is_ok();
        if !queued {
            // SAFETY: not queued: reclaim the reference.
            drop(unsafe { Arc::from_raw(raw) });
            f.set(Slot::Gone);
        }
        Ok((f, queued))
    }

    /// Replaces the slot (the old value is dropped outside the lock) and tells the leader.
    fn set(&self, new: Slot) {
        let old = core::mem::replace(&mut *self.slot.lock(), new);
        drop(old);
        self.freeze.mail.store(1, Ordering::SeqCst);
        self.freeze.wq.wake_all();
    }

    /// Whether the follower has parked or gone.
    fn settled(&self) -> bool {
        !matches!(*self.slot.lock(), Slot::Queued)
    }

    /// The follower's park, in its own context.
    fn park(&self) {
        let fz = &self.freeze;
        if task::current_is_exiting() || fz.released.load(Ordering::SeqCst) != 0 {
            self.set(Slot::Gone);
            return;
        }
        let saved = task::current_can_be_captured()
            .and_then(|()| cpu::save_current())
            .and_then(|st| Ok(Arc::new(st, GFP_KERNEL)?));
        self.set(match saved {
            Ok(st) => Slot::Parked(st),
            Err(e) => Slot::Refused(e),
        });
        // Killable and freezable, holding no lock, until the leader leaves its park.
        if fz.wq.wait_nonzero_killable(&fz.released).is_err() {
            self.set(Slot::Gone);
        }
    }
}

/// A follower's task work: reclaims the reference `Follower::enlist` handed over and parks.
unsafe extern "C" fn on_follower_work(w: *mut bindings::seuss_module_work) {
    let off = core::mem::offset_of!(Follower, work);
    // SAFETY: `w` is the `work` field of a Follower whose Arc reference was leaked by `enlist`.
    let f = unsafe { Arc::from_raw((w as *const u8).sub(off) as *const Follower) };
    f.park();
}

/// The other threads' saved states for a capture: each with whether it is its process's leader.
pub(crate) type Others = KVec<(bool, Arc<TaskState>)>;

/// Longest a WAIT sleeps before it looks again whether an armed target exited or exec'd (neither sends
/// a wakeup when the task never reached its freeze point).
const EXIT_POLL_MS: u32 = 20;

impl Freeze {
    /// Arms `point` on `task`, whose exec generation was `exec_id` when the caller checked permission.
    pub(crate) fn arm(task: TaskRef, exec_id: u64, key: usize, point: Point) -> Result<Arc<Freeze>> {
        let f = Arc::pin_init(
            pin_init!(Freeze {
                work: ModuleWork::new(),
                wq: WaitQueue::new(),
                task,
                key,
                exec_id,
                fired: AtomicBool::new(false),
                mail: AtomicI32::new(0),
                state <- new_spinlock!(State {
                    phase: Phase::Armed,
                    ip: 0,
                    release: None,
                    ticket: 0,
                    result: None,
                    abandoned: false,
                }, "seuss:freeze_state"),
                cv <- new_condvar!("seuss:freeze_cv"),
                bp <- new_mutex!(None, "seuss:freeze_bp"),
                followers <- new_mutex!(KVec::new(), "seuss:freeze_followers"),
                released: AtomicI32::new(0),
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: the Arc gives the queue its final address; initialised once, before any use.
        unsafe { f.wq.init() };
        match point {
            Point::Breakpoint(kind, addr) => {
                let ctx = Arc::into_raw(f.clone()) as *mut core::ffi::c_void;
                // SAFETY: `ctx` is an Arc reference released only after the breakpoint is unregistered
                // (in `disarm`); `on_hit` obeys handler rules.
                match unsafe { Breakpoint::register(&f.task, kind, addr, on_hit, ctx) } {
                    Ok(b) => *f.bp.lock() = Some(b),
                    Err(e) => {
                        // SAFETY: reclaim the reference we leaked into `ctx`; the breakpoint never existed.
                        drop(unsafe { Arc::from_raw(ctx as *const Freeze) });
                        return Err(e);
                    }
                }
            }
            Point::Now => {
                f.fired.store(true, Ordering::SeqCst);
                f.queue_work(Notify::Signal)?;
            }
        }
        Ok(f)
    }

    /// Hands one Arc reference to a task work on the target. On failure the freeze will never park.
    fn queue_work(self: &Arc<Self>, how: Notify) -> Result {
        let raw = Arc::into_raw(self.clone());
        // SAFETY: `work` lives inside the Arc whose reference we just leaked, so it stays put until the
        // callback reclaims that reference; it is queued at most once (guarded by `fired`).
        let r = unsafe { self.work.queue(self.task.as_ptr(), on_work, how) };
        if r.is_err() {
            // SAFETY: the work was not queued: reclaim the reference.
            drop(unsafe { Arc::from_raw(raw) });
            self.fired.store(false, Ordering::SeqCst);
        }
        r
    }

    /// Tells the parked task to look at its state (call with the state lock held).
    fn post(&self) {
        self.mail.store(1, Ordering::SeqCst);
        self.wq.wake_all();
    }

    /// The phase as a controller sees it: an armed task whose breakpoint never fired and that exited or
    /// exec'd (which removed the breakpoint) will never park: the freeze is gone. (A queued park work
    /// runs at exit or after the exec and reports that itself.)
    fn seen(&self, s: &State) -> Phase {
        if s.phase == Phase::Armed
            && !self.fired.load(Ordering::SeqCst)
            && (self.task.is_kthread_or_exiting() || self.task.exec_id() != self.exec_id)
        {
            Phase::Dead
        } else {
            s.phase
        }
    }

    /// The freeze's state and parking address; waits up to `ms` for it to leave ARMED.
    pub(crate) fn wait(&self, ms: u32) -> Result<(u32, u64)> {
        let deadline = task::now_ns().saturating_add(ms as u64 * 1_000_000);
        let mut g = self.state.lock();
        loop {
            let phase = self.seen(&g);
            if phase != Phase::Armed || ms == 0 {
                return Ok((phase.uapi(), g.ip));
            }
            let left_ms = deadline.saturating_sub(task::now_ns()) / 1_000_000;
            if left_ms == 0 {
                return Err(crate::sys::etimedout());
            }
            let slice = kernel::time::msecs_to_jiffies(left_ms.min(EXIT_POLL_MS as u64) as u32);
            if let kernel::sync::CondVarTimeoutResult::Signal { .. } = self.cv.wait_interruptible_timeout(&mut g, slice) {
                return Err(ERESTARTSYS);
            }
        }
    }

    /// Unregisters the breakpoint (no handler runs afterwards) and drops its context reference.
    fn disarm(self: &Arc<Self>) {
        let b = self.bp.lock().take();
        if let Some(b) = b {
            drop(b);
            // SAFETY: the reference leaked into the breakpoint's context in `arm`; the breakpoint is gone.
            drop(unsafe { Arc::from_raw(&**self as *const Freeze) });
        }
    }

    /// Asks the parked task to capture itself; returns the new snapshot's id. Concurrent captures of one
    /// freeze run one after the other (the next starts once the previous result has been taken).
    pub(crate) fn capture(self: &Arc<Self>) -> Result<u64> {
        let mut g = self.state.lock();
        loop {
            match self.seen(&g) {
                Phase::Parked if g.release.is_some() => return Err(ESRCH),
                Phase::Parked if g.result.is_none() => break,
                Phase::Parked | Phase::Capturing => {
                    if self.cv.wait_interruptible(&mut g) {
                        return Err(ERESTARTSYS);
                    }
                }
                Phase::Armed => return Err(EAGAIN),
                Phase::Resumed | Phase::Dead => return Err(ESRCH),
            }
        }
        g.ticket += 1;
        let ticket = g.ticket;
        g.phase = Phase::Capturing;
        g.abandoned = false;
        self.post();
        loop {
            let mine = matches!(g.result, Some((t, _)) if t == ticket);
            if mine {
                let r = g.result.take().map(|(_, r)| r).unwrap_or(Err(ESRCH));
                if !task::current_fatal_signal_pending() {
                    return r;
                }
                // The caller dies before it could learn the id: give the snapshot back.
                drop(g);
                if let Ok(id) = r {
                    let _ = crate::registry::get().release(id);
                }
                return Err(ERESTARTSYS);
            }
            if g.phase != Phase::Capturing {
                // The task died without answering (it answers every capture it started).
                return Err(ESRCH);
            }
            if self.cv.wait_interruptible(&mut g) && !matches!(g.result, Some((t, _)) if t == ticket) {
                // Still capturing (no other capture can start before this one's result is taken): the
                // task releases what it makes.
                g.abandoned = true;
                return Err(ERESTARTSYS);
            }
        }
    }

    /// Lets the task run on, or kills it. The freeze is finished afterwards: the task leaves its park
    /// (after a capture in progress) or never enters it.
    pub(crate) fn release(self: &Arc<Self>, kill: bool) {
        self.disarm();
        if kill {
            self.task.kill();
        }
        let mut g = self.state.lock();
        if g.release.is_none() {
            g.release = Some(kill);
        }
        if !self.fired.load(Ordering::SeqCst) && g.phase == Phase::Armed {
            // No breakpoint can fire any more and no work was queued: nothing will park.
            g.phase = if kill { Phase::Dead } else { Phase::Resumed };
        }
        self.post();
        drop(g);
        self.cv.notify_all();
    }

    /// Sets the phase and wakes controllers (call with the state lock held).
    fn enter(&self, s: &mut State, p: Phase) {
        s.phase = p;
        self.cv.notify_all();
    }

    /// The leader's park, in the armed task's context; its followers leave theirs when it returns.
    fn park(self: &Arc<Self>) {
        self.park_leader();
        self.leave();
    }

    /// Lets the followers go and drops the list (and with it their references to this freeze).
    fn leave(&self) {
        self.released.store(1, Ordering::SeqCst);
        self.wq.wake_all();
        let list = core::mem::replace(&mut *self.followers.lock(), KVec::new());
        drop(list);
    }

    /// Enlists every thread of the process not seen yet; `Ok(true)` if there was one.
    fn enlist_new(self: &Arc<Self>) -> Result<bool> {
        let threads = task::group_threads(&self.task)?;
        let mut fresh = false;
        let mut list = self.followers.lock();
        for t in threads.iter() {
            if t.same(&self.task) || list.iter().any(|f| f.task.same(t)) {
                continue;
            }
            let (f, _) = Follower::enlist(t.clone(), self.clone())?;
            // On failure `f` is dropped here; a queued work holds its own reference and finds the
            // freeze released (the park gives up, see `gather`).
            list.push(f, GFP_KERNEL)?;
            fresh = true;
        }
        drop(list);
        // The task references are put outside the list's lock.
        drop(threads);
        Ok(fresh)
    }

    /// Whether every enlisted follower has parked or gone.
    fn all_settled(&self) -> bool {
        self.followers.lock().iter().all(|f| f.settled())
    }

    /// Parks every other thread of the process, re-scanning the thread list until it is stable (see the
    /// module docs). `Err(final phase)` if a release or SIGKILL came first, or the followers could not be
    /// enlisted (no memory): the freeze then gives up and the process runs on.
    fn gather(self: &Arc<Self>) -> core::result::Result<(), Phase> {
        loop {
            // Cleared before looking: a follower that settles after the look raises it again.
            self.mail.store(0, Ordering::SeqCst);
            let fresh = self.enlist_new().map_err(|_| Phase::Resumed)?;
            let settled = self.all_settled();
            if let Some(kill) = self.state.lock().release {
                return Err(if kill { Phase::Dead } else { Phase::Resumed });
            }
            if settled {
                if !fresh {
                    return Ok(());
                }
                // New threads that settled at once (gone): scan again.
                continue;
            }
            if self.wq.wait_nonzero_killable(&self.mail).is_err() {
                return Err(Phase::Dead);
            }
        }
    }

    /// The parked followers' states, for a capture: `Err` with the first refusal.
    fn others(&self) -> Result<Others> {
        let list = self.followers.lock();
        let mut out = KVec::with_capacity(list.len(), GFP_KERNEL)?;
        for f in list.iter() {
            match &*f.slot.lock() {
                Slot::Parked(st) => out.push((f.task.is_group_leader(), st.clone()), GFP_KERNEL)?,
                Slot::Refused(e) => return Err(*e),
                Slot::Gone => {}
                Slot::Queued => return Err(EAGAIN),
            }
        }
        Ok(out)
    }

    /// The leader's park loop.
    fn park_leader(self: &Arc<Self>) {
        let mut g = self.state.lock();
        // A task that exec'd after ARM checked permission must not be parked: its new image may be one
        // the controller could not have attached to (a setuid binary).
        let gone = task::current_is_exiting() || self.task.exec_id() != self.exec_id;
        if gone || g.release.is_some() {
            let end = if gone || g.release == Some(true) { Phase::Dead } else { Phase::Resumed };
            self.enter(&mut g, end);
            return;
        }
        drop(g);
        // Every other thread parks first: WAIT reports FROZEN only when all have.
        if let Err(end) = self.gather() {
            let mut g = self.state.lock();
            self.enter(&mut g, end);
            return;
        }
        g = self.state.lock();
        if let Some(kill) = g.release {
            self.enter(&mut g, if kill { Phase::Dead } else { Phase::Resumed });
            return;
        }
        // SAFETY: reading current's own user frame.
        g.ip = unsafe { (*bindings::task_pt_regs(bp::current_task())).ip } as u64;
        self.enter(&mut g, Phase::Parked);
        loop {
            if g.phase == Phase::Capturing {
                let ticket = g.ticket;
                drop(g);
                let r = self.others().and_then(crate::capture::capture_current);
                g = self.state.lock();
                if g.abandoned {
                    drop(g);
                    if let Ok(id) = r {
                        // Nobody will name it: give it back (a new snapshot has no children).
                        let _ = crate::registry::get().release(id);
                    }
                    g = self.state.lock();
                } else {
                    g.result = Some((ticket, r));
                }
                self.enter(&mut g, Phase::Parked);
                continue;
            }
            if let Some(kill) = g.release {
                // A kill was sent by `release` already: the task dies on its way out.
                self.enter(&mut g, if kill { Phase::Dead } else { Phase::Resumed });
                return;
            }
            // Nothing to do: clear the mail under the lock (a request after this raises it again) and
            // sleep without the lock.
            self.mail.store(0, Ordering::SeqCst);
            drop(g);
            let killed = self.wq.wait_nonzero_killable(&self.mail).is_err();
            g = self.state.lock();
            if killed {
                if g.phase == Phase::Capturing {
                    g.result = Some((g.ticket, Err(ESRCH)));
                }
                self.enter(&mut g, Phase::Dead);
                return;
            }
        }
    }
}

/// Breakpoint overflow handler: target context, IRQs off. Queues the park work once.
unsafe extern "C" fn on_hit(ev: *mut bindings::perf_event, _d: *mut bindings::perf_sample_data, _r: *mut bindings::pt_regs) {
    // SAFETY: the context is the Freeze reference leaked in `arm`, alive until unregistration, which waits
    // for this handler.
    let f: ArcBorrow<'_, Freeze> = unsafe { ArcBorrow::from_raw(bp::handler_context(ev) as *const Freeze) };
    if f.task.as_ptr() != bp::current_task() || f.fired.swap(true, Ordering::SeqCst) {
        return;
    }
    let f: Arc<Freeze> = f.into();
    let _ = f.queue_work(Notify::SignalNoIpi);
}

/// The task work: reclaims the reference `queue_work` handed over and parks.
unsafe extern "C" fn on_work(w: *mut bindings::seuss_module_work) {
    let off = core::mem::offset_of!(Freeze, work);
    // SAFETY: `w` is the `work` field of a Freeze whose Arc reference was leaked by `queue_work`.
    let f = unsafe { Arc::from_raw((w as *const u8).sub(off) as *const Freeze) };
    f.park();
}
