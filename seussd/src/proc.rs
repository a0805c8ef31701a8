//! Instance processes and their pipes. Every process seussd starts for a function (a cold `python3`, the
//! source of the runtime snapshot, a deploy stub) gets stdin/stdout/stderr pipes, a result pipe on fd 3 and
//! a control socket on fd 4; background tasks cut the readable ends into bounded lines delivered over
//! channels (so waiting on several of them at once is cancel-safe).

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use std::os::fd::OwnedFd;
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::mpsc;

/// One line read from an instance (without its newline), or notice that a line exceeded the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Data(Vec<u8>),
    TooLong,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Switch to this (uid, gid) before exec.
    pub cred: Option<(u32, u32)>,
    /// `cgroup.procs` file the child moves itself into before exec.
    pub cgroup_procs: Option<PathBuf>,
    /// Longest line kept per stream (longer ones arrive as [`Line::TooLong`]).
    pub max_line: usize,
}

/// How seussd watches a process: its own child, or (a stub forked by the zygote) a pidfd.
#[derive(Debug)]
enum Handle {
    Child(Child),
    Pidfd(tokio::io::unix::AsyncFd<OwnedFd>),
}

/// SIGKILLs the process behind a pidfd (ESRCH, ignored, once it is gone).
fn pidfd_kill(fd: &impl AsRawFd) {
    // SAFETY: pidfd_send_signal on a valid pidfd, without siginfo or flags.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), libc::SIGKILL, 0usize, 0u32) };
}

impl Drop for Handle {
    /// Like `kill_on_drop` for children: a stub nobody holds any more is killed.
    fn drop(&mut self) {
        if let Handle::Pidfd(fd) = self {
            pidfd_kill(fd);
        }
    }
}

/// A started process with its protocol channels.
#[derive(Debug)]
pub struct Proc {
    pub pid: i32,
    handle: Handle,
    stdin: Option<pipe::Sender>,
    ctl_w: tokio::net::unix::OwnedWriteHalf,
    pub result: mpsc::Receiver<Line>,
    pub stdout: mpsc::Receiver<Line>,
    pub stderr: mpsc::Receiver<Line>,
    pub ctl: mpsc::Receiver<Line>,
}

/// The descriptors of one instance: the child's ends (its fds 0-4, in order) and seussd's.
pub(crate) struct Plumbing {
    pub child: [OwnedFd; 5],
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    result: OwnedFd,
    ctl: std::os::unix::net::UnixStream,
}

impl Plumbing {
    pub(crate) fn new() -> std::io::Result<Self> {
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from);
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (res_r, res_w) = pipe()?;
        let (ctl_parent, ctl_child) = std::os::unix::net::UnixStream::pair()?;
        Ok(Self {
            child: [in_r, out_w, err_w, res_w, ctl_child.into()],
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
            result: res_r,
            ctl: ctl_parent,
        })
    }
}

fn reader<R: AsyncRead + Unpin + Send + 'static>(mut r: R, max: usize) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        let mut skipping = false;
        loop {
            let n = match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut data = &chunk[..n];
            while let Some(i) = data.iter().position(|b| *b == b'\n') {
                let line = if skipping {
                    skipping = false;
                    Line::TooLong
                } else {
                    buf.extend_from_slice(&data[..i]);
                    Line::Data(std::mem::take(&mut buf))
                };
                if tx.send(line).await.is_err() {
                    return;
                }
                data = &data[i + 1..];
            }
            if !skipping {
                buf.extend_from_slice(data);
                if buf.len() > max {
                    buf = Vec::new();
                    skipping = true;
                }
            }
        }
        let last = if skipping {
            Some(Line::TooLong)
        } else {
            (!buf.is_empty()).then_some(Line::Data(buf))
        };
        if let Some(l) = last {
            let _ = tx.send(l).await;
        }
    });
    rx
}

