//! Web actions over real HTTP with real Python instances: only `web-export` actions answer, without
//! credentials unless `require-whisk-auth` says so; query, JSON and form arguments and the `__ow_*`
//! context reach the action (raw with `raw-http`); `.json` (with projection), `.html`, `.http` (status,
//! headers, text and base64 bodies) shape the answer; `final` parameters cannot be overridden.

mod common;

use common::*;
use serde_json::{json, Value};

const A: &str = "/api/v1/namespaces/_/actions";
const W: &str = "/api/v1/web/guest/default";

const ECHO: &str = "def main(args):\n    return {'greeting': 'hi ' + str(args.get('name', '?')), 'method': args['__ow_method'], 'path': args['__ow_path'], 'hdr': args['__ow_headers'].get('x-test'), 'auth_seen': 'authorization' in args['__ow_headers'], 'p': args.get('p')}\n";
const MAKER: &str = "def main(args):\n    return {'statusCode': 201, 'headers': {'x-a': '1', 'content-type': 'text/plain'}, 'body': 'made ' + args['__ow_path']}\n";
const PNG: &str = "def main(args):\n    return {'headers': {'content-type': 'image/png'}, 'body': 'AAEC/w=='}\n";
const HTML: &str = "def main(args):\n    return {'html': '<b>x</b>'}\n";
const RAW: &str = "def main(args):\n    return {'q': args['__ow_query'], 'b': args['__ow_body'], 'name': args.get('name')}\n";
const FAIL: &str = "def main(args):\n    return {'error': 'nope'}\n";

async fn web_action(addr: std::net::SocketAddr, name: &str, code: &str, annotations: Value, parameters: Value) {
    let body = json!({"exec": {"kind": "python:3", "code": code}, "annotations": annotations, "parameters": parameters});
    let r = call(addr, "PUT", &format!("{A}/{name}"), body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

fn exported() -> Value {
    json!([{"key": "web-export", "value": true}])
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Resp {
    request_with(addr, "GET", path, &[("X-Test", "t1")], b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_actions_answer_without_credentials_with_their_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    web_action(addr, "echo", ECHO, exported(), json!([])).await;
    create_python(addr, "private", ECHO).await;

    let r = get(addr, &format!("{W}/echo.json?name=ann")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("x-openwhisk-activation-id").is_some());
    let v = r.json();
    assert_eq!(v["greeting"], "hi ann");
    assert_eq!(v["method"], "get");
    assert_eq!(v["hdr"], "t1");
    assert_eq!(v["path"], "");
    // `_` stands for the namespace; a projection picks a field.
    let r = get(addr, "/api/v1/web/_/default/echo.json/greeting?name=ann").await;
    assert_eq!(r.json(), json!("hi ann"));
    assert_eq!(get(addr, &format!("{W}/echo.json/nothing")).await.status, 404);

    let r = request_with(addr, "POST", &format!("{W}/echo.json"), &[("Content-Type", "application/json")], br#"{"name":"bob"}"#).await;
    assert_eq!(r.json()["greeting"], "hi bob");
    assert_eq!(r.json()["method"], "post");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = request_with(addr, "PUT", &format!("{W}/echo.json"), &form, b"name=c%20d").await;
    assert_eq!(r.json()["greeting"], "hi c d");
    assert_eq!(r.json()["method"], "put");
    let r = request_with(addr, "POST", &format!("{W}/echo.json"), &[("Content-Type", "application/json")], b"{bad").await;
    assert_eq!(r.status, 400);

    // Not exported, unknown, other namespace or package, unknown extension.
    assert_eq!(get(addr, &format!("{W}/private.json")).await.status, 404);
    assert_eq!(get(addr, &format!("{W}/missing.json")).await.status, 404);
    assert_eq!(get(addr, "/api/v1/web/other/default/echo.json").await.status, 404);
    assert_eq!(get(addr, "/api/v1/web/guest/pkg/echo.json").await.status, 404);
    assert_eq!(get(addr, &format!("{W}/echo.exe")).await.status, 406);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_shape_the_http_answer() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    web_action(addr, "maker", MAKER, exported(), json!([])).await;
    web_action(addr, "png", PNG, exported(), json!([])).await;
    web_action(addr, "page", HTML, exported(), json!([])).await;
    web_action(addr, "fail", FAIL, exported(), json!([])).await;

    let r = get(addr, &format!("{W}/maker.http/some/where")).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-a").as_deref(), Some("1"));
    assert_eq!(r.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(r.body, b"made /some/where");
    // No extension is `.http`.
    assert_eq!(get(addr, &format!("{W}/maker")).await.body, b"made ");

    let r = get(addr, &format!("{W}/png")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, [0u8, 1, 2, 255], "a base64 body of a binary type is decoded");

    let r = get(addr, &format!("{W}/page.html")).await;
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(r.body, b"<b>x</b>");
    assert_eq!(get(addr, &format!("{W}/page.text")).await.status, 400, "no 'text' field");

    let r = get(addr, &format!("{W}/fail.json")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "nope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http_auth_and_final_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    web_action(addr, "raw", RAW, json!([{"key": "web-export", "value": true}, {"key": "raw-http", "value": true}]), json!([])).await;
    let r = request_with(addr, "POST", &format!("{W}/raw.json?name=q&b=2"), &[("Content-Type", "text/plain")], b"plain text").await;
    assert_eq!(r.json(), json!({"q": "name=q&b=2", "b": "plain text", "name": null}));

    let secured = json!([{"key": "web-export", "value": true}, {"key": "require-whisk-auth", "value": true}]);
    web_action(addr, "secured", ECHO, secured, json!([])).await;
    assert_eq!(get(addr, &format!("{W}/secured.json")).await.status, 401);
    let authz = basic(CRED);
    let r = request_with(addr, "GET", &format!("{W}/secured.json"), &[("Authorization", &authz)], b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["auth_seen"], false, "the credentials are not passed to the action");
    let r = request_with(addr, "GET", &format!("{W}/secured.json"), &[("Authorization", &basic("u:wrong"))], b"").await;
    assert_eq!(r.status, 401);

    let secret = json!([{"key": "web-export", "value": true}, {"key": "require-whisk-auth", "value": "s3cret"}]);
    web_action(addr, "secret", ECHO, secret, json!([])).await;
    assert_eq!(get(addr, &format!("{W}/secret.json")).await.status, 401);
    let h = |v| [("X-Require-Whisk-Auth", v)];
    assert_eq!(request_with(addr, "GET", &format!("{W}/secret.json"), &h("nope"), b"").await.status, 401);
    assert_eq!(request_with(addr, "GET", &format!("{W}/secret.json"), &h("s3cret"), b"").await.status, 200);

    let fin = json!([{"key": "web-export", "value": true}, {"key": "final", "value": true}]);
    web_action(addr, "fin", ECHO, fin, json!([{"key": "p", "value": 1}])).await;
    assert_eq!(get(addr, &format!("{W}/fin.json")).await.json()["p"], 1);
    assert_eq!(get(addr, &format!("{W}/fin.json?p=2")).await.status, 400);
}
