//! Turning command-line input into JSON: `key=value` pairs, argument
//! objects, and function definitions in OpenWhisk's action shape.

use std::io::Read as _;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::cli::FunctionSpec;

/// Parse `KEY=VALUE`; VALUE is taken as JSON when it parses (`n=3`, `b=true`,
/// `o={"x":1}`), otherwise as a string (`name=world`), like `wsk -p`.
pub fn parse_param(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))?;
    if k.is_empty() {
        return Err(format!("empty key in `{s}`"));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

/// Parse a JSON object (the `--json ARGS` of invoke).
pub fn parse_args_object(s: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("ARGS must be a JSON object, e.g. '{\"name\":\"world\"}'".into()),
        Err(e) => Err(format!("ARGS is not valid JSON: {e}")),
    }
}

/// The invocation arguments: `base` (or `{}`) with `params` set over it.
pub fn invocation_args(base: Option<Value>, params: &[(String, Value)]) -> Value {
    let mut obj = match base {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (k, v) in params {
        obj.insert(k.clone(), v.clone());
    }
    Value::Object(obj)
}

/// Read a file, or stdin for `-`.
pub fn read_input(path: &Path) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path)
    }
}

/// The OpenWhisk action body for `spec`, whose source text is `code`
/// (ignored when `definition` is given: then `definition` is the body).
pub fn action_body(spec: &FunctionSpec, code: &str) -> Value {
    let mut limits = Map::new();
    if let Some(t) = spec.timeout {
        limits.insert("timeout".into(), t.into());
    }
    if let Some(m) = spec.memory {
        limits.insert("memory".into(), m.into());
    }
    let parameters: Vec<Value> = spec
        .params
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let mut body = json!({
        "exec": {"kind": spec.kind, "code": code, "main": spec.main, "binary": false},
        "parameters": parameters,
    });
    if !limits.is_empty() {
        body["limits"] = Value::Object(limits);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Output;

    #[test]
    fn params_are_json_or_strings() {
        assert_eq!(parse_param("n=3").unwrap(), ("n".into(), json!(3)));
        assert_eq!(
            parse_param("s=world").unwrap(),
            ("s".into(), json!("world"))
        );
        assert_eq!(
            parse_param("o={\"x\":1}").unwrap(),
            ("o".into(), json!({"x":1}))
        );
        assert_eq!(parse_param("e=").unwrap(), ("e".into(), json!("")));
        assert_eq!(parse_param("eq=a=b").unwrap(), ("eq".into(), json!("a=b")));
        assert!(parse_param("=1").is_err());
        assert!(parse_param("x").is_err());
    }

    #[test]
    fn params_override_json_args() {
        let v = invocation_args(Some(json!({"a":1,"b":2})), &[("b".into(), json!(3))]);
        assert_eq!(v, json!({"a":1,"b":3}));
        assert_eq!(invocation_args(None, &[]), json!({}));
    }

    #[test]
    fn action_body_has_openwhisk_shape() {
        let spec = FunctionSpec {
            name: "f".into(),
            code: None,
            definition: None,
            kind: "python:3".into(),
            main: "handler".into(),
            params: vec![("greeting".into(), json!("hi"))],
            memory: Some(128),
            timeout: None,
            out: Output { json: false },
        };
        let b = action_body(&spec, "def handler(a): return a");
        assert_eq!(
            b,
            json!({"exec":{"kind":"python:3","code":"def handler(a): return a","main":"handler","binary":false},
                   "parameters":[{"key":"greeting","value":"hi"}],"limits":{"memory":128}})
        );
    }
}