fn cstring(p: &std::path::Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

impl Proc {
    /// Starts a process as described by `spec`.
    pub fn spawn(spec: &SpawnSpec) -> std::io::Result<Proc> {
        let plumbing = Plumbing::new()?;
        let [c_in, c_out, c_err, c_res, c_ctl] = &plumbing.child;
        let res_w_fd = c_res.as_raw_fd();
        let ctl_child_fd = c_ctl.as_raw_fd();
        let cg = spec.cgroup_procs.as_deref().map(cstring).transpose()?;
        let cred = spec.cred;
        let parent = std::process::id() as libc::pid_t;

        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir("/")
            .stdin(std::process::Stdio::from(c_in.try_clone()?))
            .stdout(std::process::Stdio::from(c_out.try_clone()?))
            .stderr(std::process::Stdio::from(c_err.try_clone()?))
            .kill_on_drop(true);
        // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe system
        // calls on values prepared before the fork (no allocation, no locks).
        unsafe {
            cmd.pre_exec(move || {
                let err = std::io::Error::last_os_error;
                // Move both ends above the target numbers first, so dup2 cannot clobber one with the other.
                let a = libc::fcntl(res_w_fd, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(ctl_child_fd, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(err());
                }
                libc::close(a);
                libc::close(b);
                if let Some(p) = &cg {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd >= 0 {
                        libc::write(fd, b"0".as_ptr().cast(), 1);
                        libc::close(fd);
                    }
                }
                if let Some((uid, gid)) = cred {
                    if libc::setgroups(1, &gid) < 0
                        || libc::setgid(gid) < 0
                        || libc::setuid(uid) < 0
                    {
                        return Err(err());
                    }
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                // seussd killed before the signal was set: nothing would end this process.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("seussd exited"));
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        // Dropping the command closes its copies of the child's ends.
        drop(cmd);
        let pid = child
            .id()
            .map(|p| p as i32)
            .ok_or_else(|| std::io::Error::other("child vanished"))?;
        Self::assemble(pid, Handle::Child(child), plumbing, spec.max_line)
    }

    /// Forks a stub through the zygote (see `zygote.rs`), in `cgroup_procs` if given.
    pub fn spawn_via(
        zygote: &crate::zygote::Zygote,
        cgroup_procs: Option<&std::path::Path>,
        max_line: usize,
    ) -> std::io::Result<Proc> {
        let plumbing = Plumbing::new()?;
        let (pid, pidfd) = zygote.fork_stub(&plumbing.child, cgroup_procs)?;
        // SAFETY: the OwnedFd moves into the AsyncFd and stays open, unchanged, for its whole life.
        let pidfd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
        }
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        Self::assemble(pid, Handle::Pidfd(pidfd), plumbing, max_line)
    }

    /// Wraps seussd's ends into the line channels (closing the child's ends here).
    fn assemble(pid: i32, handle: Handle, p: Plumbing, max_line: usize) -> std::io::Result<Proc> {
        let Plumbing { child, stdin, stdout, stderr, result, ctl } = p;
        drop(child);
        ctl.set_nonblocking(true)?;
        let (ctl_r, ctl_w) = tokio::net::UnixStream::from_std(ctl)?.into_split();
        Ok(Proc {
            pid,
            handle,
            stdin: Some(pipe::Sender::from_owned_fd(stdin)?),
            result: reader(pipe::Receiver::from_owned_fd(result)?, max_line),
            stdout: reader(pipe::Receiver::from_owned_fd(stdout)?, max_line),
            stderr: reader(pipe::Receiver::from_owned_fd(stderr)?, max_line),
            ctl: reader(ctl_r, 4096),
            ctl_w,
        })
    }

    /// Writes `data` to the instance's stdin.
    pub async fn send_stdin(&mut self, data: &[u8]) -> std::io::Result<()> {
        let w = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("stdin closed"))?;
        w.write_all(data).await?;
        w.flush().await
    }

    /// Writes one line on the control socket.
    pub async fn send_ctl(&mut self, line: &str) -> std::io::Result<()> {
        self.ctl_w.write_all(format!("{line}\n").as_bytes()).await
    }

    /// Next control line, or `None` on EOF or timeout.
    pub async fn recv_ctl(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        match tokio::time::timeout(timeout, self.ctl.recv()).await {
            Ok(Some(Line::Data(d))) => Some(d),
            _ => None,
        }
    }

    /// Everything left on stderr right now (diagnostics after a failure), waiting at most `wait`.
    pub async fn stderr_text(&mut self, wait: Duration) -> String {
        let mut out = String::new();
        let end = tokio::time::Instant::now() + wait;
        while let Ok(Some(Line::Data(d))) = tokio::time::timeout_at(end, self.stderr.recv()).await {
            out.push_str(&String::from_utf8_lossy(&d));
            out.push('\n');
        }
        out
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        match &mut self.handle {
            Handle::Child(c) => matches!(c.try_wait(), Ok(None)),
            Handle::Pidfd(fd) => {
                let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: poll on one valid descriptor with a zero timeout; a pidfd turns readable at exit.
                unsafe { libc::poll(&mut p, 1, 0) == 0 }
            }
        }
    }

    /// SIGKILLs the process and waits until it is gone.
    pub async fn kill(&mut self) {
        match &mut self.handle {
            Handle::Child(c) => {
                let _ = c.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
            }
            Handle::Pidfd(fd) => {
                pidfd_kill(fd);
                let _ = tokio::time::timeout(Duration::from_secs(5), fd.readable()).await;
            }
        }
    }

    /// Waits for the process to exit on its own (up to `timeout`); returns its exit code if it did (-1 for
    /// a zygote's stub, whose status the kernel discards when it reaps it).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        match &mut self.handle {
            Handle::Child(c) => match tokio::time::timeout(timeout, c.wait()).await {
                Ok(Ok(st)) => Some(st.code().unwrap_or(-1)),
                _ => None,
            },
            Handle::Pidfd(fd) => tokio::time::timeout(timeout, fd.readable()).await.ok().map(|_| -1),
        }
    }
}

/// Private memory of a process from `/proc/PID/smaps_rollup` (Private_Clean + Private_Dirty), in bytes.
pub fn private_bytes(pid: i32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum::<u64>()
        * 1024
}
