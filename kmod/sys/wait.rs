// SPDX-License-Identifier: GPL-2.0
//! A wait queue for freeze handshakes: the parked task sleeps killable and freezable until a command
//! arrives; the controller sleeps until the parked task answers.

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

    /// Sleeps (killable, freezable) until `cond` is non-zero. `Err(EINTR)` when a fatal signal arrived.
    pub(crate) fn wait_nonzero_killable(&self, cond: &AtomicI32) -> Result {
        // SAFETY: the queue is initialised (type usage contract); `cond` is a valid int for the wait.
        let r = unsafe { bindings::seuss_wait_killable_freezable(self.0.get(), cond.as_ptr()) };
        if r != 0 { Err(EINTR) } else { Ok(()) }
    }

    /// Sleeps (interruptible) until `val != old`, at most `ms` milliseconds. `Ok(false)` on timeout.
    pub(crate) fn wait_change_timeout(&self, val: &AtomicI32, old: i32, ms: u32) -> Result<bool> {
        // SAFETY: no preconditions.
        let j = unsafe { bindings::msecs_to_jiffies(ms) } as i64;
        // SAFETY: as in `wait_nonzero_killable`.
        let r = unsafe { bindings::seuss_wait_change_timeout(self.0.get(), val.as_ptr(), old, j as _) };
        if r < 0 {
            Err(EINTR)
        } else {
            Ok(r > 0)
        }
    }

    /// Wakes every sleeper.
    pub(crate) fn wake_all(&self) {
        // SAFETY: the queue is initialised.
        unsafe { bindings::wake_up_all(self.0.get()) };
    }
}
