//! Authorization from the *caller*: the message's sender → its uid, asked of
//! the bus (`org.freedesktop.DBus.GetConnectionUnixUser`) → an access class.
//!
//! root may call everything; members of group `seuss` (primary or
//! supplementary) may call the read-only members; everyone else is refused
//! with `org.seuss.Error.PermissionDenied`. The group is looked up on every
//! call, so membership changes apply without restarting seussd. The bus
//! policy file enforces the same split one layer earlier.

use std::ffi::CString;

use nix::unistd::{getgrouplist, Group, Uid, User};
use seuss_dbus_api::{members, Access, Error, GROUP};
use zbus::message::Header;
use zbus::names::BusName;

/// Check that the sender of `hdr` may call method `member`; returns its uid.
pub async fn require(
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    member: &str,
) -> Result<u32, Error> {
    let access = members::method_access(member)
        .ok_or_else(|| Error::Internal(format!("{member} is missing from the access table")))?;
    let uid = caller_uid(conn, hdr).await?;
    decide(uid, access, || in_group(uid, GROUP)).inspect_err(|_| {
        tracing::info!(uid, member, "refused D-Bus call");
    })?;
    Ok(uid)
}

/// The uid of the connection that sent `hdr`, as the bus daemon knows it.
pub async fn caller_uid(conn: &zbus::Connection, hdr: &Header<'_>) -> Result<u32, Error> {
    let sender = hdr.sender().ok_or_else(|| {
        Error::PermissionDenied("message has no sender; use the system bus".into())
    })?;
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .map_err(|e| Error::Internal(format!("bus proxy: {e}")))?;
    dbus.get_connection_unix_user(BusName::from(sender.to_owned()))
        .await
        .map_err(|e| Error::Internal(format!("uid of {sender}: {e}")))
}

/// The decision, separate from the lookups so it can be tested without a bus.
pub fn decide(uid: u32, access: Access, is_member: impl FnOnce() -> bool) -> Result<(), Error> {
    match (uid, access) {
        (0, _) => Ok(()),
        (_, Access::Read) if is_member() => Ok(()),
        (_, Access::Read) => Err(Error::PermissionDenied(format!(
            "uid {uid} is neither root nor in group {GROUP}; add the user to group {GROUP} \
             (usermod -aG {GROUP} USER) or run as root"
        ))),
        (_, Access::Write) => Err(Error::PermissionDenied(format!(
            "uid {uid}: changing seussd requires root"
        ))),
    }
}

/// Whether `uid` is in group `group`, as its primary group or a supplementary one.
pub fn in_group(uid: u32, group: &str) -> bool {
    let Ok(Some(g)) = Group::from_name(group) else {
        return false;
    };
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    if user.gid == g.gid || g.mem.contains(&user.name) {
        return true;
    }
    let Ok(name) = CString::new(user.name) else {
        return false;
    };
    getgrouplist(&name, user.gid).is_ok_and(|groups| groups.contains(&g.gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_may_do_everything() {
        assert!(decide(0, Access::Write, || false).is_ok());
        assert!(decide(0, Access::Read, || false).is_ok());
    }

    #[test]
    fn members_may_read_only() {
        assert!(decide(1000, Access::Read, || true).is_ok());
        assert!(matches!(
            decide(1000, Access::Write, || true),
            Err(Error::PermissionDenied(_))
        ));
    }

    #[test]
    fn others_are_refused() {
        assert!(
            matches!(decide(65534, Access::Read, || false), Err(Error::PermissionDenied(m)) if m.contains("usermod"))
        );
        assert!(matches!(
            decide(65534, Access::Write, || false),
            Err(Error::PermissionDenied(_))
        ));
    }

    #[test]
    fn group_lookup() {
        // root's primary group is root (gid 0) on every Linux system.
        assert!(in_group(0, "root"));
        assert!(!in_group(0, "no-such-group-seuss-test"));
        assert!(!in_group(4_000_000_000, "root"), "unknown uid");
    }
}
