//! `seuss-stub`: the single-threaded process a deploy turns into an instance. It has the instance's
//! stdin/stdout/stderr, result pipe (fd 3) and control socket (fd 4) and an open snapshot device; running as
//! the instance user, it waits on fd 4 for `deploy SNAP COOKIE_ADDR COOKIE TID_ADDR`. On success the deploy
//! never returns: the process continues as a copy-on-write child of the snapshot. On failure it reports
//! `error STEP ERRNO NAME: text` on fd 4 and stderr and exits 70. EOF on fd 4 (seussd discarding a pooled
//! stub) exits 0.
//!
//! Two ways to get one:
//! - `seuss-stub --device D [--uid U --gid G]`: seussd spawns it (as root) with the five descriptors in
//!   place; it opens the device, drops to the instance user and waits.
//! - `seuss-stub --zygote --device D [--uid U --gid G]`: a long-lived root process that opens the device
//!   once and forks stubs on request, so a new stub costs a fork of this small process instead of a fork
//!   of seussd, an exec and dynamic linking. Requests come on a `SOCK_SEQPACKET` socket on fd 0: one byte
//!   `S`, then the `cgroup.procs` path the stub joins (may be empty), with the five descriptors attached
//!   (`SCM_RIGHTS`, in fd order 0-4). The reply is `ok PID` with a pidfd of the stub attached, or
//!   `error TEXT`. EOF on fd 0 ends the zygote; its stubs die with it (parent-death signal), and it dies
//!   with seussd.

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const CONTROL_FD: i32 = 4;
const REQUEST_FD: i32 = 0;

fn fail(msg: &str, code: i32) -> ! {
    use std::io::Write;
    // SAFETY: fd 4 is the control socket seussd set up; ManuallyDrop keeps it open.
    let mut ctl = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(CONTROL_FD) });
    let _ = writeln!(ctl, "error {msg}");
    eprintln!("seuss-stub: {msg}");
    std::process::exit(code)
}

fn errno_msg(e: nix::errno::Errno) -> String {
    format!("{} {:?}: {}", e as i32, e, e.desc())
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// `(uid, gid)` from `--uid`/`--gid`, if both are given.
fn cred(args: &[String]) -> Result<Option<(u32, u32)>, String> {
    match (arg(args, "--uid"), arg(args, "--gid")) {
        (Some(u), Some(g)) => match (u.parse(), g.parse()) {
            (Ok(u), Ok(g)) => Ok(Some((u, g))),
            _ => Err("bad --uid/--gid".into()),
        },
        _ => Ok(None),
    }
}

/// Becomes the instance user and asks to die with the parent (after setuid: a credential change clears
/// the parent-death signal). `parent` is the pid the parent had while it was known alive: if it died
/// before the signal was asked for, nothing would ever kill this process, so it exits now.
fn drop_privileges(cred: Option<(u32, u32)>, parent: libc::pid_t) -> Result<(), String> {
    if let Some((uid, gid)) = cred {
        let gid = nix::unistd::Gid::from_raw(gid);
        nix::unistd::setgroups(&[gid])
            .and_then(|_| nix::unistd::setgid(gid))
            .and_then(|_| nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)))
            .map_err(|e| format!("setuid: {}", errno_msg(e)))?;
    }
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        std::process::exit(0);
    }
    Ok(())
}

/// Reads one line from the control socket and nothing after it (what follows belongs to the instance):
/// peeks, then consumes up to the newline, so a command costs two system calls rather than one per byte.
/// `None` at the end of the stream before any byte.
fn read_control_line() -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = match nix::sys::socket::recv(CONTROL_FD, &mut buf, MsgFlags::MSG_PEEK) {
            Ok(0) if line.is_empty() => return None,
            Ok(0) => return Some(line),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => fail(&format!("reading fd 4: {}", errno_msg(e)), 70),
        };
        // Consume through the newline if it is there, else all that was peeked (all of it is this line).
        let nl = buf[..n].iter().position(|&b| b == b'\n');
        let take = nl.map_or(n, |i| i + 1);
        match nix::unistd::read(CONTROL_FD, &mut buf[..take]) {
            Ok(got) if got == take => {}
            Ok(got) => fail(&format!("reading fd 4: {got} of {take} peeked bytes"), 70),
            Err(e) => fail(&format!("reading fd 4: {}", errno_msg(e)), 70),
        }
        if let Some(i) = nl {
            line.extend_from_slice(&buf[..i]);
            return Some(line);
        }
        line.extend_from_slice(&buf[..n]);
    }
}

/// Waits for the deploy command on fd 4 and deploys; never returns.
fn wait_and_deploy(dev: &uapi::Device) -> ! {
    let Some(line) = read_control_line() else { std::process::exit(0) };
    let line = String::from_utf8_lossy(&line).into_owned();
    let f: Vec<&str> = line.split_whitespace().collect();
    let nums: Vec<u64> = f.iter().skip(1).filter_map(|s| s.parse().ok()).collect();
    if f.first() != Some(&"deploy") || nums.len() != 4 {
        fail(&format!("bad command '{line}'"), 64);
    }
    let opts = uapi::DeployOpts {
        tid_addr: (nums[3] != 0).then_some(nums[3]),
        cookie: (nums[1] != 0).then_some((nums[1], nums[2])),
    };
    match dev.deploy(nums[0], opts) {
        Ok(_) => fail("deploy returned to the stub", 70),
        Err(e) => fail(&format!("deploy {}", errno_msg(e)), 70),
    }
}

