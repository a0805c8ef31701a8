//! Failures as exit codes and messages that say what to do next.

use std::fmt;
use std::process::ExitCode;

use seuss_dbus_api::error::TRANSPORT_ERROR;
use seuss_dbus_api::{Error, GROUP};

/// Exit codes (see `seussctl --help`); sysexits.h values where one fits.
pub mod code {
    /// The function ran and failed.
    pub const FUNCTION_FAILED: u8 = 1;
    /// Usage error (also what clap exits with).
    pub const USAGE: u8 = 2;
    /// No such function, snapshot or activation.
    pub const NOT_FOUND: u8 = 3;
    /// Permission denied.
    pub const PERMISSION: u8 = 4;
    /// EX_DATAERR: invalid argument.
    pub const DATAERR: u8 = 65;
    /// EX_NOINPUT: input file cannot be read.
    pub const NOINPUT: u8 = 66;
    /// EX_UNAVAILABLE: seussd, the bus or the kernel module is not available.
    pub const UNAVAILABLE: u8 = 69;
    /// EX_SOFTWARE: internal error.
    pub const SOFTWARE: u8 = 70;
    /// EX_CANTCREAT: conflict.
    pub const CONFLICT: u8 = 73;
    /// EX_TEMPFAIL: busy.
    pub const TEMPFAIL: u8 = 75;
}

/// A failure of a seussctl command: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// The message, including a hint on what to do.
    pub message: String,
}

