// SPDX-License-Identifier: GPL-2.0
//! seuss.ko: serverless execution using snapshots.
//!
//! Freezes a 64-bit process (every one of its threads) at a hardware breakpoint, a watchpoint or its next
//! return to user mode, captures it into an immutable in-kernel snapshot (a task-less copy-on-write
//! address space plus the user CPU state of each thread), and deploys copy-on-write children of any
//! snapshot into stub processes, recreating its threads there. Snapshots captured from deployed children
//! form a tree whose nodes record their page-level diff against their parent. The ABI is
//! `uapi/include/linux/seuss.h`; ARCHITECTURE.md describes the data flow.
//!
//! Layout: `sys/` wraps the kernel's C APIs (all `unsafe` FFI lives there); `device` dispatches ioctls;
//! `freeze` arms and parks tasks; `capture` and `deploy` are the two halves of a snapshot's life;
//! `snapshot` and `registry` hold them; `armed` prevents double arming.

use kernel::prelude::*;

mod armed;
mod capture;
mod deploy;
mod device;
mod freeze;
mod registry;
mod snapshot;
mod sys;

module! {
    type: Seuss,
    name: "seuss",
    author: "seuss developers",
    description: "Serverless execution using snapshots: freeze, capture and deploy processes",
    license: "GPL",
}

struct Seuss {
    dev: Option<sys::miscdev::MiscDevice<device::Session>>,
    reg: KBox<registry::Registry>,
    _armed: core::pin::Pin<KBox<kernel::sync::Mutex<KVec<usize>>>>,
}

impl kernel::Module for Seuss {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        if !sys::task::layout_matches() {
            return Err(EINVAL);
        }
        let armed = armed::install()?;
        let reg = registry::Registry::install()?;
        let dev = sys::miscdev::MiscDevice::register(kernel::c_str!("seuss"), 0o600)?;
        pr_info!("/dev/seuss ready (ABI {}, max_pages {})\n", kernel::bindings::SEUSS_ABI_VERSION, sys::param::max_pages());
        Ok(Seuss { dev: Some(dev), reg, _armed: armed })
    }
}

impl Drop for Seuss {
    fn drop(&mut self) {
        // No file is open (each holds a module reference), so no ioctl or freeze can be running.
        self.dev.take();
        let n = self.reg.snapshot_count();
        self.reg.clear();
        registry::Registry::uninstall();
        pr_info!("unloaded, freed {} snapshots\n", n);
    }
}