fn main() {
    // Spawned by seussd, whose parent-death signal (set before the exec) holds until the setuid below:
    // the parent is alive now, or this process is already being killed.
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let args: Vec<String> = std::env::args().collect();
    let device = arg(&args, "--device").unwrap_or_else(|| uapi::DEVICE_PATH.to_string());
    let cred = cred(&args).unwrap_or_else(|e| fail(&e, 64));
    let dev = uapi::Device::open_path(std::path::Path::new(&device))
        .unwrap_or_else(|e| fail(&format!("open {device}: {}", errno_msg(e)), 70));
    if args.iter().any(|a| a == "--zygote") {
        zygote(dev, cred);
    }
    if let Err(e) = drop_privileges(cred, parent) {
        fail(&e, 70);
    }
    wait_and_deploy(&dev)
}

/// Sends a reply on the request socket, with `fd` attached if given.
fn reply(text: &str, fd: Option<RawFd>) {
    let fds = fd.map(|f| [f]);
    let cmsg: Vec<ControlMessage> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
    let _ = sendmsg::<()>(REQUEST_FD, &[IoSlice::new(text.as_bytes())], &cmsg, MsgFlags::empty(), None);
}

fn zygote(dev: uapi::Device, cred: Option<(u32, u32)>) -> ! {
    // Keep the device above the numbers the stubs' descriptors are moved to.
    // SAFETY: fcntl duplicates a descriptor this process owns; the copy is owned by the new Device.
    let high = unsafe { libc::fcntl(dev.raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
    if high < 0 {
        eprintln!("seuss-stub: zygote: moving the device: {}", std::io::Error::last_os_error());
        std::process::exit(70);
    }
    drop(dev);
    // SAFETY: `high` is a fresh descriptor nothing else owns.
    let dev = uapi::Device::from_fd(unsafe { OwnedFd::from_raw_fd(high) });
    // SAFETY: plain signal disposition and prctl calls. Ignoring SIGCHLD lets the kernel reap the stubs
    // (seussd watches them through pidfds); the parent-death signal ties the zygote to seussd.
    // (seussd asked for the signal before the exec too, and checked it was still the parent then.)
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
    let mut buf = vec![0u8; 4096];
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 5]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let (n, fds) = match recvmsg::<()>(REQUEST_FD, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = m.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(v) = c {
                            // SAFETY: descriptors received with SCM_RIGHTS are new and ours.
                            fds.extend(v.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
                        }
                    }
                }
                (m.bytes, fds)
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("seuss-stub: zygote: recvmsg: {e}");
                std::process::exit(70)
            }
        };
        if n == 0 {
            std::process::exit(0); // seussd closed the socket
        }
        if buf[0] != b'S' || fds.len() != 5 {
            reply("error bad request", None);
            continue;
        }
        let cgroup = std::ffi::CString::new(&buf[1..n]).ok();
        let zygote_pid = std::process::id() as libc::pid_t;
        // SAFETY: the zygote is single-threaded, so the child may do anything after fork.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => become_stub(&dev, fds, cgroup, cred, zygote_pid),
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                drop(fds);
                // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
                let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) } as RawFd;
                if pidfd < 0 {
                    reply(&format!("error pidfd_open: {}", std::io::Error::last_os_error()), None);
                    continue;
                }
                reply(&format!("ok {child}"), Some(pidfd));
                // SAFETY: the pidfd was sent (the receiver has its own copy); close ours.
                unsafe { libc::close(pidfd) };
            }
            Err(e) => reply(&format!("error fork: {}", errno_msg(e)), None),
        }
    }
}

/// In a forked child of the zygote: puts the received descriptors on 0-4, joins the cgroup, drops
/// privileges, waits for the deploy command.
fn become_stub(
    dev: &uapi::Device,
    fds: Vec<OwnedFd>,
    cgroup: Option<std::ffi::CString>,
    cred: Option<(u32, u32)>,
    zygote_pid: libc::pid_t,
) -> ! {
    // SAFETY: plain descriptor calls on descriptors this process owns. Every received descriptor is first
    // moved above 64 so that no dup2 onto 0-4 can clobber one not yet placed.
    unsafe {
        let high: Vec<RawFd> = fds.iter().map(|f| libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64)).collect();
        drop(fds);
        for (target, fd) in high.iter().enumerate() {
            if *fd < 0 || libc::dup2(*fd, target as RawFd) < 0 {
                eprintln!("seuss-stub: placing descriptor {target}: {}", std::io::Error::last_os_error());
                std::process::exit(70);
            }
            libc::close(*fd);
        }
        if let Some(p) = cgroup.filter(|p| !p.as_bytes().is_empty()) {
            let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                eprintln!("seuss-stub: joining {p:?}: {}", std::io::Error::last_os_error());
            }
            if fd >= 0 {
                libc::close(fd);
            }
        }
    }
    // A fork does not inherit the parent-death signal: until drop_privileges asks for it, the zygote's
    // death would go unnoticed (it checks the zygote is still the parent).
    if let Err(e) = drop_privileges(cred, zygote_pid) {
        fail(&e, 70);
    }
    wait_and_deploy(dev)
}
