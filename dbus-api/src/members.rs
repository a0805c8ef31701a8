//! The interface as data: every member, its D-Bus signature and who may call it.
//!
//! This table is the single statement of the access policy: seussd's
//! authorization check, the bus policy file `data/org.seuss.Manager1.conf`
//! and the introspection test are all checked against it.

/// What kind of interface member an entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A method; `in_sig`/`out_sig` are its argument and reply signatures.
    Method,
    /// A read-only property; `out_sig` is its type.
    Property,
    /// A signal; `in_sig` is its argument signature.
    Signal,
}

/// Who may call a method or read a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// root and members of group `seuss`.
    Read,
    /// root only.
    Write,
}

/// One member of `org.seuss.Manager1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// Method, property or signal.
    pub kind: Kind,
    /// The D-Bus member name (CamelCase).
    pub name: &'static str,
    /// Input signature (methods) or argument signature (signals).
    pub in_sig: &'static str,
    /// Reply signature (methods) or type (properties).
    pub out_sig: &'static str,
    /// Who may call it (signals: [`Access::Read`], anyone may receive them).
    pub access: Access,
}

const fn m(name: &'static str, i: &'static str, o: &'static str, access: Access) -> Member {
    Member {
        kind: Kind::Method,
        name,
        in_sig: i,
        out_sig: o,
        access,
    }
}
const fn p(name: &'static str, o: &'static str) -> Member {
    Member {
        kind: Kind::Property,
        name,
        in_sig: "",
        out_sig: o,
        access: Access::Read,
    }
}
const fn s(name: &'static str, i: &'static str) -> Member {
    Member {
        kind: Kind::Signal,
        name,
        in_sig: i,
        out_sig: "",
        access: Access::Read,
    }
}

/// Every member of `org.seuss.Manager1`.
pub const MEMBERS: &[Member] = &[
    m("CreateFunction", "ss", "s", Access::Write),
    m("UpdateFunction", "ss", "s", Access::Write),
    m("DeleteFunction", "s", "", Access::Write),
    m("ListFunctions", "", "a(sstts)", Access::Read),
    m("GetFunction", "s", "s", Access::Read),
    m("Invoke", "ss", "s", Access::Write),
    m("InvokeWithOptions", "ssa{sv}", "s", Access::Write),
    m("GetActivation", "s", "s", Access::Read),
    m("ListSnapshots", "", "a(tttsstu)", Access::Read),
    m("DropSnapshot", "t", "", Access::Write),
    m("Prewarm", "s", "t", Access::Write),
    m("GetStats", "", "a{sv}", Access::Read),
    p("Version", "s"),
    p("ModulePresent", "b"),
    p("MemoryBudget", "t"),
    p("MemoryUsed", "t"),
    p("SnapshotCount", "t"),
    p("InstanceCount", "t"),
    s("SnapshotCaptured", "ts"),
    s("SnapshotEvicted", "t"),
    s("FunctionChanged", "ss"),
];

/// The access class of method `name`, `None` if it is not a method of the interface.
pub fn method_access(name: &str) -> Option<Access> {
    MEMBERS
        .iter()
        .find(|m| m.kind == Kind::Method && m.name == name)
        .map(|m| m.access)
}

/// Names of the methods group `seuss` may call.
pub fn read_only_methods() -> impl Iterator<Item = &'static str> {
    MEMBERS
        .iter()
        .filter(|m| m.kind == Kind::Method && m.access == Access::Read)
        .map(|m| m.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutating_methods_are_root_only() {
        for name in [
            "CreateFunction",
            "UpdateFunction",
            "DeleteFunction",
            "Invoke",
            "DropSnapshot",
            "Prewarm",
        ] {
            assert_eq!(method_access(name), Some(Access::Write), "{name}");
        }
        assert_eq!(method_access("Version"), None, "properties are not methods");
        assert_eq!(
            read_only_methods().collect::<Vec<_>>(),
            [
                "ListFunctions",
                "GetFunction",
                "GetActivation",
                "ListSnapshots",
                "GetStats"
            ]
        );
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = MEMBERS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MEMBERS.len());
    }
}
