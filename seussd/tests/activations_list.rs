//! `GET /api/v1/namespaces/_/activations` over real HTTP: newest first, summaries or full records,
//! the name, skip, limit, since and upto filters, count, and a clear 400 for each malformed query value
//! (after which every record is still listed).

mod common;

use common::*;
use serde_json::{json, Value};

const A: &str = "/api/v1/namespaces/_/actions";
const L: &str = "/api/v1/namespaces/_/activations";

async fn list(addr: std::net::SocketAddr, q: &str) -> Value {
    let r = call(addr, "GET", &format!("{L}{q}"), json!(null)).await;
    assert_eq!(r.status, 200, "{q}: {}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a["activationId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_pages_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(host(dir.path()).await).await;
    let code = "def main(a):\n    return {'error': 'no'} if a.get('fail') else {'i': a.get('i')}\n";
    for f in ["f", "g"] {
        create_python(addr, f, code).await;
    }
    assert_eq!(list(addr, "").await, json!([]));
    // Six activations, each started after the one before (a record's start has ms resolution).
    let mut recs = Vec::new();
    for i in 0..6 {
        let f = if i % 2 == 0 { "f" } else { "g" };
        let args = if i == 5 {
            json!({"fail": true})
        } else {
            json!({"i": i})
        };
        let r = call(addr, "POST", &format!("{A}/{f}?blocking=true"), args).await;
        let rec = r.json();
        recs.push(rec.clone());
        let start = rec["start"].as_u64().unwrap();
        while util_now() <= start {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    let newest_first: Vec<String> = recs
        .iter()
        .rev()
        .map(|r| r["activationId"].as_str().unwrap().to_string())
        .collect();

    // Default: summaries, newest first, all of them (some may still be in the writer's queue).
    let all = list(addr, "").await;
    assert_eq!(ids(&all), newest_first);
    let s = &all[0];
    assert!(
        s.get("response").is_none() && s.get("logs").is_none(),
        "{s}"
    );
    assert_eq!(
        s["statusCode"],
        json!(1),
        "the failed one is an application error: {s}"
    );
    assert_eq!(all[1]["statusCode"], json!(0));
    assert_eq!(s["name"], json!("g"));
    assert!(s["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["key"] == "startPath"));
    assert_eq!(s["duration"], recs[5]["duration"]);

    // Full records with docs.
    let docs = list(addr, "?docs=true").await;
    assert_eq!(ids(&docs), newest_first);
    assert_eq!(docs[0]["response"]["result"], json!({"error": "no"}));
    assert_eq!(docs[5]["response"]["result"], json!({"i": 0}));

    // Name, skip and limit; limit=0 is the largest page.
    let f = list(addr, "?name=f").await;
    assert_eq!(
        ids(&f),
        vec![
            newest_first[1].clone(),
            newest_first[3].clone(),
            newest_first[5].clone()
        ]
    );
    assert_eq!(
        ids(&list(addr, "?skip=1&limit=2").await),
        newest_first[1..3].to_vec()
    );
    assert_eq!(ids(&list(addr, "?limit=0").await), newest_first);
    assert_eq!(ids(&list(addr, "?limit=200").await), newest_first);
    assert_eq!(list(addr, "?skip=100").await, json!([]));
    assert_eq!(list(addr, "?name=nobody").await, json!([]));

    // since/upto are inclusive bounds on start.
    let start = |i: usize| recs[i]["start"].as_u64().unwrap();
    let q = format!("?since={}&upto={}", start(1), start(3));
    assert_eq!(ids(&list(addr, &q).await), newest_first[2..5].to_vec());
    let q = format!("?since={}&name=g", start(2));
    assert_eq!(
        ids(&list(addr, &q).await),
        vec![newest_first[0].clone(), newest_first[2].clone()]
    );

    // count, after skip as OpenWhisk counts.
    assert_eq!(list(addr, "?count=true").await, json!({"activations": 6}));
    assert_eq!(
        list(addr, "?count=1&docs=false").await,
        json!({"activations": 6})
    );
    assert_eq!(
        list(addr, "?count=true&name=g&skip=1").await,
        json!({"activations": 2})
    );
    assert_eq!(
        list(addr, "?count=true&skip=10").await,
        json!({"activations": 0})
    );

    // Hostile values: a clear 400 each.
    for q in [
        "?limit=201",
        "?limit=-1",
        "?limit=abc",
        "?limit=99999999999999999999999",
        "?skip=-1",
        "?skip=1.5",
        "?since=yesterday",
        "?upto=-5",
        "?docs=maybe",
        "?count=2",
        "?count=true&docs=true",
        "?name=..%2F..%2Fetc",
        "?name=a%20b",
    ] {
        let r = call(addr, "GET", &format!("{L}{q}"), json!(null)).await;
        assert_eq!(r.status, 400, "{q}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["code"], json!(400), "{q}");
        assert!(!r.json()["error"].as_str().unwrap().is_empty(), "{q}");
    }
    // Nothing was lost; another namespace is not ours; no credentials, no list.
    assert_eq!(ids(&list(addr, "").await), newest_first);
    assert_eq!(
        call(
            addr,
            "GET",
            "/api/v1/namespaces/other/activations",
            json!(null)
        )
        .await
        .status,
        403
    );
    assert_eq!(request(addr, "GET", L, None, b"").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_listed_survive_a_restart_and_the_default_page_is_30() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = host(dir.path()).await;
        h.put_function("f", def("def main(a):\n    return {}\n"), false)
            .await
            .unwrap();
        for _ in 0..32 {
            let o = seussd::host::InvokeOpts {
                blocking: true,
                ..Default::default()
            };
            h.invoke("f", json!({}), o).await.unwrap();
        }
        // The shutdown waits for the writer: then every record is on disk.
        h.shutdown().await;
    }
    let addr = serve(host(dir.path()).await).await;
    assert_eq!(list(addr, "").await.as_array().unwrap().len(), 30);
    assert_eq!(list(addr, "?count=true").await, json!({"activations": 32}));
    let all = list(addr, "?limit=0").await;
    let starts: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["start"].as_u64().unwrap())
        .collect();
    assert_eq!(starts.len(), 32);
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );
}

fn util_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
