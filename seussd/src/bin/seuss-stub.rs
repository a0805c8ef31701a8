//! `seuss-stub`: the single-threaded process a deploy turns into an instance. seussd spawns it (as root)
//! with the instance's stdin/stdout/stderr, result pipe (fd 3) and control socket (fd 4). It opens the
//! snapshot device, drops to the instance user, then waits on fd 4 for `deploy SNAP COOKIE_ADDR COOKIE
//! TID_ADDR`. On success the deploy never returns: the process continues as a copy-on-write child of the
//! snapshot. On failure it reports `error STEP ERRNO NAME: text` on fd 4 and stderr and exits 70. EOF on fd 4
//! (seussd discarding a pooled stub) exits 0.

use std::io::Read;
use std::os::fd::FromRawFd;

const CONTROL_FD: i32 = 4;

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let device = arg(&args, "--device").unwrap_or_else(|| uapi::DEVICE_PATH.to_string());
    let dev = uapi::Device::open_path(std::path::Path::new(&device))
        .unwrap_or_else(|e| fail(&format!("open {device}: {}", errno_msg(e)), 70));
    if let (Some(uid), Some(gid)) = (arg(&args, "--uid"), arg(&args, "--gid")) {
        let (Ok(uid), Ok(gid)) = (uid.parse::<u32>(), gid.parse::<u32>()) else {
            fail("bad --uid/--gid", 64)
        };
        let gid = nix::unistd::Gid::from_raw(gid);
        let r = nix::unistd::setgroups(&[gid])
            .and_then(|_| nix::unistd::setgid(gid))
            .and_then(|_| nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)));
        if let Err(e) = r {
            fail(&format!("setuid: {}", errno_msg(e)), 70);
        }
    }
    // SAFETY: plain prctl; after setuid because a credential change clears the parent-death signal.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
    // Read exactly one line, byte by byte, so nothing after it is consumed from the socket.
    // SAFETY: fd 4 is the control socket; ManuallyDrop keeps it open for the instance.
    let mut ctl = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(CONTROL_FD) });
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match ctl.read(&mut b) {
            Ok(0) if line.is_empty() => std::process::exit(0),
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => fail(&format!("reading fd 4: {e}"), 70),
        }
    }
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
