/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * seuss.h - the ioctl ABI of /dev/seuss (serverless execution using snapshots).
 *
 * This header is the single source of truth for the ABI. The kernel module sees it through the kernel
 * build's Rust bindings (scripts/kernel.sh installs it as include/uapi/linux/seuss.h); userspace sees it
 * through the `uapi` crate, whose Rust types bindgen generates from this file.
 *
 * Conventions shared by every argument struct:
 *  - @size is the first field and must be set by the caller to sizeof(the struct it was built against).
 *    The kernel accepts any size >= the size of the struct's first ABI version and rejects smaller ones with
 *    -EINVAL, so the ABI can grow at the end.
 *  - @flags must contain only the bits documented for that ioctl; any other bit gives -EINVAL.
 *  - Reserved/padding fields must be zero (-EINVAL otherwise).
 *  - All fields have fixed sizes; pointers travel as __u64.
 *
 * Errors common to all ioctls: -EFAULT (bad user pointer), -EINVAL (bad size/flags/reserved),
 * -ENOTTY (unknown ioctl, or an ioctl number whose direction or size bits differ from the ones below),
 * -EPERM (see "Ownership"), -ENOMEM. A wait interrupted by a signal ends with -ERESTARTSYS (seen as
 * -EINTR by a handler without SA_RESTART).
 *
 * Ownership: every snapshot has an owner, the real uid (initial user namespace) of the task it was
 * captured from (struct seuss_snap_info.uid). A caller whose real uid is not the owner needs
 * CAP_SYS_ADMIN to SNAP_INFO, SNAP_RELEASE or DEPLOY it (-EPERM otherwise), and SNAP_LIST without
 * CAP_SYS_ADMIN lists only the caller's own snapshots.
 *
 * Freezes: a freeze belongs to the open file that armed it and is released (the task resumes) when the
 * process that armed it closes that descriptor or exits, or when the file's last reference goes. So a
 * copy of the descriptor that a child inherited (or a frozen task holds) never keeps a task frozen.
 * The device is root-only (0600): an unprivileged caller holds a descriptor only because a privileged
 * process passed it on, and a successful DEPLOY closes every descriptor of the device in the deployed
 * process (see struct seuss_deploy), so code running in a deployed child never holds one.
 */
#ifndef _UAPI_LINUX_SEUSS_H
#define _UAPI_LINUX_SEUSS_H

#include <linux/types.h>
#include <linux/ioctl.h>

/** SEUSS_ABI_VERSION - bumped on every incompatible change of this header. */
#define SEUSS_ABI_VERSION 3

/* Feature bits reported by SEUSS_IOC_VERSION. */
#define SEUSS_FEAT_VERSION   (1ULL << 0) /* SEUSS_IOC_VERSION */
#define SEUSS_FEAT_FREEZE    (1ULL << 1) /* ARM / WAIT / RESUME */
#define SEUSS_FEAT_CAPTURE   (1ULL << 2) /* CAPTURE / SNAP_INFO / SNAP_LIST / SNAP_RELEASE */
#define SEUSS_FEAT_DEPLOY    (1ULL << 3) /* DEPLOY */
#define SEUSS_FEAT_DIRTY     (1ULL << 4) /* DIRTY */
#define SEUSS_FEAT_STATS     (1ULL << 5) /* STATS */
#define SEUSS_FEAT_THREADS   (1ULL << 6) /* multi-threaded processes: ARM, CAPTURE, DEPLOY */

#define SEUSS_IOC_MAGIC 0xE5

/**
 * struct seuss_version - argument of %SEUSS_IOC_VERSION.
 * @size: in, sizeof(struct seuss_version).
 * @flags: in, must be 0.
 * @abi_version: out, %SEUSS_ABI_VERSION of the running module.
 * @reserved: must be 0.
 * @features: out, %SEUSS_FEAT_* bits the module implements.
 */
struct seuss_version {
	__u32 size;
	__u32 flags;
	__u32 abi_version;
	__u32 reserved;
	__u64 features;
};

/* Kinds of freeze point for struct seuss_arm.kind. */
#define SEUSS_ARM_EXEC  1 /* execute breakpoint at @addr (stops before the instruction runs) */
#define SEUSS_ARM_WRITE 2 /* write watchpoint of @len bytes on @addr (stops after the store) */
#define SEUSS_ARM_NOW   3 /* freeze at the task's next return to user mode (@addr, @len ignored, must be 0) */

