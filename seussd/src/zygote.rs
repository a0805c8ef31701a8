//! The stub zygote: one long-lived `seuss-stub --zygote` (root, with the snapshot device open) that forks
//! deploy stubs on request. A stub then costs a fork of that small single-threaded process, not a fork of
//! seussd plus an exec and dynamic linking, which on a busy host competed with the very deploys the
//! stubs serve. The protocol is described in `src/bin/seuss-stub.rs`; a stub made this way is not seussd's
//! child, so [`crate::proc::Proc`] watches it through a pidfd.

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug)]
pub struct Zygote {
    /// Requests and replies, one at a time.
    sock: Mutex<OwnedFd>,
    child: std::process::Child,
}

impl Zygote {
    /// Starts `stub --zygote`; `args` are the stub's usual arguments (device, instance user).
    pub fn start(stub: &Path, args: &[String]) -> std::io::Result<Self> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let parent = std::process::id() as libc::pid_t;
        let mut cmd = std::process::Command::new(stub);
        cmd.arg("--zygote")
            .args(args)
            .env_clear()
            .current_dir("/")
            .stdin(std::process::Stdio::from(theirs));
        // SAFETY: runs in the forked child before exec, async-signal-safe calls only. The parent-death
        // signal (kept across the exec: no credential change) ties the zygote, and so its stubs, to
        // seussd; a seussd that died before it was set would leave it running, hence the check.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("seussd exited"));
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(Self {
            sock: Mutex::new(ours),
            child,
        })
    }

    /// Has the zygote fork a stub with `fds` as its descriptors 0-4, joining `cgroup_procs` (a
    /// `cgroup.procs` file) if given. Returns the stub's pid and a pidfd for it.
    pub fn fork_stub(
        &self,
        fds: &[OwnedFd; 5],
        cgroup_procs: Option<&Path>,
    ) -> std::io::Result<(i32, OwnedFd)> {
        let mut req = b"S".to_vec();
        if let Some(p) = cgroup_procs {
            req.extend_from_slice(p.as_os_str().as_bytes());
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&req)],
            &[ControlMessage::ScmRights(&raw)],
            MsgFlags::empty(),
            None,
        )?;
        let mut buf = [0u8; 512];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut pidfd = None;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(v) = c {
                for f in v {
                    // SAFETY: a descriptor received with SCM_RIGHTS is new and ours.
                    let f = unsafe { OwnedFd::from_raw_fd(f) };
                    pidfd.get_or_insert(f);
                }
            }
        }
        let n = msg.bytes;
        drop(iov);
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if n == 0 {
            return Err(std::io::Error::other("the stub zygote exited"));
        }
        match (text.strip_prefix("ok ").and_then(|p| p.parse::<i32>().ok()), pidfd) {
            (Some(pid), Some(fd)) => Ok((pid, fd)),
            _ => Err(std::io::Error::other(format!("stub zygote: {text}"))),
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
