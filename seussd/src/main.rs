//! `seussd`: the function host daemon. Loads the configuration, starts the [`Host`], serves the OpenWhisk
//! API over HTTP and `org.seuss.Manager1` on D-Bus, and stops cleanly on SIGTERM/SIGINT.

use clap::Parser;
use seussd::config::{Config, DEFAULT_PATH};
use seussd::host::Host;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "seuss function host daemon")]
struct Args {
    /// Configuration file.
    #[arg(long, default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// Do not serve D-Bus (no system bus, e.g. in a test VM).
    #[arg(long)]
    no_dbus: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let cfg = Config::load(&args.config)?;
    if cfg.auth.is_empty() {
        tracing::warn!("no credentials configured (auth = []): every API request will be refused");
    }
    let host = Host::open(cfg.clone()).await?;
    let s = host.stats();
    tracing::info!(
        "seussd {} up: snapshots {}, budget {} MiB",
        s.version,
        if s.module_present {
            "ENABLED"
        } else {
            "DISABLED (no /dev/seuss; cold starts only)"
        },
        s.budget_bytes >> 20
    );
    let _dbus = if args.no_dbus {
        None
    } else {
        match seussd::dbus::serve(host.clone(), &cfg).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("D-Bus interface not available: {e:#}");
                None
            }
        }
    };
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
    tracing::info!("OpenWhisk API on http://{}", listener.local_addr()?);
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
    };
    seussd::http::serve(host.clone(), listener, shutdown).await?;
    host.shutdown().await;
    Ok(())
}
