//! Translation between the Host API and the wire: host errors to typed D-Bus
//! errors, host records to the typed entries of `seuss-dbus-api`, JSON
//! strings to values.
//!
//! Host records are read through their serde form, so this layer depends on
//! field *names* of the OpenWhisk-shaped JSON, not on Rust field types.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use seuss_dbus_api::{Error, FunctionEntry, SnapshotEntry};
use zbus::zvariant::{OwnedValue, Value as ZValue};

use crate::error::HostError;
use crate::model::{InvokeOpts, StartPath};

/// The D-Bus error for a host error (same variant names).
pub fn host_error(e: HostError) -> Error {
    match e {
        HostError::NotFound(m) => Error::NotFound(m),
        HostError::InvalidArgs(m) => Error::InvalidArgs(m),
        HostError::Conflict(m) => Error::Conflict(m),
        HostError::Busy(m) | HostError::TooManyRequests(m) => Error::Busy(m),
        HostError::ModuleNotLoaded(m) => Error::ModuleNotLoaded(m),
        HostError::Internal(m) => Error::Internal(m),
    }
}

/// Parse `text` as JSON of type `T`; `what` names the argument in the error.
pub fn parse<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| Error::InvalidArgs(format!("{what}: {e}")))
}

/// Parse the invocation arguments: empty means `{}`, anything else must be a JSON object.
pub fn parse_args(text: &str) -> Result<Value, Error> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match parse::<Value>("arguments", text)? {
        v @ Value::Object(_) => Ok(v),
        other => Err(Error::InvalidArgs(format!(
            "arguments must be a JSON object, got {}",
            kind_of(&other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `v` as a JSON value (host types are plain serde structs; failure is a bug).
pub fn to_value<T: Serialize>(v: &T) -> Result<Value, Error> {
    serde_json::to_value(v).map_err(|e| Error::Internal(format!("serializing: {e}")))
}

/// `v` as a JSON string.
pub fn to_json<T: Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string(v).map_err(|e| Error::Internal(format!("serializing: {e}")))
}

/// The first value found at `path` (keys) in `v` or in any object nested in it.
fn find<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let direct = path.iter().try_fold(v, |cur, k| cur.get(k));
    if direct.is_some() {
        return direct;
    }
    match v {
        Value::Object(map) => map.values().find_map(|child| find(child, path)),
        _ => None,
    }
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    find(v, path).and_then(Value::as_u64).unwrap_or(0)
}

fn str_at(v: &Value, path: &[&str]) -> String {
    find(v, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A function record as a `ListFunctions` entry.
pub fn function_entry<T: Serialize>(info: &T) -> Result<FunctionEntry, Error> {
    let v = to_value(info)?;
    Ok(FunctionEntry {
        name: v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        kind: str_at(&v, &["exec", "kind"]),
        memory_mb: u64_at(&v, &["limits", "memory"]),
        timeout_ms: u64_at(&v, &["limits", "timeout"]),
        json: v.to_string(),
    })
}

/// A snapshot record as a `ListSnapshots` entry (`parent` 0 and `function`
/// `""` stand for none).
pub fn snapshot_entry<T: Serialize>(info: &T) -> Result<SnapshotEntry, Error> {
    let v = to_value(info)?;
    Ok(SnapshotEntry {
        id: u64_at(&v, &["id"]),
        parent: u64_at(&v, &["parent"]),
        private_pages: u64_at(&v, &["private_pages"]),
        function: str_at(&v, &["function"]),
        runtime: str_at(&v, &["runtime"]),
        created_ms: u64_at(&v, &["created_ms"]),
        // A record from before threads were captured had one.
        threads: v.get("threads").and_then(Value::as_u64).map_or(1, |t| t.try_into().unwrap_or(u32::MAX)),
    })
}

/// A flat JSON object as an `a{sv}` dictionary: booleans, unsigned and signed
/// integers, floats and strings keep their type; anything else is sent as
/// its JSON text.
pub fn dict<T: Serialize>(v: &T) -> Result<HashMap<String, OwnedValue>, Error> {
    let Value::Object(map) = to_value(v)? else {
        return Err(Error::Internal("stats are not a JSON object".into()));
    };
    map.into_iter()
        .map(|(k, v)| {
            let z = match &v {
                Value::Bool(b) => ZValue::from(*b),
                Value::Number(n) if n.is_u64() => ZValue::from(n.as_u64().unwrap_or(0)),
                Value::Number(n) if n.is_i64() => ZValue::from(n.as_i64().unwrap_or(0)),
                Value::Number(n) => ZValue::from(n.as_f64().unwrap_or(0.0)),
                Value::String(s) => ZValue::from(s.clone()),
                other => ZValue::from(other.to_string()),
            };
            let owned = z
                .try_to_owned()
                .map_err(|e| Error::Internal(format!("stats value {k}: {e}")))?;
            Ok((k, owned))
        })
        .collect()
}

/// The options of `InvokeWithOptions`: `blocking` (b, default true) and
/// `path` (s: cold, runtime, warm, hot). Unknown keys and wrong types are
/// `InvalidArgs`, so a typo cannot silently change what runs.
pub fn invoke_opts(options: &HashMap<String, OwnedValue>) -> Result<InvokeOpts, Error> {
    let mut opts = InvokeOpts {
        blocking: true,
        path: None,
    };
    for (key, value) in options {
        match (key.as_str(), &**value) {
            ("blocking", ZValue::Bool(b)) => opts.blocking = *b,
            ("path", ZValue::Str(p)) => {
                opts.path = Some(StartPath::parse(p.as_str()).ok_or_else(|| {
                    Error::InvalidArgs(format!("path `{p}`: expected cold, runtime, warm or hot"))
                })?)
            }
            ("blocking" | "path", other) => {
                return Err(Error::InvalidArgs(format!(
                    "option {key}: wrong type {}",
                    other.value_signature()
                )))
            }
            _ => {
                return Err(Error::InvalidArgs(format!(
                    "unknown option `{key}` (known: blocking, path)"
                )))
            }
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn function_fields_found_at_any_depth() {
        let flat = json!({"name":"hello","exec":{"kind":"python:3","code":"x"},"limits":{"timeout":60000,"memory":256}});
        let e = function_entry(&flat).unwrap();
        assert_eq!(
            (e.name.as_str(), e.kind.as_str(), e.memory_mb, e.timeout_ms),
            ("hello", "python:3", 256, 60000)
        );
        let nested = json!({"name":"n","version":"0.0.1","def":{"exec":{"kind":"python:3"},"limits":{"memory":128}}});
        let e = function_entry(&nested).unwrap();
        assert_eq!(
            (e.kind.as_str(), e.memory_mb, e.timeout_ms),
            ("python:3", 128, 0)
        );
        assert_eq!(serde_json::from_str::<Value>(&e.json).unwrap(), nested);
    }

    #[test]
    fn snapshot_none_is_zero_and_empty() {
        let s = json!({"id":7,"parent":null,"function":null,"runtime":"python:3","private_pages":12,"created_ms":5});
        let e = snapshot_entry(&s).unwrap();
        assert_eq!(
            e,
            SnapshotEntry {
                id: 7,
                parent: 0,
                private_pages: 12,
                function: String::new(),
                runtime: "python:3".into(),
                created_ms: 5,
                threads: 1
            }
        );
        let s = json!({"id":8,"parent":7,"function":"f","runtime":"python:3","private_pages":1,"created_ms":6,"threads":4});
        assert_eq!(snapshot_entry(&s).unwrap().parent, 7);
        assert_eq!(snapshot_entry(&s).unwrap().threads, 4);
    }

    #[test]
    fn args_must_be_an_object() {
        assert_eq!(parse_args("").unwrap(), json!({}));
        assert_eq!(parse_args(r#"{"a":1}"#).unwrap(), json!({"a":1}));
        assert!(matches!(parse_args("[1]"), Err(Error::InvalidArgs(m)) if m.contains("an array")));
        assert!(matches!(parse_args("{"), Err(Error::InvalidArgs(_))));
    }

    #[test]
    fn dict_keeps_types() {
        let d =
            dict(&json!({"version":"0.1.0","module_present":false,"used_bytes":42,"ratio":0.5}))
                .unwrap();
        assert_eq!(
            String::try_from(d["version"].try_clone().unwrap()).unwrap(),
            "0.1.0"
        );
        assert!(!bool::try_from(&d["module_present"]).unwrap());
        assert_eq!(u64::try_from(&d["used_bytes"]).unwrap(), 42);
        assert_eq!(f64::try_from(&d["ratio"]).unwrap(), 0.5);
        assert!(dict(&json!([1])).is_err());
    }

    #[test]
    fn invoke_options() {
        let o = |pairs: Vec<(&str, ZValue<'_>)>| -> HashMap<String, OwnedValue> {
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.try_to_owned().unwrap()))
                .collect()
        };
        let d = invoke_opts(&o(vec![])).unwrap();
        assert_eq!((d.blocking, d.path), (true, None));
        let d = invoke_opts(&o(vec![
            ("path", ZValue::from("warm")),
            ("blocking", ZValue::from(false)),
        ]))
        .unwrap();
        assert_eq!((d.blocking, d.path), (false, Some(StartPath::Warm)));
        assert!(
            matches!(invoke_opts(&o(vec![("path", ZValue::from("tepid"))])), Err(Error::InvalidArgs(m)) if m.contains("tepid"))
        );
        assert!(matches!(
            invoke_opts(&o(vec![("blocking", ZValue::from("yes"))])),
            Err(Error::InvalidArgs(_))
        ));
        assert!(
            matches!(invoke_opts(&o(vec![("pth", ZValue::from("warm"))])), Err(Error::InvalidArgs(m)) if m.contains("unknown option"))
        );
    }

    #[test]
    fn host_errors_keep_their_kind() {
        use zbus::DBusError;
        let e = host_error(HostError::ModuleNotLoaded("no /dev/seuss".into()));
        assert_eq!(e.name().as_str(), "org.seuss.Error.ModuleNotLoaded");
        assert_eq!(
            host_error(HostError::Busy("x".into())).name().as_str(),
            "org.seuss.Error.Busy"
        );
    }
}
