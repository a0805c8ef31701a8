//! The bus policy file `data/org.seuss.Manager1.conf` states the same access
//! split as [`seuss_dbus_api::MEMBERS`]: root owns the name and may send
//! everything; group `seuss` may call exactly the read-only methods and read
//! properties; the default context may only introspect and ping.

use seuss_dbus_api::{members, BUS_NAME, INTERFACE};

fn policy_file() -> String {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/org.seuss.Manager1.conf"
    );
    std::fs::read_to_string(p).expect("data/org.seuss.Manager1.conf")
}

/// The body of `<policy {attr}>...</policy>`.
fn policy_block<'a>(text: &'a str, attr: &str) -> &'a str {
    let open = format!("<policy {attr}>");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("no <policy {attr}>"))
        + open.len();
    let end = start + text[start..].find("</policy>").unwrap();
    assert!(
        text[end..].find(&open).is_none(),
        "one <policy {attr}> block only"
    );
    &text[start..end]
}

/// Value of attribute `name` in the element text `el`.
fn attr<'a>(el: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let i = el.find(&key)? + key.len();
    Some(&el[i..i + el[i..].find('"')?])
}

fn elements(block: &str) -> Vec<&str> {
    block
        .split('<')
        .filter(|e| e.starts_with("allow") || e.starts_with("deny"))
        .collect()
}

#[test]
fn root_owns_and_may_send_everything() {
    let text = policy_file();
    let els = elements(policy_block(&text, "user=\"root\""));
    assert!(els.iter().any(|e| attr(e, "own") == Some(BUS_NAME)));
    assert!(els
        .iter()
        .any(|e| attr(e, "send_destination") == Some(BUS_NAME)
            && attr(e, "send_interface").is_none()
            && attr(e, "send_member").is_none()));
    // Nobody else may own the name.
    assert_eq!(text.matches("own=").count(), 1);
}

#[test]
fn group_may_call_exactly_the_read_only_methods() {
    let text = policy_file();
    let els = elements(policy_block(&text, "group=\"seuss\""));
    assert!(els
        .iter()
        .all(|e| e.starts_with("allow") && attr(e, "send_destination") == Some(BUS_NAME)));
    let mut allowed: Vec<&str> = els
        .iter()
        .filter(|e| attr(e, "send_interface") == Some(INTERFACE))
        .map(|e| attr(e, "send_member").expect("per-member rules only"))
        .collect();
    allowed.sort_unstable();
    let mut expected: Vec<&str> = members::read_only_methods().collect();
    expected.sort_unstable();
    assert_eq!(allowed, expected);
    let props: Vec<&str> = els
        .iter()
        .filter(|e| attr(e, "send_interface") == Some("org.freedesktop.DBus.Properties"))
        .map(|e| attr(e, "send_member").expect("Get/GetAll only, never Set"))
        .collect();
    assert_eq!(props, ["Get", "GetAll"]);
}

#[test]
fn others_may_only_introspect() {
    let text = policy_file();
    for e in elements(policy_block(&text, "context=\"default\"")) {
        assert!(
            matches!(
                attr(e, "send_interface"),
                Some("org.freedesktop.DBus.Introspectable" | "org.freedesktop.DBus.Peer")
            ),
            "default context grants too much: <{e}"
        );
    }
}
