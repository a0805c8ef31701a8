// SPDX-License-Identifier: GPL-2.0
//! The wait queue a parked task sleeps on, killable and freezable, holding no lock, until its freeze has
//! mail (a flag set under the freeze's lock). Controllers wait on the freeze's `CondVar` instead: 6.12's
//! `CondVar` has no killable or freezable wait, and a parked task must be both (SIGKILL ends it; suspend
//! and the cgroup freezer must not wait for it).

use core::sync::atomic::AtomicI32;
use kernel::bindings;
use kernel::error::{code::*, Result};
use kernel::types::Opaque;

/// A `wait_queue_head`, initialised in place by [`WaitQueue::init`] once it has its final address.
pub(crate) struct WaitQueue(Opaque<bindings::wait_queue_head>);

// SAFETY: wait queues are internally locked.
unsafe impl Send for WaitQueue {}
// SAFETY: as above.
unsafe impl Sync for WaitQueue {}

impl WaitQueue {
    /// An uninitialised queue.
    pub(crate) const fn new() -> Self {
        Self(Opaque::uninit())
    }

    /// Initialises the queue.
    ///
    /// # Safety
    /// Must be called exactly once, before any other method, and `self` must not move afterwards.
    pub(crate) unsafe fn init(&self) {
        // SAFETY: the caller guarantees a stable address and a single initialisation.
        unsafe { bindings::init_waitqueue_head(self.0.get()) };
    }

    /// Sleeps (killable, freezable; call with no lock held) until `cond` is non-zero. `Err(EINTR)` when a
    /// fatal signal arrived.
    pub(crate) fn wait_nonzero_killable(&self, cond: &AtomicI32) -> Result {
        // SAFETY: the queue is initialised (type usage contract); `cond` is a valid int for the wait.
        let r = unsafe { bindings::seuss_wait_killable_freezable(self.0.get(), cond.as_ptr()) };
        if r != 0 { Err(EINTR) } else { Ok(()) }
    }

    /// Wakes every sleeper.
    pub(crate) fn wake_all(&self) {
        // SAFETY: the queue is initialised.
        unsafe { bindings::wake_up_all(self.0.get()) };
    }
}
