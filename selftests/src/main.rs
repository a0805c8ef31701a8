//! `seuss_test`: kselftest-style tests of seuss.ko, printing KTAP. Run as root inside the VM booted on
//! the patched kernel, with `SEUSS_KO` naming the built module.
//!
//! Usage: `seuss_test [module|engine|hardening|all]` (default all) or `seuss_test --list`; `seuss_bench` is the
//! benchmark. Exit status as kselftest: 0 all passed, 1 a failure, 4 skipped (not root / no module).

mod bystander_cases;
mod engine_cases;
mod fault_cases;
mod hardening_cases;
mod ktap;
mod module_cases;
mod python;
mod race_cases;
mod thread_cases;
mod util;

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let mut cases: Vec<&ktap::Case> = Vec::new();
    if arg == "module" || arg == "all" || arg == "--list" {
        cases.extend(module_cases::CASES.iter());
    }
    if arg == "engine" || arg == "all" || arg == "--list" {
        cases.extend(engine_cases::CASES.iter());
        cases.extend(thread_cases::CASES.iter());
    }
    // The issue-10 regressions run with the engine suite, or alone as `hardening`.
    if arg == "engine" || arg == "hardening" || arg == "all" || arg == "--list" {
        cases.extend(hardening_cases::CASES.iter());
    }
    if arg == "engine" || arg == "bystanders" || arg == "all" || arg == "--list" {
        cases.extend(bystander_cases::CASES.iter());
    }
    // Fault injection (needs the debug kernel; skips elsewhere) and races: with the engine suite, or
    // alone as `faults` / `races`.
    if arg == "engine" || arg == "faults" || arg == "all" || arg == "--list" {
        cases.extend(fault_cases::CASES.iter());
    }
    if arg == "engine" || arg == "races" || arg == "all" || arg == "--list" {
        cases.extend(race_cases::CASES.iter());
    }
    // An optional second argument keeps only the cases whose name contains it.
    if let Some(filter) = std::env::args().nth(2) {
        cases.retain(|c| c.name.contains(filter.as_str()));
    }
    if arg == "--list" {
        for c in &cases {
            println!("{}", c.name);
        }
        return;
    }
    if cases.is_empty() {
        eprintln!("usage: seuss_test [module|engine|hardening|all|--list]");
        std::process::exit(2);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || std::env::var("SEUSS_KO").is_err() {
        println!("TAP version 13\n1..0 # SKIP needs root and SEUSS_KO=/path/to/seuss.ko");
        std::process::exit(4);
    }
    let owned: Vec<ktap::Case> = cases.iter().map(|c| ktap::Case { name: c.name, run: c.run }).collect();
    let (_p, f, _s) = ktap::run(&owned);
    std::process::exit(if f == 0 { 0 } else { 1 });
}
