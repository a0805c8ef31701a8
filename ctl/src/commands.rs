//! Running a parsed command against seussd through the shared proxy.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::ExitCode;

use serde_json::Value;
use seuss_dbus_api::{Manager1Proxy, BUS_NAME};
use zbus::zvariant::Value as ZValue;
use zbus::CacheProperties;

use crate::cli::{Cli, Command, FunctionCmd, FunctionSpec, InvokeArgs};
use crate::exit::{classify, classify_bus, code, Failure};
use crate::params::{action_body, invocation_args, read_input};
use crate::render;

type Res = Result<ExitCode, Failure>;

/// Connect to the system bus (or `DBUS_SYSTEM_BUS_ADDRESS`) and run `cli`.
pub async fn run(cli: Cli) -> Res {
    let conn = zbus::Connection::system().await.map_err(classify_bus)?;
    let proxy = Manager1Proxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(classify_bus)?;
    let json = cli.json;
    match cli.command {
        Command::Function(f) => function(&proxy, f, json).await,
        Command::Invoke(a) => invoke(&proxy, a, json).await,
        Command::Activation { id, out } => {
            let reply = proxy.get_activation(&id).await.map_err(classify)?;
            show_activation(&parse_reply("the activation", &reply)?, json || out.json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Snapshots { tree, out } => snapshots(&proxy, tree, json || out.json).await,
        Command::Stats { out } => stats(&proxy, json || out.json).await,
        Command::Status { out } => status(&proxy, json || out.json).await,
        Command::Prewarm { name, out } => {
            let id = proxy.prewarm(&name).await.map_err(classify)?;
            if json || out.json {
                print_json(&serde_json::json!({ "function": name, "snapshot": id }));
            } else {
                println!("function {name}: snapshot #{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Drop { snapshot } => {
            proxy.drop_snapshot(snapshot).await.map_err(classify)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { .. } | Command::Man => unreachable!("handled without a bus in main"),
    }
}

fn print_json(v: &Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) is not an error worth a message.
    let _ = writeln!(out, "{v}");
}

fn print_pretty(v: &Value) {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn parse_reply(what: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| {
        Failure::new(
            code::SOFTWARE,
            format!("seussd returned invalid JSON for {what}: {e}"),
        )
    })
}

async fn function(proxy: &Manager1Proxy<'_>, cmd: FunctionCmd, json: bool) -> Res {
    match cmd {
        FunctionCmd::Create(spec) => put(proxy, spec, false, json).await,
        FunctionCmd::Update(spec) => put(proxy, spec, true, json).await,
        FunctionCmd::Delete { name } => {
            proxy.delete_function(&name).await.map_err(classify)?;
            Ok(ExitCode::SUCCESS)
        }
        FunctionCmd::List { out } => {
            let fns = proxy.list_functions().await.map_err(classify)?;
            if json || out.json {
                let records: Vec<Value> = fns
                    .iter()
                    .map(|f| parse_reply("a function", &f.json))
                    .collect::<Result<_, _>>()?;
                print_json(&Value::Array(records));
            } else {
                print!("{}", render::function_table(&fns));
            }
            Ok(ExitCode::SUCCESS)
        }
        FunctionCmd::Get { name, out } => {
            let record = parse_reply(
                "a function",
                &proxy.get_function(&name).await.map_err(classify)?,
            )?;
            if json || out.json {
                print_json(&record);
            } else {
                print_pretty(&record);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn put(proxy: &Manager1Proxy<'_>, spec: FunctionSpec, overwrite: bool, json: bool) -> Res {
    let read = |p: &std::path::Path| {
        read_input(p)
            .map_err(|e| Failure::new(code::NOINPUT, format!("cannot read {}: {e}", p.display())))
    };
    let body = match (&spec.definition, &spec.code) {
        (Some(def), _) => {
            let text = read(def)?;
            serde_json::from_str::<Value>(&text).map_err(|e| {
                Failure::new(code::DATAERR, format!("{} is not JSON: {e}", def.display()))
            })?
        }
        (None, Some(code_path)) => action_body(&spec, &read(code_path)?),
        (None, None) => {
            return Err(Failure::new(
                code::USAGE,
                "give a source file or --definition",
            ))
        }
    };
    let body = body.to_string();
    let reply = if overwrite {
        proxy.update_function(&spec.name, &body).await
    } else {
        proxy.create_function(&spec.name, &body).await
    }
    .map_err(classify)?;
    if json || spec.out.json {
        print_json(&parse_reply("a function", &reply)?);
    } else {
        println!(
            "function {}: {}",
            spec.name,
            if overwrite { "updated" } else { "created" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn invoke(proxy: &Manager1Proxy<'_>, a: InvokeArgs, json: bool) -> Res {
    let args = invocation_args(a.args, &a.params).to_string();
    let reply = if a.path.is_none() && !a.no_wait {
        proxy.invoke(&a.name, &args).await
    } else {
        let mut options = HashMap::new();
        if let Some(p) = &a.path {
            options.insert("path", ZValue::from(p.as_str()));
        }
        if a.no_wait {
            options.insert("blocking", ZValue::from(false));
        }
        proxy.invoke_with_options(&a.name, &args, options).await
    }
    .map_err(classify)?;
    let activation = parse_reply("the activation", &reply)?;
    if a.no_wait {
        let id = activation
            .get("activationId")
            .map(render::cell)
            .unwrap_or_default();
        if json {
            print_json(&serde_json::json!({ "activationId": id }));
        } else {
            println!("{id}");
            eprintln!("started; the result: seussctl activation {id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let success = show_activation(&activation, json);
    Ok(if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(code::FUNCTION_FAILED)
    })
}

/// Print an activation record: as JSON, or its result on stdout and a
/// summary line on stderr. Returns whether the function succeeded.
fn show_activation(activation: &Value, json: bool) -> bool {
    let response = activation.get("response");
    let success = response
        .and_then(|r| r.get("success"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if json {
        print_json(activation);
    } else {
        let result = response
            .and_then(|r| r.get("result"))
            .cloned()
            .unwrap_or(Value::Null);
        print_pretty(&result);
        let status = response
            .and_then(|r| r.get("status"))
            .and_then(Value::as_str)
            .unwrap_or(if success { "success" } else { "failed" });
        eprintln!(
            "activation {}: {status}, start path {}, {} ms",
            activation
                .get("activationId")
                .map(render::cell)
                .unwrap_or_default(),
            render::start_path(activation).unwrap_or("?"),
            activation
                .get("duration")
                .map(render::cell)
                .unwrap_or_else(|| "?".into()),
        );
    }
    success
}

async fn snapshots(proxy: &Manager1Proxy<'_>, tree: bool, json: bool) -> Res {
    let snaps = proxy.list_snapshots().await.map_err(classify)?;
    if json {
        print_json(&Value::Array(
            snaps.iter().map(render::snapshot_json).collect(),
        ));
    } else if tree {
        print!("{}", render::snapshot_tree(&snaps));
    } else {
        print!("{}", render::snapshot_table(&snaps));
    }
    Ok(ExitCode::SUCCESS)
}

async fn stats(proxy: &Manager1Proxy<'_>, json: bool) -> Res {
    let d = render::dict_json(&proxy.get_stats().await.map_err(classify)?);
    if json {
        print_json(&d);
    } else {
        let rows: Vec<Vec<String>> = d
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let shown = match (k.ends_with("_bytes"), v.as_u64()) {
                    (true, Some(n)) => render::bytes(n),
                    _ => render::cell(v),
                };
                vec![k.clone(), shown]
            })
            .collect();
        print!("{}", render::table(&["STAT", "VALUE"], &rows));
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(proxy: &Manager1Proxy<'_>, json: bool) -> Res {
    let p = |e: zbus::Error| classify_bus(e);
    let version = proxy.version().await.map_err(p)?;
    let module = proxy.module_present().await.map_err(p)?;
    let budget = proxy.memory_budget().await.map_err(p)?;
    let used = proxy.memory_used().await.map_err(p)?;
    let snapshots = proxy.snapshot_count().await.map_err(p)?;
    let instances = proxy.instance_count().await.map_err(p)?;
    if json {
        print_json(&serde_json::json!({
            "running": true, "bus_name": BUS_NAME, "version": version, "module_present": module,
            "memory_budget": budget, "memory_used": used, "snapshots": snapshots, "instances": instances,
        }));
    } else {
        println!("seussd:        running ({BUS_NAME}), version {version}");
        println!(
            "kernel module: {}",
            if module {
                "loaded (/dev/seuss)"
            } else {
                "not loaded: modprobe seuss, then systemctl restart seussd"
            }
        );
        println!(
            "memory:        {} used of {}",
            render::bytes(used),
            render::bytes(budget)
        );
        println!("snapshots:     {snapshots}");
        println!("instances:     {instances}");
    }
    Ok(ExitCode::SUCCESS)
}