/* Flags of struct seuss_arm. */
#define SEUSS_ARM_PIDFD (1U << 0) /* @pid is a pidfd, not a pid */

/**
 * struct seuss_arm - argument of %SEUSS_IOC_ARM: arm a freeze point on a 64-bit task (one thread of a
 *	process; the breakpoint or watchpoint fires in that thread only, and then every thread is parked).
 * @size: in.
 * @flags: in, %SEUSS_ARM_PIDFD or 0.
 * @pid: in, pid (in the caller's pid namespace) or pidfd of the target.
 * @kind: in, %SEUSS_ARM_EXEC, %SEUSS_ARM_WRITE or %SEUSS_ARM_NOW.
 * @addr: in, user virtual address of the breakpoint/watchpoint.
 * @len: in, watchpoint length 1, 2, 4 or 8 (aligned); 0 for the other kinds.
 * @reserved: must be 0.
 * @freeze_id: out, handle of this freeze, valid on the same open file only (see "Freezes" above).
 *
 * The caller needs ptrace-attach permission over the target, checked first: without it every existing
 * task gives -EPERM. Then: -ESRCH no such task, or it is exiting, a kernel thread or has no mm; -EINVAL
 * the caller itself; -EOPNOTSUPP 32-bit; -EBUSY already armed or frozen; -ENOSPC no free
 * debug register; -EBADF the calling process no longer has a descriptor of the file (another thread closed
 * it during the call), and nothing stays armed. The freeze never parks an image the target exec'd after
 * ARM: such a freeze ends DEAD.
 */
struct seuss_arm {
	__u32 size;
	__u32 flags;
	__s32 pid;
	__u32 kind;
	__u64 addr;
	__u32 len;
	__u32 reserved;
	__u64 freeze_id;
};

/* States reported by struct seuss_wait.state. */
#define SEUSS_STATE_ARMED    1 /* waiting for the freeze point */
#define SEUSS_STATE_FROZEN   2 /* parked at the freeze point */
#define SEUSS_STATE_RESUMED  3 /* released, runs on */
#define SEUSS_STATE_DEAD     4 /* exited, was killed, or exec'd before parking (the freeze is gone) */

/**
 * struct seuss_wait - argument of %SEUSS_IOC_WAIT: wait until a freeze fires, or query its state.
 * @size: in.
 * @flags: in, must be 0.
 * @freeze_id: in.
 * @timeout_ms: in, 0 = just report the state, otherwise wait up to this long for it to leave ARMED.
 * @state: out, %SEUSS_STATE_*.
 * @reserved: must be 0.
 * @ip: out, user instruction pointer where the task is parked (valid when FROZEN).
 *
 * FROZEN means every thread of the process is parked (threads created while the park spreads are parked
 * too). Returns 0 with @state set (at once when an ARMED target exits); -ETIMEDOUT when still ARMED after
 * @timeout_ms; -ERESTARTSYS on a signal.
 */
struct seuss_wait {
	__u32 size;
	__u32 flags;
	__u64 freeze_id;
	__u32 timeout_ms;
	__u32 state;
	__u64 ip;
};

/**
 * struct seuss_capture - argument of %SEUSS_IOC_CAPTURE: snapshot a frozen task.
 * @size: in.
 * @flags: in, must be 0.
 * @freeze_id: in, a FROZEN freeze of this file.
 * @snap_id: out, id of the new immutable snapshot (global, >= 1).
 *
 * Errors: -EAGAIN not frozen (yet), -ESRCH the task died or the freeze was released, -EOPNOTSUPP the task
 * holds state that cannot be captured (io_uring, shared writable anonymous memory, device mappings,
 * hugetlb, 32-bit, its mm or signal handlers shared with another process, in any of its threads), -ENOSPC the module's page cap (parameter max_pages) would be exceeded,
 * -ENOENT the task is an instance of a snapshot that has been released since. -ERESTARTSYS: a signal
 * interrupted the wait; the capture is abandoned and leaves no snapshot. Concurrent CAPTUREs of one
 * freeze run one after the other.
 */
struct seuss_capture {
	__u32 size;
	__u32 flags;
	__u64 freeze_id;
	__u64 snap_id;
};

/* Flags of struct seuss_release_task. */
#define SEUSS_RELEASE_RESUME 0         /* let the task run on */
#define SEUSS_RELEASE_KILL   (1U << 0) /* SIGKILL it */

