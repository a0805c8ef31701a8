//! The OpenWhisk REST API over real HTTP: auth, action CRUD and its errors, invoke variants and their
//! status codes, activation records/results/logs, body size limit.

mod common;

use common::*;
use serde_json::json;

const A: &str = "/api/v1/namespaces/_/actions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_required_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    let r = request(addr, "GET", A, None, b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], json!(401));
    let wrong = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:wrongkey";
    assert_eq!(request(addr, "GET", A, Some(wrong), b"").await.status, 401);
    let r = request(addr, "GET", A, Some(CRED), b"").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([]));
    assert_eq!(
        call(addr, "GET", "/api/v1/namespaces/other/actions", json!(null))
            .await
            .status,
        403
    );
    assert_eq!(
        call(addr, "GET", "/api/v1/nothing", json!(null))
            .await
            .status,
        404
    );
    let s = call(addr, "GET", "/api/v1/seuss/stats", json!(null))
        .await
        .json();
    assert_eq!(s["module_present"], json!(false));
    assert_eq!(s["budget_bytes"], json!(1024u64 << 20));
    assert_eq!(
        call(addr, "GET", "/api/v1/seuss/snapshots", json!(null))
            .await
            .json(),
        json!([])
    );
    assert_eq!(
        request(addr, "GET", "/api/v1/seuss/stats", None, b"")
            .await
            .status,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_crud_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    let body = json!({"exec": {"kind": "python:3", "code": "def main(a):\n    return {'v': 1}\n"}, "parameters": [{"key": "p", "value": 1}], "limits": {"timeout": 5000}});
    let r = call(addr, "PUT", &format!("{A}/hello"), body.clone()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let f = r.json();
    assert_eq!(f["name"], json!("hello"));
    assert_eq!(f["namespace"], json!("guest"));
    assert_eq!(f["version"], json!("0.0.1"));
    assert_eq!(
        f["limits"],
        json!({"timeout": 5000, "memory": 256, "logs": 10})
    );
    // Create without overwrite when it exists: 409; with overwrite: new version.
    let r = call(addr, "PUT", &format!("{A}/hello"), body.clone()).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["code"], json!(409));
    let r = call(
        addr,
        "PUT",
        &format!("{A}/hello?overwrite=true"),
        body.clone(),
    )
    .await;
    assert_eq!(r.json()["version"], json!("0.0.2"));
    let r = call(addr, "GET", &format!("{A}/hello"), json!(null)).await;
    assert_eq!(r.json()["exec"]["code"], body["exec"]["code"]);
    let r = call(addr, "GET", A, json!(null)).await;
    let list = r.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0]["exec"].get("code").is_none(), "list omits code");
    // Bad JSON, wrong shape, unsupported kind, bad name.
    assert_eq!(
        request(addr, "PUT", &format!("{A}/bad"), Some(CRED), b"{not json")
            .await
            .status,
        400
    );
    assert_eq!(
        call(addr, "PUT", &format!("{A}/bad"), json!({"exec": 3}))
            .await
            .status,
        400
    );
    assert_eq!(
        call(
            addr,
            "PUT",
            &format!("{A}/bad"),
            json!({"exec": {"kind": "java:8", "code": "x"}})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        call(addr, "PUT", &format!("{A}/b%20d"), body.clone())
            .await
            .status,
        400
    );
    // Delete, then everything about it is 404.
    assert_eq!(
        call(addr, "DELETE", &format!("{A}/hello"), json!(null))
            .await
            .status,
        200
    );
    for (m, p) in [
        ("GET", format!("{A}/hello")),
        ("DELETE", format!("{A}/hello")),
        ("POST", format!("{A}/hello?blocking=true")),
    ] {
        let r = call(addr, m, &p, json!(null)).await;
        assert_eq!(r.status, 404, "{m} {p}");
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("does not exist"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_variants_and_activation_records() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    let code = "import sys\ndef main(a):\n    print('out', a.get('x'))\n    print('err', file=sys.stderr)\n    if a.get('fail'):\n        return {'error': 'asked to fail'}\n    return {'x': a.get('x')}\n";
    assert_eq!(
        call(
            addr,
            "PUT",
            &format!("{A}/f"),
            json!({"exec": {"kind": "python:default", "code": code}})
        )
        .await
        .status,
        200
    );

    // blocking + result: just the result.
    let r = call(
        addr,
        "POST",
        &format!("{A}/f?blocking=true&result=true"),
        json!({"x": 7}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"x": 7}));
    // blocking: the whole record.
    let r = call(
        addr,
        "POST",
        &format!("{A}/f?blocking=true"),
        json!({"x": 8}),
    )
    .await;
    assert_eq!(r.status, 200);
    let act = r.json();
    assert_eq!(act["response"]["status"], json!("success"));
    assert_eq!(act["response"]["result"], json!({"x": 8}));
    assert_eq!(act["name"], json!("f"));
    assert!(act["duration"].as_u64().unwrap() >= 1);
    let path = act["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "startPath")
        .unwrap()["value"]
        .clone();
    assert_eq!(path, json!("hot"));
    // Function error: 502 with the error result.
    let r = call(
        addr,
        "POST",
        &format!("{A}/f?blocking=true&result=true"),
        json!({"fail": true}),
    )
    .await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json(), json!({"error": "asked to fail"}));
    // Non-blocking: 202 with an id; the record shows up once done.
    let r = call(addr, "POST", &format!("{A}/f"), json!({"x": 9})).await;
    assert_eq!(r.status, 202);
    let id = r.json()["activationId"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    let mut rec = None;
    for _ in 0..100 {
        let r = call(
            addr,
            "GET",
            &format!("/api/v1/namespaces/_/activations/{id}"),
            json!(null),
        )
        .await;
        if r.status == 200 {
            rec = Some(r.json());
            break;
        }
        assert_eq!(r.status, 404);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let rec = rec.expect("the activation finishes");
    assert_eq!(rec["activationId"], json!(id));
    assert_eq!(rec["response"]["result"], json!({"x": 9}));
    let r = call(
        addr,
        "GET",
        &format!("/api/v1/namespaces/_/activations/{id}/result"),
        json!(null),
    )
    .await;
    assert_eq!(r.json()["result"], json!({"x": 9}));
    assert_eq!(r.json()["success"], json!(true));
    let r = call(
        addr,
        "GET",
        &format!("/api/v1/namespaces/_/activations/{id}/logs"),
        json!(null),
    )
    .await;
    let logs: Vec<String> = serde_json::from_value(r.json()["logs"].clone()).unwrap();
    assert!(
        logs.iter().any(|l| l.ends_with("stdout: out 9")),
        "{logs:?}"
    );
    assert!(logs.iter().any(|l| l.ends_with("stderr: err")), "{logs:?}");
    assert_eq!(
        call(
            addr,
            "GET",
            "/api/v1/namespaces/_/activations/0123456789abcdef0123456789abcdef",
            json!(null)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        call(
            addr,
            "GET",
            "/api/v1/namespaces/_/activations/..%2F..%2Fetc",
            json!(null)
        )
        .await
        .status,
        404
    );
    // Arguments must be an object; a forced unavailable path is refused.
    assert_eq!(
        call(addr, "POST", &format!("{A}/f?blocking=true"), json!([1, 2]))
            .await
            .status,
        400
    );
    assert_eq!(
        call(
            addr,
            "POST",
            &format!("{A}/f?blocking=true&seussPath=warm"),
            json!({})
        )
        .await
        .status,
        503
    );
    assert_eq!(
        call(
            addr,
            "POST",
            &format!("{A}/f?blocking=true&seussPath=bogus"),
            json!({})
        )
        .await
        .status,
        400
    );
    let r = call(
        addr,
        "POST",
        &format!("{A}/f?blocking=true&result=true&seussPath=cold"),
        json!({"x": 1}),
    )
    .await;
    assert_eq!(r.json(), json!({"x": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_body_bytes = 10_000;
    let addr = serve(host_with(cfg, None).await).await;
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(20_000));
    let r = request(addr, "PUT", &format!("{A}/big"), Some(CRED), big.as_bytes()).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["code"], json!(413));
    let r = request(
        addr,
        "POST",
        &format!("{A}/big?blocking=true"),
        Some(CRED),
        big.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 413);
}
