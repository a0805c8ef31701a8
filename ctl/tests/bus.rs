//! End-to-end tests of the control plane on a private bus: the real seussd
//! (cold path; no /dev/seuss needed) and the real seussctl, the shared proxy
//! round-tripping every method, error names, introspection against the
//! contract, the bus policy and seussd's own uid check.
//!
//! Run as root (`cargo test -p seussctl --test bus`); otherwise each test
//! prints `SKIP: <reason>` and passes.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use seuss_dbus_api::{members, Error, Kind, Manager1Proxy, MEMBERS};

const HELLO: &str =
    "def main(args):\n    return {\"greeting\": \"Hello \" + args.get(\"name\", \"stranger\")}\n";
const BOOM: &str = "def main(args):\n    raise Exception(\"boom\")\n";

fn definition(code: &str) -> String {
    json!({"exec": {"kind": "python:3", "code": code, "main": "main"}, "limits": {"timeout": 30000, "memory": 128}})
        .to_string()
}

async fn proxy(conn: &zbus::Connection) -> Manager1Proxy<'static> {
    Manager1Proxy::builder(conn)
        .cache_properties(zbus::CacheProperties::No)
        .build()
        .await
        .unwrap()
}

fn start_path(activation: &Value) -> Option<&str> {
    activation["annotations"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == "startPath")?["value"]
        .as_str()
}