/**
 * struct seuss_release_task - argument of %SEUSS_IOC_RESUME: release a freeze (armed or frozen).
 * @size: in.
 * @flags: in, %SEUSS_RELEASE_KILL or 0 (resume).
 * @freeze_id: in; the handle is invalid afterwards.
 */
struct seuss_release_task {
	__u32 size;
	__u32 flags;
	__u64 freeze_id;
};

/* Flags of struct seuss_deploy. */
#define SEUSS_DEPLOY_TID    (1U << 0) /* store the new tid (u32) at @tid_addr, like CLONE_CHILD_SETTID */
#define SEUSS_DEPLOY_COOKIE (1U << 1) /* store @cookie (u64) at @cookie_addr */

/**
 * struct seuss_deploy - argument of %SEUSS_IOC_DEPLOY: become a copy-on-write child of a snapshot.
 * @size: in.
 * @flags: in, %SEUSS_DEPLOY_TID | %SEUSS_DEPLOY_COOKIE.
 * @snap_id: in.
 * @tid_addr: in, see %SEUSS_DEPLOY_TID.
 * @cookie_addr: in, see %SEUSS_DEPLOY_COOKIE.
 * @cookie: in.
 *
 * The calling (single-threaded) process's address space, registers, FPU state, signal handlers, mask and
 * altstack, rseq and robust-list registration and name are replaced by the snapshot's; on success the ioctl
 * does not return to the caller's code but into the snapshot's saved context, every register as it was there
 * (all 64 bits of rax included). The caller becomes the snapshot's first thread (its process's leader when
 * captured); each other thread is recreated in the caller's process with its own saved state, and its new
 * tid is stored at its set_tid_address() pointer (the C library's per-thread tid field), so joins, signals
 * to threads and error-checking mutexes work. A thread captured inside an interrupted system call restarts
 * it, except one with a restart block (nanosleep, a futex or poll with a timeout): that call returns
 * -EINTR. Owner tids inside robust or PI futexes are not rewritten: freeze where no such lock is held. Its pid, credentials, cgroup, namespaces and files stay, except that every
 * descriptor of /dev/seuss in the caller's fd table is closed. The new address space keeps the snapshot's
 * user namespace and dumpability. Errors (returned to the caller, which is unchanged): -ENOENT no such
 * snapshot, -EPERM not entitled (see "Ownership"), -EOPNOTSUPP the caller is multi-threaded, shares its
 * mm, fd table or signal handlers, holds an io_uring or runs a 32-bit syscall, -EBUSY the caller is
 * ptraced, -EFAULT @tid_addr / @cookie_addr is misaligned or not in a writable mapping of the snapshot,
 * -EINTR a fatal signal is pending. After the point of no return only a failure to store @tid / @cookie
 * remains (the write to a checked, writable mapping can then fail only for want of memory, or by fault
 * injection), and creating the other threads (memory, RLIMIT_NPROC, pids.max): the caller is then killed
 * (SIGKILL), as exec kills a task that fails past its own point of
 * no return.
 */
struct seuss_deploy {
	__u32 size;
	__u32 flags;
	__u64 snap_id;
	__u64 tid_addr;
	__u64 cookie_addr;
	__u64 cookie;
};

/**
 * struct seuss_snap_info - argument of %SEUSS_IOC_SNAP_INFO.
 * @size: in.
 * @flags: in, must be 0.
 * @snap_id: in.
 * @parent_id: out, 0 for a root snapshot.
 * @depth: out, 0 for a root snapshot.
 * @uid: out, uid of the captured task.
 * @pages_mapped: out, present user pages in the snapshot.
 * @pages_private: out, anonymous pages not shared with the parent snapshot (the page-level diff).
 * @pt_bytes: out, bytes of page tables the snapshot holds.
 * @capture_ns: out, time the capture took.
 * @children: out, snapshots whose parent this is.
 * @deployed: out, deploys made from it so far.
 * @pages_unchanged: out, pages the captured task had copied but not changed: mapped from the parent
 *	snapshot again at capture (module parameter share_unchanged), so not counted in @pages_private.
 * @threads: out, threads the snapshot holds (a DEPLOY recreates them all).
 * @reserved: out, 0.
 */
