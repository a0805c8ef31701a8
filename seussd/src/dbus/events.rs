//! Forwards [`Host::subscribe`] events as D-Bus signals, and keeps the
//! properties' change notifications (`PropertiesChanged`) in step with the
//! host: after every event and once a second, the property values are
//! compared with the last ones sent and the changed ones are announced.

use std::time::Duration;

use seuss_dbus_api::OBJECT_PATH;
use tokio::sync::broadcast::error::RecvError;
use zbus::object_server::{InterfaceRef, SignalContext};

use super::manager::{stat_u64, Manager};
use crate::host::Host;
use crate::model::HostEvent;

/// How often property values are polled for changes that come without an event.
const POLL: Duration = Duration::from_secs(1);

/// The values of the properties that change at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Props {
    /// `ModulePresent`
    pub module_present: bool,
    /// `MemoryBudget`
    pub budget: u64,
    /// `MemoryUsed`
    pub used: u64,
    /// `SnapshotCount`
    pub snapshots: u64,
    /// `InstanceCount`
    pub instances: u64,
}

impl Props {
    /// Read the current values from `host`.
    pub fn read(host: &Host) -> Self {
        let s = serde_json::to_value(host.stats()).unwrap_or_default();
        Self {
            module_present: s
                .get("module_present")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            budget: stat_u64(&s, "budget_bytes"),
            used: stat_u64(&s, "used_bytes"),
            snapshots: stat_u64(&s, "snapshots"),
            instances: stat_u64(&s, "instances"),
        }
    }
}

/// Run until the host's event channel closes (seussd exits).
pub async fn forward(conn: zbus::Connection, host: Host) {
    let iface: InterfaceRef<Manager> = match conn.object_server().interface(OBJECT_PATH).await {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("D-Bus event forwarding disabled: {e}");
            return;
        }
    };
    let mut events = host.subscribe();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Props::read(&host);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if let Err(e) = emit(iface.signal_context(), &ev).await {
                        tracing::warn!("emitting D-Bus signal: {e}");
                    }
                }
                Err(RecvError::Lagged(n)) => tracing::warn!("D-Bus signals: {n} host events dropped"),
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {}
        }
        let now = Props::read(&host);
        if now != last {
            if let Err(e) = announce(&iface, last, now).await {
                tracing::warn!("emitting PropertiesChanged: {e}");
            }
            last = now;
        }
    }
}

async fn emit(ctxt: &SignalContext<'_>, ev: &HostEvent) -> zbus::Result<()> {
    match ev {
        HostEvent::SnapshotCaptured { id, function } => {
            Manager::snapshot_captured(ctxt, *id, function.as_deref().unwrap_or("")).await
        }
        HostEvent::SnapshotEvicted { id } => Manager::snapshot_evicted(ctxt, *id).await,
        HostEvent::FunctionChanged { name, change } => {
            Manager::function_changed(ctxt, name, &change.to_string()).await
        }
    }
}

async fn announce(iface: &InterfaceRef<Manager>, old: Props, new: Props) -> zbus::Result<()> {
    let ctxt = iface.signal_context();
    let m = iface.get().await;
    if old.module_present != new.module_present {
        m.module_present_changed(ctxt).await?;
    }
    if old.budget != new.budget {
        m.memory_budget_changed(ctxt).await?;
    }
    if old.used != new.used {
        m.memory_used_changed(ctxt).await?;
    }
    if old.snapshots != new.snapshots {
        m.snapshot_count_changed(ctxt).await?;
    }
    if old.instances != new.instances {
        m.instance_count_changed(ctxt).await?;
    }
    Ok(())
}