impl Failure {
    /// A failure with `code` and `message`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

const NOT_RUNNING: &str = "seussd is not running: systemctl start seussd";

/// Classify an error from the bus or from seussd. The message ends with the
/// D-Bus error name in brackets, for scripts and bug reports.
pub fn classify(e: Error) -> Failure {
    let name = e.dbus_name();
    let mut f = match e {
        Error::ZBus(z) => classify_bus_inner(&name, z),
        other => classify_seussd(other),
    };
    if name != TRANSPORT_ERROR {
        f.message = format!("{} [{name}]", f.message);
    }
    f
}

/// Classify a bus-level error (property access, connection).
pub fn classify_bus(e: zbus::Error) -> Failure {
    classify(Error::ZBus(e))
}

fn classify_seussd(e: Error) -> Failure {
    use code::*;
    match e {
        Error::NotFound(m) => Failure::new(NOT_FOUND, format!("not found: {m}")),
        Error::PermissionDenied(m) => Failure::new(PERMISSION, format!("permission denied: {m}")),
        Error::ModuleNotLoaded(m) => Failure::new(
            UNAVAILABLE,
            format!("the seuss kernel module is not loaded ({m}): modprobe seuss, then systemctl restart seussd"),
        ),
        Error::InvalidArgs(m) => Failure::new(DATAERR, format!("invalid argument: {m}")),
        Error::Busy(m) => Failure::new(TEMPFAIL, format!("seussd is busy: {m}; retry later")),
        Error::Conflict(m) => Failure::new(
            CONFLICT,
            format!("conflict: {m} (use `seussctl function update` to replace a function)"),
        ),
        Error::Internal(m) => Failure::new(
            SOFTWARE,
            format!("internal error in seussd: {m} (see journalctl -u seussd)"),
        ),
        Error::ZBus(z) => classify_bus_inner("", z),
    }
}

fn classify_bus_inner(name: &str, e: zbus::Error) -> Failure {
    use code::*;
    let desc = Error::ZBus(e).dbus_description();
    match name {
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner"
        | "org.freedesktop.DBus.Error.Spawn.ServiceNotFound"
        | "org.freedesktop.DBus.Error.Spawn.ChildExited"
        | "org.freedesktop.DBus.Error.Spawn.Failed"
        | "org.freedesktop.DBus.Error.NoReply"
        | "org.freedesktop.DBus.Error.Disconnected"
        | "org.freedesktop.systemd1.NoSuchUnit" => Failure::new(UNAVAILABLE, format!("{NOT_RUNNING} ({desc})")),
        "org.freedesktop.DBus.Error.AccessDenied" => Failure::new(
            PERMISSION,
            format!(
                "permission denied by the D-Bus policy: run as root, or as a member of group \
                 {GROUP} for read-only commands (usermod -aG {GROUP} USER, then log in again)"
            ),
        ),
        "org.freedesktop.DBus.Error.UnknownMethod"
        | "org.freedesktop.DBus.Error.UnknownInterface"
        | "org.freedesktop.DBus.Error.UnknownObject"
        | "org.freedesktop.DBus.Error.UnknownProperty" => Failure::new(
            UNAVAILABLE,
            format!("seussd does not speak this seussctl's interface ({desc}): install matching versions"),
        ),
        "org.freedesktop.DBus.Error.InvalidArgs" => Failure::new(DATAERR, format!("invalid argument: {desc}")),
        TRANSPORT_ERROR => Failure::new(
            UNAVAILABLE,
            format!(
                "cannot reach the D-Bus system bus ({desc}): is dbus running? (systemctl start dbus); \
                 DBUS_SYSTEM_BUS_ADDRESS overrides the address"
            ),
        ),
        _ => Failure::new(SOFTWARE, format!("D-Bus error: {desc}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method_error(name: &str) -> zbus::Error {
        let msg = zbus::message::Message::method("/", "X")
            .unwrap()
            .build(&())
            .unwrap();
        zbus::Error::MethodError(name.try_into().unwrap(), Some("d".into()), msg)
    }

    #[test]
    fn seussd_errors_map_to_codes() {
        let f = classify(Error::NotFound("function f".into()));
        assert_eq!(
            (f.code, f.message.as_str()),
            (3, "not found: function f [org.seuss.Error.NotFound]")
        );
        assert_eq!(classify(Error::PermissionDenied("x".into())).code, 4);
        assert_eq!(classify(Error::ModuleNotLoaded("x".into())).code, 69);
        assert_eq!(classify(Error::InvalidArgs("x".into())).code, 65);
        assert_eq!(classify(Error::Conflict("x".into())).code, 73);
        assert_eq!(classify(Error::Busy("x".into())).code, 75);
        assert_eq!(classify(Error::Internal("x".into())).code, 70);
    }

    #[test]
    fn bus_errors_say_what_to_do() {
        let f = classify(Error::from(method_error(
            "org.freedesktop.DBus.Error.ServiceUnknown",
        )));
        assert_eq!(f.code, 69);
        assert!(
            f.message
                .starts_with("seussd is not running: systemctl start seussd"),
            "{f}"
        );
        let f = classify(Error::from(method_error(
            "org.freedesktop.DBus.Error.AccessDenied",
        )));
        assert_eq!(f.code, 4);
        assert!(f.message.contains("group seuss"), "{f}");
        // A seussd error name arriving over the bus becomes its variant, then its code.
        assert_eq!(
            classify(Error::from(method_error("org.seuss.Error.NotFound"))).code,
            3
        );
        let io =
            zbus::Error::InputOutput(std::io::Error::from(std::io::ErrorKind::NotFound).into());
        let f = classify_bus(io);
        assert_eq!(f.code, 69);
        assert!(
            f.message.contains("systemctl start dbus") && !f.message.contains('['),
            "{f}"
        );
        // Property access errors arrive wrapped as fdo errors.
        let f = classify_bus(zbus::fdo::Error::AccessDenied("rejected".into()).into());
        assert_eq!(f.code, 4, "{f}");
        assert!(
            f.message
                .ends_with("[org.freedesktop.DBus.Error.AccessDenied]"),
            "{f}"
        );
        let f = classify_bus(zbus::fdo::Error::ServiceUnknown("no".into()).into());
        assert_eq!(f.code, 69, "{f}");
    }
}
