//! seussd: a function host that starts Python functions from kernel snapshots (SEUSS on Linux) and serves a
//! subset of the OpenWhisk REST API. [`host::Host`] is the one internal API; [`http`] and [`dbus`] adapt it.
//!
//! Networking of instances: they run in the host's network namespace as `instance_user`, so they can open
//! outbound TCP/UDP connections to anything the host can reach (including loopback services such as seussd's
//! own API, which still requires credentials). Restrict this with host firewall rules (e.g. nftables
//! `meta skuid`) if needed.

pub mod actdb;
pub mod actimport;
pub mod activation;
pub mod actpage;
pub mod budget;
pub mod cgroup;
pub mod config;
pub mod dbus;
pub mod deploy;
pub mod engine;
pub mod error;
pub mod host;
pub mod http;
pub mod limits;
pub mod launcher;
pub mod metrics;
pub mod model;
pub mod packages;
pub mod policy;
pub mod proc;
pub mod reply;
pub mod saver;
pub mod sequence;
pub mod snapshots;
pub mod starts;
pub mod store;
pub mod testhook;
pub mod util;
pub mod web;
pub mod zygote;
