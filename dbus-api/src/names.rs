//! Well-known names: bus name, object path, interface, error prefix, and the
//! Unix group whose members may use the read-only part of the interface.

/// The well-known bus name seussd owns on the system bus.
pub const BUS_NAME: &str = "org.seuss.Manager1";
/// The object implementing [`INTERFACE`].
pub const OBJECT_PATH: &str = "/org/seuss/Manager1";
/// The interface name (carries the major version, like the bus name).
pub const INTERFACE: &str = "org.seuss.Manager1";
/// Prefix of every error name seussd replies with (`org.seuss.Error.NotFound`, ...).
pub const ERROR_PREFIX: &str = "org.seuss.Error";
/// Members of this group may call the read-only methods; only root may change anything.
pub const GROUP: &str = "seuss";
