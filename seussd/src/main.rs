//! `seussd`: the function host daemon. Loads the configuration, starts the [`Host`], serves the OpenWhisk
//! API over HTTP and `org.seuss.Manager1` on D-Bus, and tells systemd (sd_notify, when `NOTIFY_SOCKET` is
//! set) that it is ready, alive (WATCHDOG, when `WatchdogSec=` asks for it), reloading or stopping.
//!
//! Signals: SIGHUP reloads the configuration file's credentials and limits (other changed keys are named
//! in the log: they need a restart); SIGTERM or SIGINT stops accepting requests, lets the activations in
//! flight finish for up to `shutdown_grace_s` (recording them), then stops.

use clap::Parser;
use sd_notify::NotifyState;
use seussd::config::{Config, LogFormat, DEFAULT_PATH};
use seussd::host::Host;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

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

/// How long the HTTP server may take to finish its last answers once the host has stopped.
const HTTP_STOP_WAIT: Duration = Duration::from_secs(5);

fn init_log(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// Tells systemd `state`; a failure (no systemd to tell, `NOTIFY_SOCKET` unset) is ignored.
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// With `WatchdogSec=`, pings systemd at half the period for as long as the host answers: its state
/// lock can be taken (a deadlock there stops the pings and systemd restarts seussd).
fn spawn_watchdog(host: Host) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let period = Duration::from_micros(usec / 2);
    tracing::info!("systemd watchdog: pinging every {period:?}");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let h = host.clone();
            let alive = tokio::time::timeout(period, tokio::task::spawn_blocking(move || h.stats())).await;
            if matches!(alive, Ok(Ok(_))) {
                notify(&[NotifyState::Watchdog]);
            } else {
                tracing::error!("watchdog: the host did not answer within {period:?}; not pinging");
            }
        }
    });
}

fn reload(host: &Host, path: &Path) {
    notify(&[NotifyState::Reloading]);
    match Config::load(path).map_err(|e| format!("{e:#}")).and_then(|c| host.reload(&c).map_err(|e| e.to_string())) {
        Ok(restart) if restart.is_empty() => tracing::info!("reloaded {}: credentials and limits", path.display()),
        Ok(restart) => tracing::warn!(
            "reloaded {}: credentials and limits; changed keys that need a restart were left as they are: {}",
            path.display(),
            restart.join(", ")
        ),
        Err(e) => tracing::error!("reload failed, the previous configuration stays: {e}"),
    }
    notify(&[NotifyState::Ready]);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = Config::load(&args.config)?;
    init_log(cfg.log_format);
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
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(seussd::http::serve(host.clone(), listener, async move {
        let _ = http_stopped.await;
    }));
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    notify(&[NotifyState::Ready]);
    spawn_watchdog(host.clone());
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => reload(&host, &args.config),
        }
    }
    notify(&[NotifyState::Stopping]);
    tracing::info!("shutting down");
    // New connections stop now; answers to requests already in flight (blocking invokes) go out as their
    // activations finish or are stopped by the host's shutdown.
    let _ = stop_http.send(());
    host.shutdown().await;
    match tokio::time::timeout(HTTP_STOP_WAIT, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!("HTTP server: {e}"),
        Ok(Err(e)) => tracing::warn!("HTTP server task: {e}"),
        Err(_) => tracing::warn!("HTTP server: connections still open after {HTTP_STOP_WAIT:?}"),
    }
    tracing::info!("stopped");
    Ok(())
}
