//! Sequences over real HTTP with real Python instances: each component runs as its own activation with
//! the previous result as input and its own bound parameters; the sequence's record lists the component
//! ids; a failing component ends the run; nesting works; bad definitions (missing, foreign, cyclic
//! components) are refused when stored; a component deleted later gives an error record.

mod common;

use common::*;
use serde_json::{json, Value};

const A: &str = "/api/v1/namespaces/_/actions";
const INC: &str = "def main(args):\n    return {'n': args.get('n', 0) + 1}\n";
const MUL: &str = "def main(args):\n    return {'n': args['n'] * args['mul']}\n";
const FAIL: &str = "def main(args):\n    return {'error': 'nope'}\n";

async fn put(addr: std::net::SocketAddr, name: &str, body: Value) -> Resp {
    call(addr, "PUT", &format!("{A}/{name}?overwrite=true"), body).await
}

async fn put_seq(addr: std::net::SocketAddr, name: &str, comps: &[&str]) -> Resp {
    put(addr, name, json!({"exec": {"kind": "sequence", "components": comps}})).await
}

async fn run(addr: std::net::SocketAddr, name: &str, args: Value) -> Value {
    let r = call(addr, "POST", &format!("{A}/{name}?blocking=true"), args).await;
    let v = r.json();
    assert!(v["activationId"].is_string(), "{v}");
    v
}

fn annotation<'a>(act: &'a Value, key: &str) -> Option<&'a Value> {
    act["annotations"].as_array()?.iter().find(|a| a["key"] == key).map(|a| &a["value"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_chain_results_and_the_record_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path()).await;
    let addr = serve(host.clone()).await;
    create_python(addr, "inc", INC).await;
    let r = put(addr, "mul", json!({"exec": {"kind": "python:3", "code": MUL}, "parameters": [{"key": "mul", "value": 10}]})).await;
    assert_eq!(r.status, 200);
    let r = put_seq(addr, "s", &["inc", "/_/mul", "/guest/inc"]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["exec"]["components"], json!(["/guest/inc", "/guest/mul", "/guest/inc"]));

    let act = run(addr, "s", json!({"n": 1})).await;
    assert_eq!(act["response"]["status"], "success", "{act}");
    assert_eq!(act["response"]["result"], json!({"n": 21}));
    assert_eq!(annotation(&act, "kind"), Some(&json!("sequence")));
    assert_eq!(annotation(&act, "topmost"), Some(&json!(true)));
    let ids: Vec<String> = act["logs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3);
    let mut sum = 0;
    for (id, (name, n)) in ids.iter().zip([("inc", 2), ("mul", 20), ("inc", 21)]) {
        let c = host.get_activation(id).await.unwrap();
        assert_eq!(c.name, name);
        assert_eq!(c.response.result, json!({"n": n}));
        sum += c.duration;
    }
    assert_eq!(act["duration"], json!(sum), "a sequence's duration is its components' sum");
    // The record is stored like any other.
    let again = host.get_activation(act["activationId"].as_str().unwrap()).await.unwrap();
    assert_eq!(again.logs, ids);

    // Nested: a sequence as a component.
    assert_eq!(put_seq(addr, "outer", &["s", "inc"]).await.status, 200);
    let act = run(addr, "outer", json!({"n": 0})).await;
    assert_eq!(act["response"]["result"], json!({"n": 12}), "{act}");
    let first = host.get_activation(act["logs"][0].as_str().unwrap()).await.unwrap();
    assert_eq!(first.name, "s");
    assert_eq!(first.logs.len(), 3);

    // A start path cannot be forced on a sequence; nor can it be prewarmed.
    let r = call(addr, "POST", &format!("{A}/s?blocking=true&seussPath=hot"), json!({})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_component_ends_the_sequence_with_its_response() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path()).await;
    let addr = serve(host.clone()).await;
    create_python(addr, "inc", INC).await;
    create_python(addr, "fail", FAIL).await;
    assert_eq!(put_seq(addr, "s", &["inc", "fail", "inc"]).await.status, 200);
    let act = run(addr, "s", json!({})).await;
    assert_eq!(act["response"]["status"], "application error", "{act}");
    assert_eq!(act["response"]["result"], json!({"error": "nope"}));
    assert_eq!(act["logs"].as_array().unwrap().len(), 2, "the third component did not run");

    // A component deleted after the sequence was stored: an error record, not a hang.
    assert_eq!(call(addr, "DELETE", &format!("{A}/fail"), json!(null)).await.status, 200);
    let act = run(addr, "s", json!({})).await;
    assert_eq!(act["response"]["status"], "action developer error", "{act}");
    assert!(act["response"]["result"]["error"].as_str().unwrap().contains("does not exist"), "{act}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sequences_are_refused_when_stored() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path()).await;
    let addr = serve(host.clone()).await;
    create_python(addr, "inc", INC).await;
    let refused = |r: Resp, what: &str| {
        assert_eq!(r.status, 400, "{what}: {}", String::from_utf8_lossy(&r.body));
        r.json()["error"].as_str().unwrap().to_string()
    };
    assert!(refused(put_seq(addr, "s", &["missing"]).await, "missing").contains("does not exist"));
    refused(put_seq(addr, "s", &[]).await, "empty");
    refused(put_seq(addr, "s", &["/other/inc"]).await, "another namespace");
    refused(put_seq(addr, "s", &["../inc"]).await, "bad name");
    refused(put_seq(addr, "s", &["inc"; 51]).await, "too many");
    refused(put(addr, "s", json!({"exec": {"kind": "sequence", "code": "x", "components": ["inc"]}})).await, "code");
    refused(put(addr, "s", json!({"exec": {"kind": "sequence"}})).await, "no components");
    refused(put(addr, "p", json!({"exec": {"kind": "python:3", "code": INC, "components": ["inc"]}})).await, "components on code");
    // Cycles, direct and through another sequence.
    assert_eq!(put_seq(addr, "x", &["inc"]).await.status, 200);
    assert!(refused(put_seq(addr, "x", &["x"]).await, "self").contains("itself"));
    assert_eq!(put_seq(addr, "y", &["inc", "x"]).await.status, 200);
    assert!(refused(put_seq(addr, "x", &["y"]).await, "cycle").contains("itself"));
    // Nothing refused was stored; x still runs as first defined.
    let act = run(addr, "x", json!({"n": 4})).await;
    assert_eq!(act["response"]["result"], json!({"n": 5}));
    assert_eq!(host.get_function("s").await.err().map(|e| matches!(e, seussd::error::HostError::NotFound(_))), Some(true));
}
