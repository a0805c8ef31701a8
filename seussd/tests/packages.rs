//! Packages over real HTTP with real Python instances: package create/update/get/delete/list with
//! OpenWhisk's records and errors; actions `pkg/action` created, got, listed, invoked and deleted
//! through `/actions/pkg/action`; parameters merged package < binding < action < invocation; bindings
//! (resolution, refused writes, bad targets); sequences of packaged actions; a web action in a package
//! and through a binding; packages, bindings and their actions after a restart on the same state
//! directory.

mod common;

use common::*;
use serde_json::{json, Value};
use seussd::packages::PackagePut;

const A: &str = "/api/v1/namespaces/_/actions";
const P: &str = "/api/v1/namespaces/_/packages";

/// Returns its arguments without the web context.
const ECHO: &str = "def main(args):\n    return {k: v for k, v in args.items() if not k.startswith('__')}\n";

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// `{"k": v, ...}` as OpenWhisk's key/value list.
fn kvs(v: Value) -> Value {
    Value::Array(
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    )
}

/// The parameters of a record as an object.
fn params(record: &Value) -> Value {
    let mut m = serde_json::Map::new();
    for p in record["parameters"].as_array().unwrap() {
        m.insert(p["key"].as_str().unwrap().into(), p["value"].clone());
    }
    Value::Object(m)
}

async fn put(addr: std::net::SocketAddr, path: &str, body: Value) -> Value {
    let r = call(addr, "PUT", path, body).await;
    assert_eq!(r.status, 200, "PUT {path}: {}", text(&r));
    r.json()
}

async fn action(addr: std::net::SocketAddr, name: &str, code: &str, extra: Value) -> Value {
    let mut body = json!({"exec": {"kind": "python:3", "code": code}});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    put(addr, &format!("{A}/{name}"), body).await
}

async fn invoke(addr: std::net::SocketAddr, name: &str, args: Value) -> Value {
    let r = call(addr, "POST", &format!("{A}/{name}?blocking=true&result=true"), args).await;
    assert_eq!(r.status, 200, "invoke {name}: {}", text(&r));
    r.json()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect()
}

