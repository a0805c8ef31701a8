//! The `org.seuss.Manager1` object: every method checks the caller, then
//! delegates to the [`Host`]. Signals are declared here and emitted by
//! [`super::events`].

use std::collections::HashMap;

use seuss_dbus_api::Error;
use zbus::message::Header;
use zbus::object_server::SignalContext;
use zbus::zvariant::OwnedValue;
use zbus::Connection;

use super::auth::require;
use super::convert::{self, host_error};
use crate::host::Host;
use crate::model::InvokeOpts;

/// The object served at `/org/seuss/Manager1`.
pub struct Manager {
    host: Host,
}

impl Manager {
    /// An interface object delegating to `host`.
    pub fn new(host: Host) -> Self {
        Self { host }
    }

    /// Current host statistics as a JSON object (properties read from it).
    fn stats(&self) -> serde_json::Value {
        serde_json::to_value(self.host.stats()).unwrap_or_default()
    }
}

/// Unsigned field `key` of the stats object (0 when absent).
pub(super) fn stat_u64(stats: &serde_json::Value, key: &str) -> u64 {
    stats
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

#[zbus::interface(name = "org.seuss.Manager1")]
impl Manager {
    async fn create_function(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
        definition: String,
    ) -> Result<String, Error> {
        require(conn, &hdr, "CreateFunction").await?;
        let def = convert::parse("definition", &definition)?;
        let info = self
            .host
            .put_function(&name, def, false)
            .await
            .map_err(host_error)?;
        convert::to_json(&info)
    }

    async fn update_function(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
        definition: String,
    ) -> Result<String, Error> {
        require(conn, &hdr, "UpdateFunction").await?;
        let def = convert::parse("definition", &definition)?;
        let info = self
            .host
            .put_function(&name, def, true)
            .await
            .map_err(host_error)?;
        convert::to_json(&info)
    }

    async fn delete_function(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
    ) -> Result<(), Error> {
        require(conn, &hdr, "DeleteFunction").await?;
        self.host.delete_function(&name).await.map_err(host_error)
    }

    async fn list_functions(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<seuss_dbus_api::FunctionEntry>, Error> {
        require(conn, &hdr, "ListFunctions").await?;
        let mut out = self
            .host
            .list_functions()
            .await
            .iter()
            .map(convert::function_entry)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn get_function(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
    ) -> Result<String, Error> {
        require(conn, &hdr, "GetFunction").await?;
        let info = self.host.get_function(&name).await.map_err(host_error)?;
        convert::to_json(&info)
    }

    async fn invoke(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
        args_json: String,
    ) -> Result<String, Error> {
        require(conn, &hdr, "Invoke").await?;
        let args = convert::parse_args(&args_json)?;
        let activation = self
            .host
            .invoke(
                &name,
                args,
                InvokeOpts {
                    blocking: true,
                    path: None,
                },
            )
            .await
            .map_err(host_error)?;
        convert::to_json(&activation)
    }

    async fn invoke_with_options(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
        args_json: String,
        options: HashMap<String, OwnedValue>,
    ) -> Result<String, Error> {
        require(conn, &hdr, "InvokeWithOptions").await?;
        let args = convert::parse_args(&args_json)?;
        let opts = convert::invoke_opts(&options)?;
        let activation = self
            .host
            .invoke(&name, args, opts)
            .await
            .map_err(host_error)?;
        convert::to_json(&activation)
    }

    async fn get_activation(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: String,
    ) -> Result<String, Error> {
        require(conn, &hdr, "GetActivation").await?;
        let activation = self.host.get_activation(&id).await.map_err(host_error)?;
        convert::to_json(&activation)
    }

    async fn list_snapshots(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<seuss_dbus_api::SnapshotEntry>, Error> {
        require(conn, &hdr, "ListSnapshots").await?;
        let mut out = self
            .host
            .list_snapshots()
            .await
            .iter()
            .map(convert::snapshot_entry)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|s| s.id);
        Ok(out)
    }

    async fn drop_snapshot(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: u64,
    ) -> Result<(), Error> {
        require(conn, &hdr, "DropSnapshot").await?;
        self.host.drop_snapshot(id).await.map_err(host_error)
    }

    async fn prewarm(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        name: String,
    ) -> Result<u64, Error> {
        require(conn, &hdr, "Prewarm").await?;
        self.host.prewarm(&name).await.map_err(host_error)
    }

    async fn get_stats(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<HashMap<String, OwnedValue>, Error> {
        require(conn, &hdr, "GetStats").await?;
        convert::dict(&self.host.stats())
    }

    #[zbus(property)]
    async fn version(&self) -> String {
        self.stats()
            .get("version")
            .and_then(serde_json::Value::as_str)
            .unwrap_or(env!("CARGO_PKG_VERSION"))
            .to_owned()
    }

    #[zbus(property)]
    async fn module_present(&self) -> bool {
        self.stats()
            .get("module_present")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    #[zbus(property)]
    async fn memory_budget(&self) -> u64 {
        stat_u64(&self.stats(), "budget_bytes")
    }

    #[zbus(property)]
    async fn memory_used(&self) -> u64 {
        stat_u64(&self.stats(), "used_bytes")
    }

    #[zbus(property)]
    async fn snapshot_count(&self) -> u64 {
        stat_u64(&self.stats(), "snapshots")
    }

    #[zbus(property)]
    async fn instance_count(&self) -> u64 {
        stat_u64(&self.stats(), "instances")
    }

    /// A snapshot was captured; `function` is `""` for a runtime snapshot.
    #[zbus(signal)]
    pub async fn snapshot_captured(
        ctxt: &SignalContext<'_>,
        id: u64,
        function: &str,
    ) -> zbus::Result<()>;

    /// A snapshot was evicted or dropped.
    #[zbus(signal)]
    pub async fn snapshot_evicted(ctxt: &SignalContext<'_>, id: u64) -> zbus::Result<()>;

    /// A function was `created`, `updated` or `deleted`.
    #[zbus(signal)]
    pub async fn function_changed(
        ctxt: &SignalContext<'_>,
        name: &str,
        change: &str,
    ) -> zbus::Result<()>;
}
