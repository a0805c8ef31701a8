//! seussd's D-Bus control plane: `org.seuss.Manager1` on the system bus.
//!
//! A thin layer: [`manager::Manager`] checks who is calling ([`auth`]),
//! translates between wire types and the [`Host`] API ([`convert`]) and
//! delegates; [`events`] forwards [`Host::subscribe`] events as signals and
//! property-change notifications. Names, errors, wire types and the client
//! proxy live in the `seuss-dbus-api` crate, shared with seussctl.
//!
//! The connection is built with the objects served *before* the name is
//! requested, so no call that arrives right after activation is lost.
//! zbus honours `DBUS_SYSTEM_BUS_ADDRESS`, which the tests use to point the
//! unmodified daemon at a private `dbus-daemon`.

pub mod auth;
pub mod convert;
pub mod events;
pub mod manager;

use anyhow::Context as _;
use seuss_dbus_api::{BUS_NAME, OBJECT_PATH};

use crate::config::Config;
use crate::host::Host;

pub use manager::Manager;

/// Serve `org.seuss.Manager1` for `host` on the system bus and own the bus
/// name. Returns the connection; the object server and the event forwarder
/// run as long as it (or a clone) is alive.
pub async fn serve(host: Host, _cfg: &Config) -> anyhow::Result<zbus::Connection> {
    serve_on(
        zbus::connection::Builder::system().context("D-Bus system bus address")?,
        host,
    )
    .await
}

/// Like [`serve`], on the bus `builder` connects to (tests use an address builder).
pub async fn serve_on(
    builder: zbus::connection::Builder<'_>,
    host: Host,
) -> anyhow::Result<zbus::Connection> {
    let conn = builder
        .serve_at(OBJECT_PATH, Manager::new(host.clone()))
        .context("serving /org/seuss/Manager1")?
        .name(BUS_NAME)
        .context("bus name")?
        .build()
        .await
        .with_context(|| {
            format!(
                "connecting to the D-Bus system bus and owning {BUS_NAME} \
                 (is dbus running, is data/org.seuss.Manager1.conf installed, is another seussd running?)"
            )
        })?;
    tokio::spawn(events::forward(conn.clone(), host));
    tracing::info!(name = BUS_NAME, path = OBJECT_PATH, "D-Bus interface ready");
    Ok(conn)
}
