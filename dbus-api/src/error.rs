//! Typed D-Bus errors: `org.seuss.Error.<Variant>`.
//!
//! The server replies with these; the client proxy converts a received error
//! with a matching name back into the same variant (anything else, including
//! bus-level errors such as `org.freedesktop.DBus.Error.AccessDenied` or
//! `ServiceUnknown`, arrives as [`Error::ZBus`]).

/// An error of the `org.seuss.Manager1` interface.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.seuss.Error")]
pub enum Error {
    /// A transport or bus error, not produced by seussd itself.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No such function, snapshot or activation.
    NotFound(String),
    /// The caller's uid may not call this member.
    PermissionDenied(String),
    /// The seuss kernel module is not loaded (`/dev/seuss` missing).
    ModuleNotLoaded(String),
    /// An argument is malformed (bad JSON, bad function definition, ...).
    InvalidArgs(String),
    /// The host is out of capacity right now; retry later.
    Busy(String),
    /// The object exists already (create without overwrite) or is in use.
    Conflict(String),
    /// A bug or an unexpected failure inside seussd.
    Internal(String),
}

/// Name zbus gives errors that did not come from a peer (I/O, handshake, ...).
pub const TRANSPORT_ERROR: &str = "org.freedesktop.zbus.Error";

impl Error {
    /// The full D-Bus error name: `org.seuss.Error.NotFound`, ..., a bus
    /// error's name (`org.freedesktop.DBus.Error.AccessDenied`, also when it
    /// arrives wrapped as an `fdo` error from a property access), or
    /// [`TRANSPORT_ERROR`] when no peer replied.
    pub fn dbus_name(&self) -> String {
        match self {
            Error::ZBus(zbus::Error::MethodError(name, _, _)) => name.to_string(),
            Error::ZBus(zbus::Error::FDO(e)) => zbus::DBusError::name(e.as_ref()).to_string(),
            Error::ZBus(_) => TRANSPORT_ERROR.to_owned(),
            other => zbus::DBusError::name(other).to_string(),
        }
    }

    /// The error's description (the text after the name).
    pub fn dbus_description(&self) -> String {
        match self {
            Error::ZBus(zbus::Error::MethodError(_, desc, _)) => desc.clone().unwrap_or_default(),
            Error::ZBus(zbus::Error::FDO(e)) => zbus::DBusError::description(e.as_ref())
                .unwrap_or_default()
                .to_owned(),
            Error::ZBus(e) => e.to_string(),
            other => zbus::DBusError::description(other)
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

/// Every error name seussd may reply with, for tests and documentation.
pub const ERROR_NAMES: &[&str] = &[
    "org.seuss.Error.NotFound",
    "org.seuss.Error.PermissionDenied",
    "org.seuss.Error.ModuleNotLoaded",
    "org.seuss.Error.InvalidArgs",
    "org.seuss.Error.Busy",
    "org.seuss.Error.Conflict",
    "org.seuss.Error.Internal",
];

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn names_carry_the_prefix() {
        let all = [
            Error::NotFound(String::new()),
            Error::PermissionDenied(String::new()),
            Error::ModuleNotLoaded(String::new()),
            Error::InvalidArgs(String::new()),
            Error::Busy(String::new()),
            Error::Conflict(String::new()),
            Error::Internal(String::new()),
        ];
        let names: Vec<String> = all.iter().map(|e| e.name().to_string()).collect();
        assert_eq!(names, ERROR_NAMES);
    }

    #[test]
    fn method_error_converts_back_to_variant() {
        let name = zbus::names::OwnedErrorName::try_from("org.seuss.Error.NotFound").unwrap();
        let msg = zbus::message::Message::method("/", "X")
            .unwrap()
            .build(&())
            .unwrap();
        let e: Error = zbus::Error::MethodError(name, Some("function hello".into()), msg).into();
        assert!(
            matches!(&e, Error::NotFound(d) if d == "function hello"),
            "{e:?}"
        );
        assert_eq!(e.dbus_name(), "org.seuss.Error.NotFound");
        assert_eq!(e.dbus_description(), "function hello");
    }

    #[test]
    fn bus_errors_keep_their_names() {
        let fdo = Error::ZBus(zbus::fdo::Error::AccessDenied("policy".into()).into());
        assert_eq!(fdo.dbus_name(), "org.freedesktop.DBus.Error.AccessDenied");
        assert_eq!(fdo.dbus_description(), "policy");
        let io = Error::ZBus(zbus::Error::InputOutput(
            std::io::Error::other("gone").into(),
        ));
        assert_eq!(io.dbus_name(), TRANSPORT_ERROR);
    }
}
