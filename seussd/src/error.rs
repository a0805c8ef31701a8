//! The error type of the Host API; front ends map its variants to HTTP statuses or D-Bus errors.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize, PartialEq)]
pub enum HostError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("busy: {0}")]
    Busy(String),
    /// An admission limit (see `limits.rs`): nothing was queued.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("snapshot module not loaded: {0}")]
    ModuleNotLoaded(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl HostError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        HostError::Internal(e.to_string())
    }
}
