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
use tokio::process::{Child, ChildStdin};
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

/// A started process with its protocol channels.
#[derive(Debug)]
pub struct Proc {
    pub pid: i32,
    child: Child,
    stdin: Option<ChildStdin>,
    ctl_w: tokio::net::unix::OwnedWriteHalf,
    pub result: mpsc::Receiver<Line>,
    pub stdout: mpsc::Receiver<Line>,
    pub stderr: mpsc::Receiver<Line>,
    pub ctl: mpsc::Receiver<Line>,
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
        let (res_r, res_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let (ctl_parent, ctl_child) = std::os::unix::net::UnixStream::pair()?;
        let res_w_fd = res_w.as_raw_fd();
        let ctl_child_fd = ctl_child.as_raw_fd();
        let cg = spec.cgroup_procs.as_deref().map(cstring).transpose()?;
        let cred = spec.cred;

        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir("/")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
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
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        drop(res_w);
        drop(ctl_child);
        let pid = child
            .id()
            .map(|p| p as i32)
            .ok_or_else(|| std::io::Error::other("child vanished"))?;
        ctl_parent.set_nonblocking(true)?;
        let (ctl_r, ctl_w) = tokio::net::UnixStream::from_std(ctl_parent)?.into_split();
        let result_pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(res_r)?;
        Ok(Proc {
            pid,
            stdin: child.stdin.take(),
            result: reader(result_pipe, spec.max_line),
            stdout: reader(child.stdout.take().expect("piped"), spec.max_line),
            stderr: reader(child.stderr.take().expect("piped"), spec.max_line),
            ctl: reader(ctl_r, 4096),
            ctl_w,
            child,
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
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILLs the process and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// Waits for the process to exit on its own (up to `timeout`); returns its exit code if it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(st)) => Some(st.code().unwrap_or(-1)),
            _ => None,
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
