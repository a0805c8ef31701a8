//! Structs that travel on the wire with a fixed D-Bus signature.
//!
//! Free-form data (function definitions, invocation arguments, activation
//! records) travels as JSON strings in OpenWhisk's shapes; lists that
//! `busctl` users and tables want to read are typed structs.

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

/// One function, as listed by `ListFunctions`: signature `(sstts)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct FunctionEntry {
    /// The function's name.
    pub name: String,
    /// The runtime kind (`python:3`, ...).
    pub kind: String,
    /// Memory limit in MiB (0 when unset).
    pub memory_mb: u64,
    /// Timeout in milliseconds (0 when unset).
    pub timeout_ms: u64,
    /// The full function record as JSON (what `GetFunction` returns).
    pub json: String,
}

/// One snapshot, as listed by `ListSnapshots`: signature `(tttsstu)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SnapshotEntry {
    /// Snapshot id (never 0).
    pub id: u64,
    /// Parent snapshot id, 0 for a root (base/runtime) snapshot.
    pub parent: u64,
    /// Pages private to this snapshot (not shared with its parent).
    pub private_pages: u64,
    /// The function this is a function snapshot of, `""` for runtime snapshots.
    pub function: String,
    /// The runtime kind the snapshot belongs to.
    pub runtime: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Threads of the snapshot's process, each recreated in every child.
    pub threads: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_fixed() {
        assert_eq!(FunctionEntry::signature(), "(sstts)");
        assert_eq!(SnapshotEntry::signature(), "(tttsstu)");
    }
}