struct seuss_snap_info {
	__u32 size;
	__u32 flags;
	__u64 snap_id;
	__u64 parent_id;
	__u32 depth;
	__u32 uid;
	__u64 pages_mapped;
	__u64 pages_private;
	__u64 pt_bytes;
	__u64 capture_ns;
	__u64 children;
	__u64 deployed;
	__u64 pages_unchanged;
	__u32 threads;
	__u32 reserved;
};

/**
 * struct seuss_snap_list - argument of %SEUSS_IOC_SNAP_LIST.
 * @size: in.
 * @flags: in, must be 0.
 * @ids_addr: in, user array of @capacity __u64 receiving snapshot ids in ascending order.
 * @capacity: in, entries @ids_addr can hold.
 * @count: out, number of snapshots the caller may see (all with CAP_SYS_ADMIN, else its own; may exceed
 *	@capacity; only @capacity are written).
 */
struct seuss_snap_list {
	__u32 size;
	__u32 flags;
	__u64 ids_addr;
	__u32 capacity;
	__u32 count;
};

/**
 * struct seuss_snap_release - argument of %SEUSS_IOC_SNAP_RELEASE.
 * @size: in.
 * @flags: in, must be 0.
 * @snap_id: in.
 *
 * Errors: -ENOENT no such snapshot, -EPERM not its owner (see "Ownership"), -EBUSY it has children
 * (release them first). Instances already deployed from it keep running: they own their own address
 * spaces.
 */
struct seuss_snap_release {
	__u32 size;
	__u32 flags;
	__u64 snap_id;
};

/**
 * struct seuss_dirty - argument of %SEUSS_IOC_DIRTY: private pages of a deployed instance.
 * @size: in.
 * @flags: in, must be 0.
 * @pid: in, a process deployed by %SEUSS_IOC_DEPLOY (ptrace-read permission needed).
 * @reserved: must be 0.
 * @snap_id: out, snapshot it was deployed from.
 * @pages_private: out, anonymous pages it has made private (written or newly allocated) since deploy.
 */
struct seuss_dirty {
	__u32 size;
	__u32 flags;
	__s32 pid;
	__u32 reserved;
	__u64 snap_id;
	__u64 pages_private;
};

/**
 * struct seuss_stats - argument of %SEUSS_IOC_STATS: module-wide counters.
 * @size: in.
 * @flags: in, must be 0.
 * @snapshots: out, live snapshots.
 * @pages_held: out, private pages of all live snapshots (what the cap counts; see seuss_snap_info).
 * @max_pages: out, the cap (module parameter max_pages).
 * @deploys: out, deploys since load.
 * @instances: out, live deployed instances.
 * @frozen: out, tasks armed or parked right now (until released).
 */
struct seuss_stats {
	__u32 size;
	__u32 flags;
	__u64 snapshots;
	__u64 pages_held;
	__u64 max_pages;
	__u64 deploys;
	__u64 instances;
	__u64 frozen;
};

#define SEUSS_IOC_VERSION      _IOWR(SEUSS_IOC_MAGIC, 0x00, struct seuss_version)
#define SEUSS_IOC_ARM          _IOWR(SEUSS_IOC_MAGIC, 0x01, struct seuss_arm)
#define SEUSS_IOC_WAIT         _IOWR(SEUSS_IOC_MAGIC, 0x02, struct seuss_wait)
#define SEUSS_IOC_CAPTURE      _IOWR(SEUSS_IOC_MAGIC, 0x03, struct seuss_capture)
#define SEUSS_IOC_RESUME       _IOW(SEUSS_IOC_MAGIC, 0x04, struct seuss_release_task)
#define SEUSS_IOC_DEPLOY       _IOW(SEUSS_IOC_MAGIC, 0x05, struct seuss_deploy)
#define SEUSS_IOC_SNAP_INFO    _IOWR(SEUSS_IOC_MAGIC, 0x06, struct seuss_snap_info)
#define SEUSS_IOC_SNAP_LIST    _IOWR(SEUSS_IOC_MAGIC, 0x07, struct seuss_snap_list)
#define SEUSS_IOC_SNAP_RELEASE _IOW(SEUSS_IOC_MAGIC, 0x08, struct seuss_snap_release)
#define SEUSS_IOC_DIRTY        _IOWR(SEUSS_IOC_MAGIC, 0x09, struct seuss_dirty)
#define SEUSS_IOC_STATS        _IOWR(SEUSS_IOC_MAGIC, 0x0a, struct seuss_stats)

#endif /* _UAPI_LINUX_SEUSS_H */
