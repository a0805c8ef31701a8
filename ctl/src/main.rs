//! `seussctl`: the administrator's CLI for seussd.
//!
//! It talks only to seussd over D-Bus (`org.seuss.Manager1` on the system
//! bus, or `DBUS_SYSTEM_BUS_ADDRESS`) through the proxy of the
//! `seuss-dbus-api` crate, never to `/dev/seuss`.

mod cli;
mod commands;
mod exit;
mod params;
mod render;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "seussctl",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("seussctl: writing the man page: {e}");
                    ExitCode::from(exit::code::SOFTWARE)
                }
            };
        }
        _ => {}
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("seussctl: starting the runtime: {e}");
            return ExitCode::from(exit::code::SOFTWARE);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("seussctl: {failure}");
            failure.exit_code()
        }
    }
}