#[track_caller]
fn assert_err(r: Result<impl std::fmt::Debug, Error>, name: &str) {
    match r {
        Err(e) => assert_eq!(e.dbus_name(), name, "{e:?}"),
        Ok(v) => panic!("expected {name}, got Ok({v:?})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_round_trips_every_method() {
    if skip() {
        return;
    }
    let bus = Bus::start(Policy::SystemLike);
    let daemon = Daemon::start(&bus).await;
    let conn = bus.connect().await;
    let p = proxy(&conn).await;

    // CreateFunction / conflicts / invalid definitions.
    let created: Value = serde_json::from_str(
        &p.create_function("hello", &definition(HELLO))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(created["name"], "hello");
    assert_err(
        p.create_function("hello", &definition(HELLO)).await,
        "org.seuss.Error.Conflict",
    );
    assert_err(
        p.create_function("bad", "{not json").await,
        "org.seuss.Error.InvalidArgs",
    );
    assert_err(
        p.create_function("bad", r#"{"exec":{"kind":"cobol:60","code":"x"}}"#)
            .await,
        "org.seuss.Error.InvalidArgs",
    );

    // UpdateFunction replaces, GetFunction returns the new record.
    let updated: Value = serde_json::from_str(
        &p.update_function("hello", &definition(HELLO))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_ne!(
        updated["version"], created["version"],
        "update bumps the version"
    );
    let got: Value = serde_json::from_str(&p.get_function("hello").await.unwrap()).unwrap();
    assert_eq!(got["exec"]["code"], HELLO);
    assert_err(p.get_function("nope").await, "org.seuss.Error.NotFound");

    // ListFunctions: typed entries.
    let list = p.list_functions().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            list[0].name.as_str(),
            list[0].kind.as_str(),
            list[0].memory_mb,
            list[0].timeout_ms
        ),
        ("hello", "python:3", 128, 30000)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&list[0].json).unwrap()["name"],
        "hello"
    );

    // Invoke on the cold path, then GetActivation of the same record.
    let act: Value =
        serde_json::from_str(&p.invoke("hello", r#"{"name":"bus"}"#).await.unwrap()).unwrap();
    assert_eq!(
        act["response"]["result"],
        json!({"greeting": "Hello bus"}),
        "{act}"
    );
    assert_eq!(act["response"]["success"], true);
    assert!(start_path(&act).is_some(), "startPath annotation in {act}");
    if !std::path::Path::new("/dev/seuss").exists() {
        assert_eq!(start_path(&act), Some("cold"));
    }
    let id = act["activationId"].as_str().unwrap();
    let again: Value = serde_json::from_str(&p.get_activation(id).await.unwrap()).unwrap();
    assert_eq!(again["activationId"], id);
    assert_err(
        p.get_activation("0000000000000000").await,
        "org.seuss.Error.NotFound",
    );
    assert_err(p.invoke("nope", "{}").await, "org.seuss.Error.NotFound");
    assert_err(
        p.invoke("hello", "[1]").await,
        "org.seuss.Error.InvalidArgs",
    );

    // InvokeWithOptions: forced path, non-blocking, bad options.
    let opts = |path: Option<&'static str>, blocking: bool| {
        let mut o = std::collections::HashMap::new();
        if let Some(p) = path {
            o.insert("path", zbus::zvariant::Value::from(p));
        }
        o.insert("blocking", zbus::zvariant::Value::from(blocking));
        o
    };
    let act: Value = serde_json::from_str(
        &p.invoke_with_options("hello", "{}", opts(Some("cold"), true))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(start_path(&act), Some("cold"), "{act}");
    assert_eq!(act["response"]["result"]["greeting"], "Hello stranger");
    let pending: Value = serde_json::from_str(
        &p.invoke_with_options("hello", r#"{"name":"later"}"#, opts(None, false))
            .await
            .unwrap(),
    )
    .unwrap();
    let later = pending["activationId"].as_str().unwrap().to_owned();
    let mut done = None;
    for _ in 0..200 {
        if let Ok(r) = p.get_activation(&later).await {
            let r: Value = serde_json::from_str(&r).unwrap();
            if r["end"].as_u64().unwrap_or(0) != 0 {
                done = Some(r);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = done.expect("the non-blocking activation finishes");
    assert_eq!(done["response"]["result"]["greeting"], "Hello later");
    let mut bad = std::collections::HashMap::new();
    bad.insert("path", zbus::zvariant::Value::from("tepid"));
    assert_err(
        p.invoke_with_options("hello", "{}", bad).await,
        "org.seuss.Error.InvalidArgs",
    );
    let mut bad = std::collections::HashMap::new();
    bad.insert("pth", zbus::zvariant::Value::from("warm"));
    assert_err(
        p.invoke_with_options("hello", "{}", bad).await,
        "org.seuss.Error.InvalidArgs",
    );
    if !std::path::Path::new("/dev/seuss").exists() {
        assert_err(
            p.invoke_with_options("hello", "{}", opts(Some("warm"), true))
                .await,
            "org.seuss.Error.ModuleNotLoaded",
        );
    }

    // Snapshots, prewarm and drop without the kernel module.
    if !std::path::Path::new("/dev/seuss").exists() {
        assert_eq!(p.list_snapshots().await.unwrap(), vec![]);
        assert_err(p.prewarm("hello").await, "org.seuss.Error.ModuleNotLoaded");
    }
    let no_module = !std::path::Path::new("/dev/seuss").exists();
    let want = if no_module {
        "org.seuss.Error.ModuleNotLoaded"
    } else {
        "org.seuss.Error.NotFound"
    };
    assert_err(p.drop_snapshot(u64::MAX).await, want);
    assert_err(p.prewarm("nope").await, want);

    // GetStats and the properties agree.
    let stats = p.get_stats().await.unwrap();
    let get_u64 = |k: &str| u64::try_from(&stats[k]).unwrap_or_else(|e| panic!("{k}: {e}"));
    assert!(get_u64("activations") >= 1);
    assert_eq!(get_u64("budget_bytes"), 64 << 20);
    assert_eq!(p.memory_budget().await.unwrap(), 64 << 20);
    let version = String::try_from(stats["version"].try_clone().unwrap()).unwrap();
    assert_eq!(p.version().await.unwrap(), version);
    assert_eq!(
        p.module_present().await.unwrap(),
        bool::try_from(&stats["module_present"]).unwrap()
    );
    assert_eq!(p.snapshot_count().await.unwrap(), get_u64("snapshots"));
    let _ = p.memory_used().await.unwrap();
    let _ = p.instance_count().await.unwrap();

    // DeleteFunction.
    p.delete_function("hello").await.unwrap();
    assert_err(p.get_function("hello").await, "org.seuss.Error.NotFound");
    assert_err(p.delete_function("hello").await, "org.seuss.Error.NotFound");
    assert!(p.list_functions().await.unwrap().is_empty());
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_matches_the_contract() {
    if skip() {
        return;
    }
    let bus = Bus::start(Policy::SystemLike);
    let _daemon = Daemon::start(&bus).await;
    let conn = bus.connect().await;
    let xml = zbus::fdo::IntrospectableProxy::builder(&conn)
        .destination(seuss_dbus_api::BUS_NAME)
        .unwrap()
        .path(seuss_dbus_api::OBJECT_PATH)
        .unwrap()
        .build()
        .await
        .unwrap()
        .introspect()
        .await
        .unwrap();
    let node = zbus_xml::Node::from_reader(xml.as_bytes()).unwrap();
    let iface = node
        .interfaces()
        .iter()
        .find(|i| i.name() == seuss_dbus_api::INTERFACE)
        .expect("org.seuss.Manager1 in the introspection data");

    let sig = |args: &[zbus_xml::Arg<'_>], dir: Option<zbus_xml::ArgDirection>| -> String {
        args.iter()
            .filter(|a| dir.is_none() || a.direction() == dir)
            .map(|a| a.ty().to_string())
            .collect()
    };
    let mut served = Vec::new();
    for m in iface.methods() {
        served.push((
            Kind::Method,
            m.name().to_string(),
            sig(m.args(), Some(zbus_xml::ArgDirection::In)),
            sig(m.args(), Some(zbus_xml::ArgDirection::Out)),
        ));
    }
    for p in iface.properties() {
        assert!(
            p.access().read() && !p.access().write(),
            "{} must be read-only",
            p.name()
        );
        served.push((
            Kind::Property,
            p.name().to_string(),
            String::new(),
            p.ty().to_string(),
        ));
    }
    for s in iface.signals() {
        served.push((
            Kind::Signal,
            s.name().to_string(),
            sig(s.args(), None),
            String::new(),
        ));
    }
    let mut expected: Vec<_> = MEMBERS
        .iter()
        .map(|m| {
            (
                m.kind,
                m.name.to_owned(),
                m.in_sig.to_owned(),
                m.out_sig.to_owned(),
            )
        })
        .collect();
    let key = |t: &(Kind, String, String, String)| (t.1.clone(), format!("{:?}", t.0));
    served.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(
        served, expected,
        "the live interface differs from seuss_dbus_api::MEMBERS:\n{xml}"
    );
    // Every property changes with a notification (PropertiesChanged carries the value).
    for p in iface.properties() {
        let emits = p
            .annotations()
            .iter()
            .find(|a| a.name() == "org.freedesktop.DBus.Property.EmitsChangedSignal")
            .map(|a| a.value().to_owned());
        assert!(
            emits.is_none() || emits.as_deref() == Some("true"),
            "{}: {emits:?}",
            p.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_and_property_changes() {
    if skip() {
        return;
    }
    let bus = Bus::start(Policy::SystemLike);
    let _daemon = Daemon::start(&bus).await;
    let conn = bus.connect().await;
    let p = Manager1Proxy::new(&conn).await.unwrap();
    let mut changed = p.receive_function_changed().await.unwrap();
    let mut instances = p.receive_instance_count_changed().await;
    let before = p.instance_count().await.unwrap();

    p.create_function("sig", &definition(HELLO)).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), changed.next())
        .await
        .expect("FunctionChanged")
        .unwrap();
    let args = ev.args().unwrap();
    assert_eq!(
        (args.name.as_str(), args.change.as_str()),
        ("sig", "created")
    );

    // The first item of a property stream is the current value; wait for a different one.
    p.invoke("sig", "{}").await.unwrap();
    let changed_to = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(c) = instances.next().await {
            let v = c.get().await.unwrap();
            if v != before {
                return v;
            }
        }
        panic!("property stream ended");
    })
    .await
    .expect("InstanceCount change notification after an invocation left an idle instance");
    assert_eq!(changed_to, p.instance_count().await.unwrap());

    p.delete_function("sig").await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), changed.next())
        .await
        .expect("FunctionChanged")
        .unwrap();
    assert_eq!(ev.args().unwrap().change, "deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seussctl_drives_seussd() {
    if skip() {
        return;
    }
    let bus = Bus::start(Policy::SystemLike);
    let daemon = Daemon::start(&bus).await;
    let src = daemon.dir.join("hello.py");
    std::fs::write(&src, HELLO).unwrap();
    let boom = daemon.dir.join("boom.py");
    std::fs::write(&boom, BOOM).unwrap();
    let src = src.to_str().unwrap();
    let ctl = |args: &[&str]| seussctl(&bus, None, args);

    let o = ctl(&[
        "function",
        "create",
        "hello",
        src,
        "--memory",
        "128",
        "-p",
        "name=param",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = ctl(&["function", "create", "hello", src]);
    assert_eq!(o.status.code(), Some(73), "conflict: {}", stderr(&o));
    assert!(stderr(&o).contains("function update"), "{}", stderr(&o));
    assert_eq!(
        ctl(&["function", "create", "boom", boom.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );

    let o = ctl(&["function", "list", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["boom", "hello"]);
    let table = stdout(&ctl(&["function", "list"]));
    assert!(
        table.starts_with("NAME") && table.contains("hello  python:3  128 MiB"),
        "{table}"
    );

    // invoke: bound parameter, then -p over --json.
    let o = ctl(&["--json", "invoke", "hello"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let act: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(act["response"]["result"]["greeting"], "Hello param");
    if !std::path::Path::new("/dev/seuss").exists() {
        assert_eq!(start_path(&act), Some("cold"), "{act}");
    }
    let o = ctl(&["invoke", "hello", "--json", r#"{"name":"json"}"#]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        json!({"greeting":"Hello json"})
    );
    assert!(stderr(&o).contains("start path"), "{}", stderr(&o));
    let id = act["activationId"].as_str().unwrap();
    let o = ctl(&["activation", id, "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()["activationId"],
        id
    );
    let o = ctl(&["activation", id]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        json!({"greeting":"Hello param"})
    );
    assert_eq!(
        ctl(&["activation", "feedfacefeedface"]).status.code(),
        Some(3)
    );
    let o = ctl(&[
        "invoke",
        "hello",
        "--json",
        r#"{"name":"json"}"#,
        "-p",
        "name=p",
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        json!({"greeting":"Hello p"})
    );

    // --path and --no-wait.
    let o = ctl(&["--json", "invoke", "hello", "--path", "cold"]);
    let act: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(start_path(&act), Some("cold"), "{act}");
    let o = ctl(&["invoke", "hello", "--no-wait"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    assert!(
        !id.is_empty() && stderr(&o).contains("seussctl activation"),
        "{}",
        stderr(&o)
    );
    wait_for(Duration::from_secs(20), "the --no-wait activation", || {
        let o = ctl(&["activation", &id, "--json"]);
        o.status.success()
            && serde_json::from_str::<Value>(&stdout(&o)).unwrap()["end"].as_u64() != Some(0)
    });

    // A failing function exits 1; a missing one 3; bad usage 2.
    let o = ctl(&["invoke", "boom"]);
    assert_eq!(o.status.code(), Some(1), "{} {}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("error"), "{}", stdout(&o));
    let o = ctl(&["invoke", "nope"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("org.seuss.Error.NotFound"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        ctl(&["invoke", "hello", "--json", "[1]"]).status.code(),
        Some(2)
    );
    assert_eq!(ctl(&["function", "get", "nope"]).status.code(), Some(3));

    // update from a complete OpenWhisk action body, on stdin-less file input
    let def = daemon.dir.join("hello.json");
    std::fs::write(
        &def,
        json!({"exec": {"kind": "python:3", "code": HELLO.replace("Hello", "Howdy"), "main": "main"},
               "parameters": [{"key": "name", "value": "def"}]})
        .to_string(),
    )
    .unwrap();
    let o = ctl(&[
        "function",
        "update",
        "hello",
        "--definition",
        def.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = ctl(&["invoke", "hello"]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap(),
        json!({"greeting": "Howdy def"})
    );
    std::fs::write(&def, "{not json").unwrap();
    let o = ctl(&[
        "function",
        "update",
        "hello",
        "--definition",
        def.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    let o = ctl(&["function", "update", "hello", "/nonexistent/code.py"]);
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    let o = ctl(&["function", "update", "hello", src]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let o = ctl(&["function", "get", "hello", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&o)).unwrap()["exec"]["code"],
        HELLO
    );

    if !std::path::Path::new("/dev/seuss").exists() {
        let o = ctl(&["snapshots", "--tree"]);
        assert_eq!(
            (o.status.code(), stdout(&o).as_str()),
            (Some(0), "no snapshots\n")
        );
        let o = ctl(&["snapshots", "--json"]);
        assert_eq!(stdout(&o).trim(), "[]");
        let o = ctl(&["prewarm", "hello"]);
        assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
        assert!(stderr(&o).contains("modprobe seuss"), "{}", stderr(&o));
    }
    let o = ctl(&["drop", "987654321"]);
    let want = if std::path::Path::new("/dev/seuss").exists() {
        3
    } else {
        69
    };
    assert_eq!(o.status.code(), Some(want), "{}", stderr(&o));

    let o = ctl(&["stats", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let stats: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(stats["activations"].as_u64().unwrap() >= 4, "{stats}");
    assert_eq!(stats["budget_bytes"], 64 << 20);
    let o = ctl(&["stats"]);
    assert!(stdout(&o).contains("64.0 MiB"), "{}", stdout(&o));

    let o = ctl(&["status", "--json"]);
    let status: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (
            status["running"].as_bool(),
            status["memory_budget"].as_u64()
        ),
        (Some(true), Some(64 << 20))
    );
    let o = ctl(&["status"]);
    assert!(
        stdout(&o).contains("running (org.seuss.Manager1)"),
        "{}",
        stdout(&o)
    );

    assert_eq!(ctl(&["function", "delete", "boom"]).status.code(), Some(0));
    assert_eq!(ctl(&["function", "delete", "boom"]).status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_policy_refuses_outsiders_and_limits_members_to_reading() {
    if skip() {
        return;
    }
    ensure_member_user();
    let bus = Bus::start(Policy::SystemLike);
    let _daemon = Daemon::start(&bus).await;

    // Outsider: refused by the bus before seussd sees the call.
    for args in [
        &["function", "list"][..],
        &["stats"],
        &["status"],
        &["function", "delete", "x"],
    ] {
        let o = seussctl(&bus, Some(OUTSIDER), args);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("org.freedesktop.DBus.Error.AccessDenied"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // Member: may read (methods and properties), may not change.
    for args in [
        &["function", "list"][..],
        &["snapshots", "--tree"],
        &["stats"],
        &["status"],
    ] {
        let o = seussctl(&bus, Some(MEMBER), args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    }
    for args in [
        &["function", "delete", "x"][..],
        &["invoke", "x"],
        &["prewarm", "x"],
        &["drop", "1"],
    ] {
        let o = seussctl(&bus, Some(MEMBER), args);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("AccessDenied"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // Root: everything (NotFound from seussd proves the call got through).
    let o = seussctl(&bus, None, &["function", "delete", "x"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seussd_checks_the_callers_uid_even_on_an_open_bus() {
    if skip() {
        return;
    }
    ensure_member_user();
    let bus = Bus::start(Policy::Permissive);
    let _daemon = Daemon::start(&bus).await;
    let denied = "org.seuss.Error.PermissionDenied";

    for args in [&["function", "list"][..], &["function", "delete", "x"]] {
        let o = seussctl(&bus, Some(OUTSIDER), args);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(denied), "{args:?}: {}", stderr(&o));
    }
    for method in members::read_only_methods() {
        let args: &[&str] = match method {
            "ListFunctions" => &["function", "list"],
            "ListSnapshots" => &["snapshots"],
            "GetStats" => &["stats"],
            "GetFunction" => &["function", "get", "x"],
            "GetActivation" => &["activation", "feedfacefeedface"],
            other => panic!("read-only method {other} has no seussctl command in this test"),
        };
        let o = seussctl(&bus, Some(MEMBER), args);
        assert!(
            matches!(o.status.code(), Some(0) | Some(3)),
            "{method}: {}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains(denied), "{method}: {}", stderr(&o));
    }
    for args in [
        &["function", "delete", "x"][..],
        &["invoke", "x"],
        &["prewarm", "x"],
        &["drop", "1"],
    ] {
        let o = seussctl(&bus, Some(MEMBER), args);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(denied) && stderr(&o).contains("requires root"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seussctl_without_seussd_says_how_to_start_it() {
    if skip() {
        return;
    }
    let bus = Bus::start(Policy::SystemLike);
    for args in [&["status"][..], &["function", "list"]] {
        let o = seussctl(&bus, None, args);
        assert_eq!(o.status.code(), Some(69), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("seussd is not running: systemctl start seussd"),
            "{}",
            stderr(&o)
        );
    }
    // No bus at all.
    let o = std::process::Command::new(seussctl_bin())
        .arg("status")
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={}/nonexistent", bus.dir.display()),
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("systemctl start dbus"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_activation_starts_seussd_on_the_first_call() {
    if skip() {
        return;
    }
    // What data/org.seuss.Manager1.service does through systemd, done by dbus-daemon itself.
    let services = tempdir("services");
    let state = tempdir("seussd");
    write_config(&state);
    let bus_dir_hint = services.join("address");
    std::fs::write(
        services.join("org.seuss.Manager1.service"),
        format!(
            "[D-BUS Service]\nName=org.seuss.Manager1\nExec=/bin/sh -c 'DBUS_SYSTEM_BUS_ADDRESS=$(cat {hint}) exec {bin} --config {conf} >{log} 2>&1'\nUser=root\n",
            hint = bus_dir_hint.display(),
            bin = seussd_bin().display(),
            conf = state.join("seussd.toml").display(),
            log = state.join("seussd.log").display(),
        ),
    )
    .unwrap();
    let bus = Bus::start_with_services(Policy::SystemLike, Some(&services));
    std::fs::write(&bus_dir_hint, &bus.address).unwrap();

    let o = seussctl(&bus, None, &["status", "--json"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&o),
        std::fs::read_to_string(state.join("seussd.log")).unwrap_or_default()
    );
    let status: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(status["running"], true);

    // Stop the activated daemon (a child of dbus-daemon) by the pid the bus knows.
    let conn = bus.connect().await;
    let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
    let name = zbus::names::BusName::try_from(seuss_dbus_api::BUS_NAME).unwrap();
    let pid = dbus.get_connection_unix_process_id(name).await.unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // It exits (a zombie until dbus-daemon reaps it) before the bus goes away.
    wait_for(
        Duration::from_secs(10),
        "the activated seussd to exit",
        || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z "))
        },
    );
    let _ = std::fs::remove_dir_all(&services);
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn completions_and_man_page_come_from_the_cli() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_seussctl"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["completions", "bash"]);
    assert!(o.status.success());
    let bash = stdout(&o);
    for word in ["snapshots", "prewarm", "completions", "--tree"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let o = run(&["man"]);
    assert!(o.status.success());
    let man = stdout(&o);
    assert!(
        man.starts_with(".ie") || man.contains(".TH seussctl"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(
        man.contains("not running") || man.contains("Exit status"),
        "exit codes documented"
    );
    assert_eq!(
        run(&["frobnicate"]).status.code(),
        Some(2),
        "usage errors exit 2"
    );
}
