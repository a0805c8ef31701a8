//! KTAP output (Documentation/dev-tools/ktap.rst): a plan, one `ok`/`not ok` line per case, `# ` notes.

use std::io::Write;

/// Outcome of one case.
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// A named test case.
pub struct Case {
    pub name: &'static str,
    pub run: fn() -> Result<(), String>,
}

/// Runs `cases` in order, printing KTAP; returns (passed, failed, skipped).
pub fn run(cases: &[Case]) -> (usize, usize, usize) {
    println!("TAP version 13");
    println!("1..{}", cases.len());
    let (mut p, mut f, mut s) = (0, 0, 0);
    for (i, c) in cases.iter().enumerate() {
        let _ = std::io::stdout().flush();
        let t0 = std::time::Instant::now();
        let out = match (c.run)() {
            Ok(()) => Outcome::Pass,
            Err(e) if e.starts_with("SKIP ") => Outcome::Skip(e[5..].to_string()),
            Err(e) => Outcome::Fail(e),
        };
        match out {
            Outcome::Pass => {
                p += 1;
                println!("ok {} {}", i + 1, c.name);
            }
            Outcome::Skip(r) => {
                s += 1;
                println!("ok {} {} # SKIP {}", i + 1, c.name, r);
            }
            Outcome::Fail(r) => {
                f += 1;
                for line in r.lines() {
                    println!("# {line}");
                }
                println!("not ok {} {}", i + 1, c.name);
            }
        }
        // Each case's wall time, so a slow stage in CI can be traced to its cases.
        println!("# {} took {:.1} s", c.name, t0.elapsed().as_secs_f64());
        let _ = std::io::stdout().flush();
    }
    println!("# Totals: pass:{p} fail:{f} xfail:0 xpass:0 skip:{s} error:0");
    (p, f, s)
}

/// Turns a condition into a case result.
pub fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}
