//! The launcher's ActionLoop protocol against a real `python3` on the cold path: OpenWhisk's runtime
//! conformance cases (echo, unicode, raising, non-dict, entry point, second init, no code, `__OW_*`
//! variables, env at init, large input), plus timeouts, crashes, size limits and log cutting.

mod common;

use common::*;
use serde_json::{json, Value};
use seussd::host::{status, FunctionDef, HostError, InvokeOpts, StartPath};
use seussd::proc::{Proc, SpawnSpec};
use seussd::reply::{self, ReplyLimits};
use std::time::Duration;

fn blocking() -> InvokeOpts {
    InvokeOpts {
        blocking: true,
        path: None,
    }
}

async fn run(
    host: &seussd::host::Host,
    name: &str,
    code: &str,
    args: Value,
) -> seussd::host::Activation {
    host.put_function(name, def(code), true).await.unwrap();
    host.invoke(name, args, blocking()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_cold_then_hot() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path()).await;
    let args = json!({"a": 1, "b": [true, null, "x"], "c": {"d": 2.5}});
    let a = run(
        &h,
        "echo",
        "def main(args):\n    return args\n",
        args.clone(),
    )
    .await;
    assert_eq!(a.response.status, status::SUCCESS, "{a:?}");
    assert!(a.response.success);
    assert_eq!(a.response.result, args);
    assert_eq!(a.annotation("startPath"), Some(&json!("cold")));
    assert!(a.annotation("initTime").is_some());
    let b = h
        .invoke("echo", json!({"again": 1}), blocking())
        .await
        .unwrap();
    assert_eq!(b.response.result, json!({"again": 1}));
    assert_eq!(b.annotation("startPath"), Some(&json!("hot")));
    assert_ne!(a.activation_id, b.activation_id);
    let stored = h.get_activation(&b.activation_id).await.unwrap();
    assert_eq!(stored, b);
    assert_eq!(h.stats().activations, 2);
    assert!(!h.stats().module_present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_in_and_out_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path()).await;
    let code = "def main(args):\n    s = args['delimiter'] + ' ☃ ' + args['delimiter']\n    print(s)\n    return {'winter': s}\n";
    let a = run(&h, "uni", code, json!({"delimiter": "❄"})).await;
    assert_eq!(a.response.result, json!({"winter": "❄ ☃ ❄"}));
    assert!(
        a.logs.iter().any(|l| l.ends_with("stdout: ❄ ☃ ❄")),
        "{:?}",
        a.logs
    );
    assert!(a.logs.iter().all(|l| !l.contains("XXX_THE_END")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_function_is_an_application_error_and_instance_survives() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path()).await;
    let code = "def main(args):\n    if args.get('fail'):\n        raise ValueError('boom')\n    return {'ok': 1}\n";
    let a = run(&h, "raise", code, json!({"fail": true})).await;
    assert_eq!(a.response.status, status::APPLICATION_ERROR);
    assert!(!a.response.success);
    assert!(a.response.result["error"]
        .as_str()
        .unwrap()
        .contains("boom"));
    assert!(
        a.logs.iter().any(|l| l.contains("stderr: Traceback")),
        "{:?}",
        a.logs
    );
    let b = h.invoke("raise", json!({}), blocking()).await.unwrap();
    assert_eq!(b.response.result, json!({"ok": 1}));
    assert_eq!(b.annotation("startPath"), Some(&json!("hot")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_dict_result_is_a_developer_error() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path()).await;
    for (name, ret) in [("list", "[1, 2]"), ("str", "'hello'"), ("none", "None")] {
        let a = run(
            &h,
            name,
            &format!("def main(args):\n    return {ret}\n"),
            json!({}),
        )
        .await;
        assert_eq!(a.response.status, status::DEVELOPER_ERROR, "{name}");
        assert_eq!(
            a.response.result,
            json!({"error": "The action did not return a dictionary."})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_main_entry_point_and_missing_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path()).await;
    let mut d = def("def niam(args):\n    return {'greeting': 'hello ' + args['name']}\n");
    d.exec.main = Some("niam".into());
    h.put_function("niam", d.clone(), false).await.unwrap();
    let a = h
        .invoke("niam", json!({"name": "seuss"}), blocking())
        .await
        .unwrap();
    assert_eq!(a.response.result, json!({"greeting": "hello seuss"}));
    d.exec.main = Some("main".into());
    h.put_function("niam", d, true).await.unwrap();
    let b = h
        .invoke("niam", json!({"name": "x"}), blocking())
        .await
        .unwrap();
    assert_eq!(b.response.status, status::DEVELOPER_ERROR);
    assert!(
        b.response.result["error"]
            .as_str()
            .unwrap()
            .contains("'main'"),
        "{:?}",
        b.response.result
    );
    assert_eq!(b.annotation("startPath"), Some(&json!("cold")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_error_fails_the_init() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path()).await;
    let a = run(&h, "syntax", "def main(args:\n    return {}\n", json!({})).await;
    assert_eq!(a.response.status, status::DEVELOPER_ERROR);
    assert!(a.response.result["error"]
        .as_str()
        .unwrap()
        .starts_with("Initialization has failed"));
    assert!(
        a.logs.iter().any(|l| l.contains("SyntaxError")),
        "{:?}",
        a.logs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ow_variables_env_at_init_and_bound_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path()).await;
    let code = "import os\nAT_INIT = os.environ.get('__OW_ACTION_NAME')\n\
                def main(args):\n    env = {k: v for k, v in os.environ.items() if k.startswith('__OW_')}\n    \
                return {'env': env, 'at_init': AT_INIT, 'args': args, 'uid': os.getuid()}\n";
    let mut d = def(code);
    d.parameters = vec![
        seussd::host::KeyValue::new("bound", "b"),
        seussd::host::KeyValue::new("over", "param"),
    ];
    h.put_function("env", d, false).await.unwrap();
    let a = h
        .invoke("env", json!({"over": "arg"}), blocking())
        .await
        .unwrap();
    let r = &a.response.result;
    assert_eq!(r["args"], json!({"bound": "b", "over": "arg"}));
    assert_eq!(r["at_init"], json!("/guest/env"));
    let env = &r["env"];
    assert_eq!(env["__OW_ACTIVATION_ID"], json!(a.activation_id));
    assert_eq!(env["__OW_ACTION_NAME"], json!("/guest/env"));
    assert_eq!(env["__OW_NAMESPACE"], json!("guest"));
    assert_eq!(env["__OW_ACTION_VERSION"], json!("0.0.1"));
    let deadline: u64 = env["__OW_DEADLINE"].as_str().unwrap().parse().unwrap();
    assert!(
        deadline > a.start && deadline <= a.start + 61_000,
        "deadline {deadline} start {}",
        a.start
    );
    assert!(env.get("__OW_API_HOST").is_some());
    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .unwrap()
            .uid
            .as_raw();
        assert_eq!(r["uid"], json!(nobody), "instances run unprivileged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_over_one_megabyte() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path()).await;
    let big = "é".repeat(700_000); // 1.4 MB of UTF-8
    let a = run(
        &h,
        "big",
        "def main(args):\n    return {'len': len(args['big']), 'tail': args['big'][-3:]}\n",
        json!({"big": big}),
    )
    .await;
    assert_eq!(a.response.result, json!({"len": 700_000, "tail": "ééé"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_instance_and_next_call_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path()).await;
    let mut d = def("import time\ndef main(args):\n    time.sleep(args.get('s', 0))\n    return {'slept': args.get('s', 0)}\n");
    d.limits.timeout = 700;
    h.put_function("sleepy", d, false).await.unwrap();
    let t0 = std::time::Instant::now();
    let a = h
        .invoke("sleepy", json!({"s": 30}), blocking())
        .await
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(a.response.status, status::DEVELOPER_ERROR);
    assert!(
        a.response.result["error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{:?}",
        a.response.result
    );
    let b = h
        .invoke("sleepy", json!({"s": 0}), blocking())
        .await
        .unwrap();
    assert_eq!(b.response.result, json!({"slept": 0}));
    assert_eq!(
        b.annotation("startPath"),
        Some(&json!("cold")),
        "the timed-out instance is not reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_result_limit_and_log_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_result_bytes = 100_000;
    cfg.max_log_bytes = 2_000;
    let h = host_with(cfg, None).await;
    let a = run(
        &h,
        "crash",
        "import os\ndef main(args):\n    os._exit(3)\n",
        json!({}),
    )
    .await;
    assert_eq!(a.response.status, status::DEVELOPER_ERROR);
    assert!(a.response.result["error"]
        .as_str()
        .unwrap()
        .contains("exited unexpectedly"));
    let b = run(
        &h,
        "huge",
        "def main(args):\n    return {'x': 'y' * 200000}\n",
        json!({}),
    )
    .await;
    assert_eq!(b.response.status, status::DEVELOPER_ERROR);
    assert!(b.response.result["error"]
        .as_str()
        .unwrap()
        .contains("exceeded the allowed length"));
    let c = run(&h, "chatty", "def main(args):\n    for i in range(1000):\n        print('line', i)\n    return {'done': True}\n", json!({})).await;
    assert_eq!(c.response.result, json!({"done": true}));
    let total: usize = c.logs.iter().map(String::len).sum();
    assert!(total < 2_000 + 200, "logs are bounded: {total}");
    assert!(c.logs.last().unwrap().contains("Logs were truncated"));
    // The chatty instance drained its output and stays usable.
    let d = h.invoke("chatty", json!({}), blocking()).await.unwrap();
    assert_eq!(d.annotation("startPath"), Some(&json!("hot")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_code_and_bad_definitions_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path()).await;
    let no_code: FunctionDef =
        serde_json::from_value(json!({"exec": {"kind": "python:3"}})).unwrap();
    assert!(matches!(
        h.put_function("x", no_code, false).await,
        Err(HostError::InvalidArgs(_))
    ));
    let node: FunctionDef =
        serde_json::from_value(json!({"exec": {"kind": "nodejs:20", "code": "x"}})).unwrap();
    assert!(matches!(
        h.put_function("x", node, false).await,
        Err(HostError::InvalidArgs(_))
    ));
    let mut d = def("def main(a): return a");
    d.limits.memory = 1;
    assert!(matches!(
        h.put_function("x", d, false).await,
        Err(HostError::InvalidArgs(_))
    ));
    assert!(matches!(
        h.put_function("../x", def("x"), false).await,
        Err(HostError::InvalidArgs(_))
    ));
    assert!(matches!(
        h.invoke("x", json!({}), blocking()).await,
        Err(HostError::NotFound(_))
    ));
    h.put_function("x", def("def main(a): return a"), false)
        .await
        .unwrap();
    assert!(matches!(
        h.invoke("x", json!([1]), blocking()).await,
        Err(HostError::InvalidArgs(_))
    ));
    assert!(matches!(
        h.invoke(
            "x",
            json!({}),
            InvokeOpts {
                blocking: true,
                path: Some(StartPath::Warm)
            }
        )
        .await,
        Err(HostError::ModuleNotLoaded(_))
    ));
    assert!(matches!(
        h.invoke(
            "x",
            json!({}),
            InvokeOpts {
                blocking: true,
                path: Some(StartPath::Hot)
            }
        )
        .await,
        Err(HostError::Conflict(_))
    ));
    assert!(matches!(
        h.prewarm("x").await,
        Err(HostError::ModuleNotLoaded(_))
    ));
}

/// Talks to the launcher directly: a second init fails, an init without code fails, runs work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protocol_second_init_and_no_code() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = seussd::launcher::install(dir.path()).unwrap();
    let spec = SpawnSpec {
        program: "/usr/bin/python3".into(),
        args: vec!["-I".into(), launcher.display().to_string()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cred: None,
        cgroup_procs: None,
        max_line: 1 << 20,
    };
    let lim = ReplyLimits {
        max_result: 1 << 20,
        max_logs: 1 << 16,
    };
    let deadline = || tokio::time::Instant::now() + Duration::from_secs(20);
    let mut p = Proc::spawn(&spec).unwrap();
    let ready = p
        .recv_ctl(Duration::from_secs(20))
        .await
        .expect("ready line");
    let ready: Value = serde_json::from_slice(&ready).unwrap();
    assert_eq!(ready["ready"], json!(p.pid));
    assert_eq!(ready["cookie"], json!(0));

    let r = reply::exchange(&mut p, &json!({"init": {"main": "main"}}), deadline(), lim).await;
    assert_eq!(
        r.result.unwrap(),
        json!({"error": "Missing main/no code to execute."})
    );
    let r = reply::exchange(&mut p, &json!({"value": {}}), deadline(), lim).await;
    assert!(r.result.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("not been initialized"));

    let init = json!({"init": {"code": "print('importing')\ndef main(a):\n    return {'n': a['n'] + 1}\n", "main": "main"}});
    let r = reply::exchange(&mut p, &init, deadline(), lim).await;
    assert_eq!(r.result.unwrap(), json!({"ok": true}));
    assert!(r.logs.iter().any(|l| l.ends_with("stdout: importing")));
    let r = reply::exchange(&mut p, &init, deadline(), lim).await;
    assert_eq!(
        r.result.unwrap(),
        json!({"error": "Cannot initialize the action more than once."})
    );
    for n in 0..3 {
        let r = reply::exchange(
            &mut p,
            &json!({"value": {"n": n}, "activation_id": "x"}),
            deadline(),
            lim,
        )
        .await;
        assert_eq!(r.result.unwrap(), json!({"n": n + 1}));
    }
    let r = reply::exchange(&mut p, &json!([1]), deadline(), lim).await;
    assert!(r.result.unwrap()["error"]
        .as_str()
        .unwrap()
        .starts_with("Malformed message"));
    p.kill().await;
    assert_eq!(
        p.result.recv().await,
        None,
        "the result pipe closes when the instance dies"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_zip_action_with_helper_module() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path()).await;
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import base64, io, zipfile, sys\nb = io.BytesIO()\nz = zipfile.ZipFile(b, 'w')\n\
             z.writestr('__main__.py', 'import helper\\ndef main(a):\\n    return {\"v\": helper.twice(a[\"n\"])}\\n')\n\
             z.writestr('helper.py', 'def twice(n):\\n    return 2 * n\\n')\nz.close()\n\
             sys.stdout.write(base64.b64encode(b.getvalue()).decode())",
        )
        .output()
        .unwrap();
    let code = String::from_utf8(out.stdout).unwrap();
    let d: FunctionDef =
        serde_json::from_value(json!({"exec": {"kind": "python:3", "code": code, "binary": true}}))
            .unwrap();
    h.put_function("zipped", d, false).await.unwrap();
    let a = h
        .invoke("zipped", json!({"n": 4}), blocking())
        .await
        .unwrap();
    assert_eq!(a.response.result, json!({"v": 8}), "{a:?}");
    let bad: FunctionDef = serde_json::from_value(
        json!({"exec": {"kind": "python:3", "code": "not base64!", "binary": true}}),
    )
    .unwrap();
    assert!(matches!(
        h.put_function("badzip", bad, false).await,
        Err(HostError::InvalidArgs(_))
    ));
}
