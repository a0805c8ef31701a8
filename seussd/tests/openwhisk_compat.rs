//! OpenWhisk compatibility over real HTTP: the API description and namespaces list, the activation id
//! header, updates that merge as OpenWhisk's do, and the activation record's shape (response without
//! `statusCode`, an application error reduced to its `error`, `initTime` only on cold starts, `timeout`,
//! `start` and `waitTime` around the time queued), and the blocking invoke's `timeout` parameter.

mod common;

use common::*;
use serde_json::{json, Value};

const A: &str = "/api/v1/namespaces/_/actions";

fn annotation<'a>(act: &'a Value, key: &str) -> Option<&'a Value> {
    act["annotations"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_info_and_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    // The description needs no credentials; everything else still does.
    for p in ["/api/v1", "/api/v1/"] {
        let r = request(addr, "GET", p, None, b"").await;
        assert_eq!(r.status, 200, "{p}");
        let v = r.json();
        assert_eq!(v["api_version_path"], json!("v1"));
        assert_eq!(v["api_version"], json!("1.0.0"));
        assert_eq!(v["build"], json!(env!("CARGO_PKG_VERSION")));
    }
    let r = request(addr, "GET", "/api/v1/namespaces", None, b"").await;
    assert_eq!(r.status, 401);
    let r = call(addr, "GET", "/api/v1/namespaces", json!(null)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!(["guest"]));
    // An unknown path is still behind the credentials.
    assert_eq!(
        request(addr, "GET", "/api/v1/nothing", None, b"")
            .await
            .status,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invoke_answer_names_its_activation() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    let code = "def main(a):\n    if a.get('fail'):\n        return {'error': 'no', 'extra': 1}\n    return {'ok': True}\n";
    create_python(addr, "f", code).await;
    let r = call(addr, "POST", &format!("{A}/f?blocking=true"), json!({})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-openwhisk-activation-id").as_deref(),
        r.json()["activationId"].as_str()
    );
    let r = call(
        addr,
        "POST",
        &format!("{A}/f?blocking=true&result=true"),
        json!({"fail": true}),
    )
    .await;
    assert_eq!(r.status, 502);
    // An application error keeps only its error, as OpenWhisk does.
    assert_eq!(r.json(), json!({"error": "no"}));
    let id = r
        .header("x-openwhisk-activation-id")
        .expect("header on an error answer");
    let rec = call(
        addr,
        "GET",
        &format!("/api/v1/namespaces/_/activations/{id}"),
        json!(null),
    )
    .await;
    assert_eq!(rec.status, 200);
    assert_eq!(rec.json()["response"]["status"], json!("application error"));
    assert_eq!(rec.json()["response"]["result"], json!({"error": "no"}));
    let r = call(addr, "POST", &format!("{A}/f"), json!({})).await;
    assert_eq!(r.status, 202);
    assert_eq!(
        r.header("x-openwhisk-activation-id").as_deref(),
        r.json()["activationId"].as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_without_exec_keeps_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    let code = "def main(a):\n    return {'k': a.get('k'), 'p': a.get('p')}\n";
    let body = json!({"exec": {"kind": "python:3", "code": code}, "parameters": [{"key": "p", "value": 1}],
        "annotations": [{"key": "a", "value": 1}], "limits": {"timeout": 5000, "memory": 256}});
    assert_eq!(call(addr, "PUT", &format!("{A}/f"), body).await.status, 200);
    assert_eq!(
        call(
            addr,
            "POST",
            &format!("{A}/f?blocking=true&result=true"),
            json!({})
        )
        .await
        .json(),
        json!({"k": null, "p": 1})
    );
    // What `wsk action update f -p k v` sends.
    let r = call(
        addr,
        "PUT",
        &format!("{A}/f?overwrite=true"),
        json!({"parameters": [{"key": "k", "value": "v"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let f = r.json();
    assert_eq!(f["version"], json!("0.0.2"));
    assert_eq!(f["exec"]["code"], json!(code));
    assert_eq!(f["parameters"], json!([{"key": "k", "value": "v"}]));
    assert_eq!(f["annotations"], json!([{"key": "a", "value": 1}]));
    // The idle instance of the old revision is not reused: the new parameters apply.
    assert_eq!(
        call(
            addr,
            "POST",
            &format!("{A}/f?blocking=true&result=true"),
            json!({})
        )
        .await
        .json(),
        json!({"k": "v", "p": null})
    );
    // One limit alone keeps the others; an annotation is merged by key.
    let r = call(
        addr,
        "PUT",
        &format!("{A}/f?overwrite=true"),
        json!({"limits": {"memory": 512}, "annotations": [{"key": "b", "value": 2}]}),
    )
    .await;
    let f = r.json();
    assert_eq!(
        f["limits"],
        json!({"timeout": 5000, "memory": 512, "logs": 10})
    );
    assert_eq!(
        f["annotations"],
        json!([{"key": "a", "value": 1}, {"key": "b", "value": 2}])
    );
    assert_eq!(f["exec"]["code"], json!(code));
    // A merged definition is still validated; the stored one is untouched by a refused update.
    let r = call(
        addr,
        "PUT",
        &format!("{A}/f?overwrite=true"),
        json!({"limits": {"timeout": 1}}),
    )
    .await;
    assert_eq!(r.status, 400);
    let f = call(addr, "GET", &format!("{A}/f"), json!(null))
        .await
        .json();
    assert_eq!(f["version"], json!("0.0.3"));
    assert_eq!(f["limits"]["timeout"], json!(5000));
    // Without overwrite an existing one is a conflict; a new one needs exec.
    assert_eq!(
        call(addr, "PUT", &format!("{A}/f"), json!({"parameters": []}))
            .await
            .status,
        409
    );
    let r = call(
        addr,
        "PUT",
        &format!("{A}/g?overwrite=true"),
        json!({"parameters": []}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("exec"));
    assert_eq!(
        call(addr, "GET", &format!("{A}/g"), json!(null))
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_shape_follows_openwhisk() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_instances_per_function = 1;
    let addr = serve(host_with(cfg, None).await).await;
    let code = "import time\ndef main(a):\n    if a.get('mark'):\n        open(a['mark'], 'w').close()\n    time.sleep(a.get('s', 0))\n    return {}\n";
    let r = call(
        addr,
        "PUT",
        &format!("{A}/s"),
        json!({"exec": {"kind": "python:3", "code": code}, "limits": {"timeout": 1000}}),
    )
    .await;
    assert_eq!(r.status, 200);
    let cold = call(addr, "POST", &format!("{A}/s?blocking=true"), json!({}))
        .await
        .json();
    assert!(cold["response"].get("statusCode").is_none(), "{cold}");
    assert_eq!(cold["response"]["success"], json!(true));
    assert_eq!(annotation(&cold, "startPath"), Some(&json!("cold")));
    assert!(
        annotation(&cold, "initTime")
            .and_then(Value::as_u64)
            .unwrap()
            >= 1
    );
    assert!(annotation(&cold, "initTime").unwrap().as_u64() <= cold["duration"].as_u64());
    assert!(annotation(&cold, "waitTime").is_some());
    assert!(annotation(&cold, "timeout").is_none());
    let hot = call(addr, "POST", &format!("{A}/s?blocking=true"), json!({}))
        .await
        .json();
    assert_eq!(annotation(&hot, "startPath"), Some(&json!("hot")));
    assert!(
        annotation(&hot, "initTime").is_none(),
        "a hot start has no initTime: {hot}"
    );
    assert_eq!(
        hot["end"].as_u64().unwrap() - hot["start"].as_u64().unwrap(),
        hot["duration"].as_u64().unwrap()
    );

    // One instance at a time: the second waits for the first, and that wait is its waitTime, not its duration.
    // Instances may run as another user (`nobody` when the tests run as root): a directory they can write.
    let marks = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(marks.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mark = marks.path().join("running");
    let m = mark.to_str().unwrap().to_string();
    let slow = tokio::spawn(async move {
        call(
            addr,
            "POST",
            &format!("{A}/s?blocking=true"),
            json!({"s": 0.6, "mark": m}),
        )
        .await
        .json()
    });
    // Queue the second once the first is running.
    let t0 = std::time::Instant::now();
    while !mark.exists() {
        if t0.elapsed() > std::time::Duration::from_secs(30) {
            panic!("the first activation does not start: {:?}", slow.await);
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let queued = call(addr, "POST", &format!("{A}/s?blocking=true"), json!({}))
        .await
        .json();
    let first = slow.await.unwrap();
    let wait = annotation(&queued, "waitTime")
        .and_then(Value::as_u64)
        .unwrap();
    // Relations between the two records, not absolute times (a loaded machine stretches every one of
    // them): the second arrived while the first ran, started once it ended, and its duration is its own run.
    let (q_start, q_end) = (queued["start"].as_u64().unwrap(), queued["end"].as_u64().unwrap());
    let first_end = first["end"].as_u64().unwrap();
    assert!(wait > 0 && q_start - wait < first_end, "queued while the first ran: waitTime {wait}: {first} {queued}");
    assert!(q_start >= first_end - 5, "started after the first ended: {first} {queued}");
    assert_eq!(queued["duration"].as_u64().unwrap(), q_end - q_start, "{queued}");

    // A run past its time limit: developer error with the timeout annotation.
    let r = call(
        addr,
        "POST",
        &format!("{A}/s?blocking=true"),
        json!({"s": 5}),
    )
    .await;
    assert_eq!(r.status, 502);
    let t = r.json();
    assert_eq!(t["response"]["status"], json!("action developer error"));
    assert_eq!(annotation(&t, "timeout"), Some(&json!(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_invoke_honours_the_timeout_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let host = host(dir.path()).await;
    let addr = serve(host.clone()).await;
    let code = "import os, time\ndef main(args):\n    while not os.path.exists(args['gate']):\n        time.sleep(0.005)\n    return {'done': True}\n";
    create_python(addr, "slow", code).await;
    // Waits 100 ms, then answers 202 with the id while the activation goes on.
    let r = call(addr, "POST", &format!("{A}/slow?blocking=true&timeout=100"), json!({"gate": gate})).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["activationId"].as_str().unwrap().to_string();
    assert_eq!(r.header("x-openwhisk-activation-id").as_deref(), Some(id.as_str()));
    assert_eq!(call(addr, "POST", &format!("{A}/slow?blocking=true&timeout=x"), json!({})).await.status, 400);
    std::fs::write(&gate, b"").unwrap();
    let t0 = std::time::Instant::now();
    loop {
        // A running activation has no record yet (404, as in OpenWhisk).
        if let Ok(a) = host.get_activation(&id).await {
            assert_eq!(a.response.result, json!({"done": true}));
            break;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(60), "never finished");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