/// An error answer: its status and message.
async fn refused(addr: std::net::SocketAddr, method: &str, path: &str, body: Value) -> (u16, String) {
    let r = call(addr, method, path, body).await;
    let v = r.json();
    assert_eq!(v["code"], json!(r.status), "{}", text(&r));
    (r.status, v["error"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_records_updates_lists_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;

    let body = json!({"parameters": kvs(json!({"a": 1})), "annotations": kvs(json!({"note": "x"})), "publish": true});
    let p = put(addr, &format!("{P}/p1"), body).await;
    assert_eq!(p["namespace"], "guest");
    assert_eq!(p["name"], "p1");
    assert_eq!(p["version"], "0.0.1");
    assert_eq!(p["publish"], true);
    assert_eq!(p["binding"], json!({}));
    assert_eq!(p["parameters"], kvs(json!({"a": 1})));
    assert_eq!(p["annotations"], kvs(json!({"note": "x"})));
    assert!(p["updated"].as_u64().unwrap() > 0);

    // An existing package needs overwrite; an update replaces what it gives and keeps the rest.
    assert_eq!(refused(addr, "PUT", &format!("{P}/p1"), json!({})).await, (409, "resource already exists".into()));
    let p = put(addr, &format!("{P}/p1?overwrite=true"), json!({"parameters": kvs(json!({"b": 2}))})).await;
    assert_eq!(p["version"], "0.0.2");
    assert_eq!(p["parameters"], kvs(json!({"b": 2})));
    assert_eq!(p["annotations"], kvs(json!({"note": "x"})));
    assert_eq!(p["publish"], true);
    let p = put(addr, &format!("{P}/p1?overwrite=true"), json!({"version": "1.2.3"})).await;
    assert_eq!(p["version"], "1.2.3");
    // An empty body creates a package with defaults.
    let r = request(addr, "PUT", &format!("{P}/p2"), Some(CRED), b"").await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.json()["parameters"], json!([]));

    let g = call(addr, "GET", &format!("{P}/p1"), json!(null)).await;
    assert_eq!(g.status, 200);
    let g = g.json();
    assert_eq!(g["actions"], json!([]));
    assert_eq!(g["feeds"], json!([]));
    assert_eq!(g["version"], "1.2.3");

    for n in 3..=5 {
        put(addr, &format!("{P}/p{n}"), json!({})).await;
    }
    let all = call(addr, "GET", P, json!(null)).await.json();
    assert_eq!(names(&all), ["p1", "p2", "p3", "p4", "p5"]);
    let page = call(addr, "GET", &format!("{P}?skip=1&limit=2"), json!(null)).await.json();
    assert_eq!(names(&page), ["p2", "p3"]);
    assert_eq!(call(addr, "GET", &format!("{P}?count=true"), json!(null)).await.json(), json!({"packages": 5}));
    assert_eq!(call(addr, "GET", &format!("{P}?count=true&skip=4"), json!(null)).await.json(), json!({"packages": 1}));
    assert_eq!(refused(addr, "GET", &format!("{P}?limit=201"), json!(null)).await.0, 400);
    assert_eq!(refused(addr, "GET", &format!("{P}?skip=-1"), json!(null)).await.0, 400);

    // Bad names, bodies and namespaces; missing packages.
    assert_eq!(refused(addr, "PUT", &format!("{P}/.bad"), json!({})).await.0, 400);
    assert_eq!(refused(addr, "PUT", &format!("{P}/p9"), json!({"parameters": 3})).await.0, 400);
    assert_eq!(refused(addr, "PUT", &format!("{P}/p9"), json!({"binding": "p1"})).await.0, 400);
    assert_eq!(refused(addr, "GET", "/api/v1/namespaces/other/packages", json!(null)).await.0, 403);
    assert_eq!(refused(addr, "GET", &format!("{P}/nope"), json!(null)).await.0, 404);
    assert_eq!(refused(addr, "DELETE", &format!("{P}/nope"), json!(null)).await.0, 404);
    assert_eq!(request(addr, "GET", P, None, b"").await.status, 401);

    let d = call(addr, "DELETE", &format!("{P}/p2"), json!(null)).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.json()["name"], "p2");
    assert_eq!(refused(addr, "GET", &format!("{P}/p2"), json!(null)).await.0, 404);
    assert_eq!(names(&call(addr, "GET", P, json!(null)).await.json()), ["p1", "p3", "p4", "p5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_live_in_packages() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    put(addr, &format!("{P}/pk"), json!({})).await;
    create_python(addr, "top", ECHO).await;

    // Created as pkg/f, or with the slash encoded as the npm client may send it.
    let f = action(addr, "pk/f", "def main(a):\n    return {'f': a.get('x')}\n", json!({})).await;
    assert_eq!(f["namespace"], "guest/pk");
    assert_eq!(f["name"], "f");
    assert_eq!(f["version"], "0.0.1");
    action(addr, "pk%2Fg", ECHO, json!({})).await;
    assert_eq!(refused(addr, "PUT", &format!("{A}/nopkg/f"), json!({"exec": {"kind": "python:3", "code": ECHO}})).await.0, 404);
    assert_eq!(refused(addr, "PUT", &format!("{A}/pk/.bad"), json!({"exec": {"kind": "python:3", "code": ECHO}})).await.0, 400);
    assert_eq!(refused(addr, "PUT", &format!("{A}/pk/f"), json!({"exec": {"kind": "python:3", "code": ECHO}})).await.0, 409);

    let g = call(addr, "GET", &format!("{A}/pk/g"), json!(null)).await;
    assert_eq!(g.status, 200, "{}", text(&g));
    assert_eq!(g.json()["namespace"], "guest/pk");
    assert_eq!(g.json()["name"], "g");
    assert_eq!(g.json()["exec"]["code"], ECHO);
    assert_eq!(refused(addr, "GET", &format!("{A}/pk/nope"), json!(null)).await.0, 404);
    assert_eq!(refused(addr, "GET", &format!("{A}/nopkg/f"), json!(null)).await.0, 404);

    // The namespace's list shows every action; a package's list only its own.
    let all = call(addr, "GET", A, json!(null)).await.json();
    let shown: Vec<(String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["namespace"].as_str().unwrap().into(), a["name"].as_str().unwrap().into()))
        .collect();
    assert_eq!(shown, [("guest/pk".into(), "f".into()), ("guest/pk".into(), "g".into()), ("guest".into(), "top".into())]);
    assert!(all[0]["exec"].get("code").is_none());
    assert_eq!(names(&call(addr, "GET", &format!("{A}/pk/"), json!(null)).await.json()), ["f", "g"]);
    assert_eq!(names(&call(addr, "GET", &format!("{A}?limit=1&skip=2"), json!(null)).await.json()), ["top"]);
    assert_eq!(call(addr, "GET", &format!("{A}?count=true"), json!(null)).await.json(), json!({"actions": 3}));
    assert_eq!(refused(addr, "GET", &format!("{A}/nopkg/"), json!(null)).await.0, 404);
    let pkg = call(addr, "GET", &format!("{P}/pk"), json!(null)).await.json();
    assert_eq!(names(&pkg["actions"]), ["f", "g"]);
    assert_eq!(pkg["actions"][0]["version"], "0.0.1");

    // Invoked by its qualified name; the record names its path.
    let r = call(addr, "POST", &format!("{A}/pk/f?blocking=true"), json!({"x": 7})).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let act = r.json();
    assert_eq!(act["response"]["result"], json!({"f": 7}));
    let path = act["annotations"].as_array().unwrap().iter().find(|a| a["key"] == "path").unwrap();
    assert_eq!(path["value"], "guest/pk/f");
    assert_eq!(invoke(addr, "pk%2Ff", json!({"x": 8})).await, json!({"f": 8}));
    assert_eq!(refused(addr, "POST", &format!("{A}/pk/nope?blocking=true"), json!({})).await.0, 404);
    // An update through the package path.
    let u = put(addr, &format!("{A}/pk/f?overwrite=true"), json!({"exec": {"kind": "python:3", "code": "def main(a):\n    return {'v': 2}\n"}})).await;
    assert_eq!(u["version"], "0.0.2");
    assert_eq!(invoke(addr, "pk/f", json!({})).await, json!({"v": 2}));

    // A package with actions cannot be deleted.
    assert_eq!(
        refused(addr, "DELETE", &format!("{P}/pk"), json!(null)).await,
        (409, "Package not empty (contains 2 entities). Set force param or delete package contents.".into())
    );
    let d = call(addr, "DELETE", &format!("{A}/pk/g"), json!(null)).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.json()["name"], "g");
    assert_eq!(
        refused(addr, "DELETE", &format!("{P}/pk"), json!(null)).await,
        (409, "Package not empty (contains 1 entity). Set force param or delete package contents.".into())
    );
    // force=true deletes a package's actions with it (not another package's).
    put(addr, &format!("{P}/fp"), json!({})).await;
    for a in ["x", "y"] {
        put(addr, &format!("{A}/fp/{a}"), json!({"exec": {"kind": "python:3", "code": ECHO}})).await;
    }
    let d = call(addr, "DELETE", &format!("{P}/fp?force=true"), json!(null)).await;
    assert_eq!(d.status, 200, "{}", text(&d));
    assert_eq!(refused(addr, "GET", &format!("{A}/fp/x"), json!(null)).await.0, 404);
    assert_eq!(refused(addr, "GET", &format!("{P}/fp"), json!(null)).await.0, 404);
    assert_eq!(call(addr, "GET", &format!("{A}/pk/f"), json!(null)).await.status, 200);
    assert_eq!(call(addr, "DELETE", &format!("{A}/pk%2Ff"), json!(null)).await.status, 200);
    assert_eq!(refused(addr, "DELETE", &format!("{A}/pk/f"), json!(null)).await.0, 404);
    assert_eq!(call(addr, "DELETE", &format!("{P}/pk"), json!(null)).await.status, 200);
    assert_eq!(refused(addr, "PUT", &format!("{A}/pk/f"), json!({"exec": {"kind": "python:3", "code": ECHO}})).await.0, 404);
    assert_eq!(names(&call(addr, "GET", A, json!(null)).await.json()), ["top"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_merge_package_then_action_then_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    put(addr, &format!("{P}/m"), json!({"parameters": kvs(json!({"a": "pkg", "b": "pkg", "c": "pkg"}))})).await;
    action(addr, "m/echo", ECHO, json!({"parameters": kvs(json!({"b": "action", "c": "action"}))})).await;

    assert_eq!(invoke(addr, "m/echo", json!({"c": "inv"})).await, json!({"a": "pkg", "b": "action", "c": "inv"}));
    // The action's record shows the merged parameters, as OpenWhisk's GET does.
    let g = call(addr, "GET", &format!("{A}/m/echo"), json!(null)).await.json();
    assert_eq!(params(&g), json!({"a": "pkg", "b": "action", "c": "action"}));
    // A package update reaches the next invocation (also of an instance already running).
    put(addr, &format!("{P}/m?overwrite=true"), json!({"parameters": kvs(json!({"a": "pkg2", "d": "pkg2"}))})).await;
    assert_eq!(
        invoke(addr, "m/echo", json!({})).await,
        json!({"a": "pkg2", "b": "action", "c": "action", "d": "pkg2"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_offer_the_bound_packages_actions() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    put(addr, &format!("{P}/base"), json!({"parameters": kvs(json!({"a": "base", "b": "base", "c": "base"}))})).await;
    action(addr, "base/echo", ECHO, json!({"parameters": kvs(json!({"c": "action"}))})).await;

    let b = put(
        addr,
        &format!("{P}/bound"),
        json!({"binding": {"namespace": "_", "name": "base"}, "parameters": kvs(json!({"b": "binding", "c": "binding"}))}),
    )
    .await;
    assert_eq!(b["binding"], json!({"namespace": "guest", "name": "base"}));
    assert_eq!(b["annotations"], kvs(json!({"binding": {"namespace": "guest", "name": "base"}})));
    assert_eq!(b["parameters"], kvs(json!({"b": "binding", "c": "binding"})));
    // Without a namespace the binding is in this one.
    let b2 = put(addr, &format!("{P}/bound2"), json!({"binding": {"name": "base"}})).await;
    assert_eq!(b2["binding"], json!({"namespace": "guest", "name": "base"}));

    // The binding's view: the bound package's actions, its parameters over the bound package's.
    let g = call(addr, "GET", &format!("{P}/bound"), json!(null)).await.json();
    assert_eq!(g["name"], "bound");
    assert_eq!(names(&g["actions"]), ["echo"]);
    assert_eq!(params(&g), json!({"a": "base", "b": "binding", "c": "binding"}));
    assert_eq!(names(&call(addr, "GET", &format!("{A}/bound/"), json!(null)).await.json()), ["echo"]);
    let list = call(addr, "GET", P, json!(null)).await.json();
    assert_eq!(names(&list), ["base", "bound", "bound2"]);

    // Invoking through the binding: bound package < binding < action < invocation.
    assert_eq!(
        invoke(addr, "bound/echo", json!({"d": "inv"})).await,
        json!({"a": "base", "b": "binding", "c": "action", "d": "inv"})
    );
    assert_eq!(invoke(addr, "bound/echo", json!({"c": "inv"})).await["c"], "inv");
    assert_eq!(invoke(addr, "base/echo", json!({})).await, json!({"a": "base", "b": "base", "c": "action"}));
    let g = call(addr, "GET", &format!("{A}/bound/echo"), json!(null)).await;
    assert_eq!(g.status, 200);
    assert_eq!(params(&g.json()), json!({"a": "base", "b": "binding", "c": "action"}));
    assert_eq!(refused(addr, "POST", &format!("{A}/bound/nope?blocking=true"), json!({})).await.0, 404);

    // No actions are written through a binding.
    let create = json!({"exec": {"kind": "python:3", "code": ECHO}});
    let not_on_binding = (400, "Operation not permitted on package binding.".to_string());
    assert_eq!(refused(addr, "PUT", &format!("{A}/bound/new"), create.clone()).await, not_on_binding);
    assert_eq!(refused(addr, "PUT", &format!("{A}/bound/echo?overwrite=true"), create.clone()).await, not_on_binding);
    assert_eq!(refused(addr, "DELETE", &format!("{A}/bound/echo"), json!(null)).await, not_on_binding);

    // Bad targets; a package does not turn into a binding.
    assert_eq!(
        refused(addr, "PUT", &format!("{P}/b3"), json!({"binding": {"namespace": "_", "name": "missing"}})).await,
        (400, "Binding references a package that does not exist.".into())
    );
    assert_eq!(
        refused(addr, "PUT", &format!("{P}/b3"), json!({"binding": {"namespace": "other", "name": "base"}})).await.0,
        400
    );
    assert_eq!(
        refused(addr, "PUT", &format!("{P}/b3"), json!({"binding": {"namespace": "_", "name": "bound"}})).await,
        (400, "Cannot bind to another package binding.".into())
    );
    assert_eq!(
        refused(addr, "PUT", &format!("{P}/base?overwrite=true"), json!({"binding": {"name": "bound2"}})).await.0,
        409
    );
    // A binding may be re-pointed and keeps its binding when an update does not give one.
    put(addr, &format!("{P}/other"), json!({})).await;
    let r = put(addr, &format!("{P}/bound2?overwrite=true"), json!({"binding": {"name": "other"}})).await;
    assert_eq!(r["binding"]["name"], "other");
    let r = put(addr, &format!("{P}/bound2?overwrite=true"), json!({"parameters": kvs(json!({"z": 1}))})).await;
    assert_eq!(r["binding"]["name"], "other");
    assert_eq!(r["version"], "0.0.3");

    // A binding is deleted even though its package has actions; the package is not.
    assert_eq!(call(addr, "DELETE", &format!("{P}/bound"), json!(null)).await.status, 200);
    assert_eq!(refused(addr, "POST", &format!("{A}/bound/echo?blocking=true"), json!({})).await.0, 404);
    assert_eq!(refused(addr, "DELETE", &format!("{P}/base"), json!(null)).await.0, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_actions_in_packages() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    put(addr, &format!("{P}/site"), json!({"parameters": kvs(json!({"greeting": "hello", "p": "pkg"}))})).await;
    let exported = kvs(json!({"web-export": true}));
    action(addr, "site/page", ECHO, json!({"annotations": exported})).await;
    action(addr, "site/fixed", ECHO, json!({"annotations": kvs(json!({"web-export": true, "final": true}))})).await;
    put(addr, &format!("{P}/mirror"), json!({"binding": {"name": "site"}, "parameters": kvs(json!({"p": "binding"}))})).await;

    let r = request_with(addr, "GET", "/api/v1/web/guest/site/page.json?q=1", &[], b"").await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(r.header("x-openwhisk-activation-id").is_some());
    assert_eq!(r.json(), json!({"greeting": "hello", "p": "pkg", "q": "1"}));
    let r = request_with(addr, "GET", "/api/v1/web/_/mirror/page.json", &[], b"").await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.json(), json!({"greeting": "hello", "p": "binding"}));
    // Not under `default`, nor in a missing package; `final` guards the package's parameters too.
    assert_eq!(request_with(addr, "GET", "/api/v1/web/guest/default/page.json", &[], b"").await.status, 404);
    assert_eq!(request_with(addr, "GET", "/api/v1/web/guest/nopkg/page.json", &[], b"").await.status, 404);
    assert_eq!(request_with(addr, "GET", "/api/v1/web/guest/site/fixed.json", &[], b"").await.json()["p"], "pkg");
    assert_eq!(request_with(addr, "GET", "/api/v1/web/guest/site/fixed.json?greeting=x", &[], b"").await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_bindings_and_their_actions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = host(dir.path()).await;
        let pkg: PackagePut =
            serde_json::from_value(json!({"parameters": kvs(json!({"a": "pkg", "b": "pkg"})), "publish": true})).unwrap();
        h.put_package("keep", pkg, false).await.unwrap();
        let bind: PackagePut =
            serde_json::from_value(json!({"binding": {"name": "keep"}, "parameters": kvs(json!({"b": "bind"}))})).unwrap();
        h.put_package("alias", bind, false).await.unwrap();
        h.put_package("gone", PackagePut::default(), false).await.unwrap();
        h.delete_package("gone", false).await.unwrap();
        h.put_function("keep/echo", def(ECHO), false).await.unwrap();
        h.shutdown().await;
    }
    // A crash mid-write leaves a temporary file behind.
    std::fs::write(dir.path().join("packages/.keep.json.1.2.tmp"), b"{\"torn").unwrap();
    let addr = serve(host(dir.path()).await).await;
    let list = call(addr, "GET", P, json!(null)).await.json();
    assert_eq!(names(&list), ["alias", "keep"]);
    let keep = call(addr, "GET", &format!("{P}/keep"), json!(null)).await.json();
    assert_eq!(keep["publish"], true);
    assert_eq!(names(&keep["actions"]), ["echo"]);
    let alias = call(addr, "GET", &format!("{P}/alias"), json!(null)).await.json();
    assert_eq!(alias["binding"], json!({"namespace": "guest", "name": "keep"}));
    assert_eq!(invoke(addr, "alias/echo", json!({"c": 1})).await, json!({"a": "pkg", "b": "bind", "c": 1}));
    assert_eq!(invoke(addr, "keep/echo", json!({})).await, json!({"a": "pkg", "b": "pkg"}));
    assert_eq!(refused(addr, "DELETE", &format!("{P}/keep"), json!(null)).await.0, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_of_packaged_actions() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    put(addr, &format!("{P}/sq"), json!({"parameters": kvs(json!({"k": "pkg"}))})).await;
    put(addr, &format!("{P}/sqb"), json!({"binding": {"name": "sq"}, "parameters": kvs(json!({"k": "bind"}))})).await;
    action(addr, "sq/inc", "def main(a):\n    return {'k': a['k'], 'n': a.get('n', 0) + 1}\n", json!({})).await;

    let seq = |components: Value| json!({"exec": {"kind": "sequence", "components": components}});
    let s = put(addr, &format!("{A}/twice"), seq(json!(["sq/inc", "/_/sq/inc"]))).await;
    assert_eq!(s["exec"]["components"], json!(["/guest/sq/inc", "/guest/sq/inc"]));
    assert_eq!(invoke(addr, "twice", json!({})).await, json!({"k": "pkg", "n": 2}));
    put(addr, &format!("{A}/bound"), seq(json!(["/guest/sqb/inc"]))).await;
    assert_eq!(invoke(addr, "bound", json!({"n": 5})).await, json!({"k": "bind", "n": 6}));
    assert_eq!(refused(addr, "PUT", &format!("{A}/bad"), seq(json!(["nopkg/inc"]))).await.0, 400);
    assert_eq!(refused(addr, "PUT", &format!("{A}/bad"), seq(json!(["sq/nope"]))).await.0, 400);
}
