//! Persistence across restarts: functions and activation records survive a new host on the same state
//! directory; a torn temporary file left by a crash is ignored.

mod common;

use common::*;
use serde_json::json;
use seussd::host::InvokeOpts;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_and_activations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let h = host(dir.path()).await;
        h.put_function(
            "keep",
            def("def main(a):\n    return {'n': a['n'] * 2}\n"),
            false,
        )
        .await
        .unwrap();
        h.put_function(
            "keep",
            def("def main(a):\n    return {'n': a['n'] * 3}\n"),
            true,
        )
        .await
        .unwrap();
        h.put_function("gone", def("def main(a): return a"), false)
            .await
            .unwrap();
        h.delete_function("gone").await.unwrap();
        let a = h
            .invoke(
                "keep",
                json!({"n": 2}),
                InvokeOpts {
                    blocking: true,
                    path: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(a.response.result, json!({"n": 6}));
        h.shutdown().await;
        a.activation_id
    };
    // A crash mid-write leaves a temporary file behind.
    std::fs::write(dir.path().join("functions/.keep.json.1.2.tmp"), b"{\"torn").unwrap();
    let h = host(dir.path()).await;
    let names: Vec<String> = h
        .list_functions()
        .await
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, vec!["keep"]);
    let f = h.get_function("keep").await.unwrap();
    assert_eq!(f.version, "0.0.2");
    let old = h.get_activation(&id).await.unwrap();
    assert_eq!(old.response.result, json!({"n": 6}));
    let a = h
        .invoke(
            "keep",
            json!({"n": 5}),
            InvokeOpts {
                blocking: true,
                path: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(a.response.result, json!({"n": 15}));
    assert_eq!(a.annotation("startPath"), Some(&json!("cold")));
}
