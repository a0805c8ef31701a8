//! The data types of the Host API: function definitions, activation records (OpenWhisk's shapes), snapshot
//! and statistics views, invocation options and events. All are plain serde data.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `{"key": ..., "value": ...}` pair, as OpenWhisk uses for parameters and annotations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: Value,
}

impl KeyValue {
    pub fn new(key: &str, value: impl Into<Value>) -> Self {
        Self {
            key: key.to_string(),
            value: value.into(),
        }
    }
}

/// `exec` of an action: the runtime kind and the code.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Exec {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    #[serde(default)]
    pub binary: bool,
    /// A sequence's actions (`exec.kind = "sequence"`), fully qualified (`/namespace/name`) once stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
}

/// The `exec.kind` of a sequence.
pub const SEQUENCE_KIND: &str = "sequence";

impl Exec {
    pub fn is_sequence(&self) -> bool {
        self.kind == SEQUENCE_KIND
    }
}

/// Per-function limits: `timeout` in ms, `memory` in MB, `logs` in MB (accepted, logs are capped by config).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Limits {
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    #[serde(default = "default_memory")]
    pub memory: u64,
    #[serde(default = "default_logs")]
    pub logs: u64,
}

fn default_timeout() -> u64 {
    60_000
}
fn default_memory() -> u64 {
    256
}
fn default_logs() -> u64 {
    10
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            memory: default_memory(),
            logs: default_logs(),
        }
    }
}

/// The body of an action create/update (OpenWhisk's `WhiskActionPut`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FunctionDef {
    pub exec: Exec,
    #[serde(default)]
    pub parameters: Vec<KeyValue>,
    #[serde(default)]
    pub annotations: Vec<KeyValue>,
    #[serde(default)]
    pub limits: Limits,
}

/// The body of an update (`PUT ...?overwrite=true`), every field optional as in OpenWhisk: what is given
/// replaces the stored value (each limit on its own, annotations key by key), the rest is kept.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct FunctionPatch {
    #[serde(default)]
    pub exec: Option<Exec>,
    #[serde(default)]
    pub parameters: Option<Vec<KeyValue>>,
    #[serde(default)]
    pub annotations: Option<Vec<KeyValue>>,
    #[serde(default)]
    pub limits: Option<LimitsPatch>,
}

/// The limits of a [`FunctionPatch`]; each absent one keeps its stored (or default) value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct LimitsPatch {
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub memory: Option<u64>,
    #[serde(default)]
    pub logs: Option<u64>,
}

impl FunctionPatch {
    /// The definition this patch makes of `old` (a create when `None`, which needs `exec`).
    pub fn apply(self, old: Option<&FunctionInfo>) -> Result<FunctionDef, String> {
        let base = old.map(|f| FunctionDef {
            exec: f.exec.clone(),
            parameters: f.parameters.clone(),
            annotations: f.annotations.clone(),
            limits: f.limits.clone(),
        });
        let exec = match (self.exec, &base) {
            (Some(e), _) => e,
            (None, Some(b)) => b.exec.clone(),
            (None, None) => return Err("exec undefined".into()),
        };
        let old_limits = base.as_ref().map(|b| b.limits.clone()).unwrap_or_default();
        let limits = match self.limits {
            None => old_limits,
            Some(l) => Limits {
                timeout: l.timeout.unwrap_or(old_limits.timeout),
                memory: l.memory.unwrap_or(old_limits.memory),
                logs: l.logs.unwrap_or(old_limits.logs),
            },
        };
        let parameters = self
            .parameters
            .or_else(|| base.as_ref().map(|b| b.parameters.clone()))
            .unwrap_or_default();
        let mut annotations = base.map(|b| b.annotations).unwrap_or_default();
        for a in self.annotations.unwrap_or_default() {
            match annotations.iter_mut().find(|o| o.key == a.key) {
                Some(o) => o.value = a.value,
                None => annotations.push(a),
            }
        }
        Ok(FunctionDef {
            exec,
            parameters,
            annotations,
            limits,
        })
    }
}

/// A stored function (OpenWhisk's action record).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FunctionInfo {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub publish: bool,
    pub exec: Exec,
    pub parameters: Vec<KeyValue>,
    pub annotations: Vec<KeyValue>,
    pub limits: Limits,
    /// Last create/update, ms since the epoch.
    pub updated: u64,
}

impl FunctionInfo {
    /// The patch number of `version` ("0.0.N"), bumped on every update.
    pub fn revision(&self) -> u64 {
        self.version
            .rsplit('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// `response` of an activation, as OpenWhisk's API shows it: the status as text (the numeric code is only in
/// list summaries, see [`ActivationResponse::status_code`]). Records written before carry a `statusCode`
/// field here too; it is ignored when they are read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActivationResponse {
    /// `success | application error | action developer error | whisk internal error`.
    pub status: String,
    pub success: bool,
    pub result: Value,
}

impl ActivationResponse {
    /// OpenWhisk's numeric code of `status`: 0 success, 1 application error, 2 developer error, 3 internal
    /// error; `None` for a record still running.
    pub fn status_code(&self) -> Option<u32> {
        match self.status.as_str() {
            status::SUCCESS => Some(0),
            status::APPLICATION_ERROR => Some(1),
            status::DEVELOPER_ERROR => Some(2),
            status::INTERNAL_ERROR => Some(3),
            _ => None,
        }
    }
}

/// OpenWhisk activation statuses.
pub mod status {
    pub const SUCCESS: &str = "success";
    pub const APPLICATION_ERROR: &str = "application error";
    pub const DEVELOPER_ERROR: &str = "action developer error";
    pub const INTERNAL_ERROR: &str = "whisk internal error";
    /// Not an OpenWhisk status: the record of a non-blocking invoke that has not finished yet.
    pub const PENDING: &str = "pending";
}

/// An activation record. `end == 0` marks a record of an activation still running (non-blocking invoke).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub subject: String,
    pub activation_id: String,
    /// When the activation began getting its instance (ms since the epoch); the time queued before it is
    /// the `waitTime` annotation. A pending record carries the time of the request.
    pub start: u64,
    pub end: u64,
    pub duration: u64,
    pub response: ActivationResponse,
    pub logs: Vec<String>,
    /// OpenWhisk's `path`, `kind`, `limits`, `waitTime` (ms from the request to `start`), `initTime` (ms
    /// spent importing the function's code in a new instance: cold and runtime starts only, which OpenWhisk
    /// tools count as cold starts) and `timeout: true` when a time limit ended it; seuss's own `startPath`
    /// (`cold|runtime|warm|hot`).
    pub annotations: Vec<KeyValue>,
    pub publish: bool,
}

impl Activation {
    /// The value of annotation `key`, if present.
    pub fn annotation(&self, key: &str) -> Option<&Value> {
        self.annotations
            .iter()
            .find(|a| a.key == key)
            .map(|a| &a.value)
    }

    /// A finished, successful record with id `id` and result `{"i": id}`, for unit tests.
    #[cfg(test)]
    pub(crate) fn sample(id: &str) -> Activation {
        Activation {
            namespace: "guest".into(),
            name: "f".into(),
            version: "0.0.1".into(),
            subject: "guest".into(),
            activation_id: id.into(),
            start: 1,
            end: 2,
            duration: 1,
            response: ActivationResponse {
                status: "success".into(),
                success: true,
                result: serde_json::json!({ "i": id }),
            },
            logs: vec![],
            annotations: vec![],
            publish: false,
        }
    }
}

/// Which finished activation records a list returns (OpenWhisk's `GET .../activations` query).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ActivationQuery {
    /// Only records of this function.
    pub name: Option<String>,
    /// Records skipped, newest first.
    pub skip: usize,
    /// Records returned at most.
    pub limit: usize,
    /// Only records with `start >= since` (ms since the epoch).
    pub since: Option<u64>,
    /// Only records with `start <= upto` (ms since the epoch).
    pub upto: Option<u64>,
}

impl Default for ActivationQuery {
    fn default() -> Self {
        Self {
            name: None,
            skip: 0,
            limit: Self::DEFAULT_LIMIT,
            since: None,
            upto: None,
        }
    }
}

impl ActivationQuery {
    /// OpenWhisk's default page size.
    pub const DEFAULT_LIMIT: usize = 30;
    /// OpenWhisk's largest page size.
    pub const MAX_LIMIT: usize = 200;

    /// True if `a` passes the filters (not skip and limit).
    pub fn matches(&self, a: &Activation) -> bool {
        !matches!(&self.name, Some(n) if n != &a.name)
            && !matches!(self.since, Some(s) if a.start < s)
            && !matches!(self.upto, Some(u) if a.start > u)
    }
}

/// The list form of an activation record without `docs` (OpenWhisk's summary view: no response, logs or
/// subject; the numeric status code instead).
pub fn activation_summary(a: &Activation) -> Value {
    let mut v = serde_json::json!({
        "namespace": a.namespace,
        "name": a.name,
        "version": a.version,
        "publish": a.publish,
        "annotations": a.annotations,
        "activationId": a.activation_id,
        "start": a.start,
    });
    if a.end != 0 {
        v["end"] = a.end.into();
        v["duration"] = a.duration.into();
    }
    if let Some(c) = a.response.status_code() {
        v["statusCode"] = c.into();
    }
    v
}

/// How an activation's instance was obtained.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum StartPath {
    /// Fresh interpreter + launcher + function import.
    Cold,
    /// Deploy of the runtime snapshot, then import of the function.
    Runtime,
    /// Deploy of the function's snapshot.
    Warm,
    /// An idle instance of the function.
    Hot,
}

impl StartPath {
    pub fn as_str(self) -> &'static str {
        match self {
            StartPath::Cold => "cold",
            StartPath::Runtime => "runtime",
            StartPath::Warm => "warm",
            StartPath::Hot => "hot",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cold" => StartPath::Cold,
            "runtime" => StartPath::Runtime,
            "warm" => StartPath::Warm,
            "hot" => StartPath::Hot,
            _ => return None,
        })
    }
}

/// Options of one invocation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct InvokeOpts {
    /// Wait for the result (up to the function's timeout plus a margin); otherwise return at once.
    pub blocking: bool,
    /// Force a start path (tests, benchmarks); the invocation fails with `Conflict` if it is unavailable.
    #[serde(default)]
    pub path: Option<StartPath>,
}

/// A snapshot seussd holds in the kernel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SnapshotInfo {
    pub id: u64,
    pub parent: Option<u64>,
    /// `None` for the runtime snapshot.
    pub function: Option<String>,
    /// The runtime key: interpreter identity, kernel release, launcher hash.
    pub runtime: String,
    pub private_pages: u64,
    pub created_ms: u64,
    /// Threads of the snapshot's process (1 in records written before threads were captured).
    #[serde(default = "one_thread")]
    pub threads: u32,
}

fn one_thread() -> u32 {
    1
}

/// Daemon-wide counters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Stats {
    pub version: String,
    pub module_present: bool,
    pub budget_bytes: u64,
    pub used_bytes: u64,
    pub snapshots: u64,
    pub instances: u64,
    pub activations: u64,
}

/// Events broadcast by the host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "event")]
pub enum HostEvent {
    SnapshotCaptured {
        id: u64,
        function: Option<String>,
    },
    SnapshotEvicted {
        id: u64,
    },
    /// `change` is `created`, `updated` or `deleted`.
    FunctionChanged {
        name: String,
        change: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored() -> FunctionInfo {
        FunctionInfo {
            namespace: "guest".into(),
            name: "f".into(),
            version: "0.0.3".into(),
            publish: false,
            exec: Exec {
                kind: "python:3".into(),
                code: Some("def main(a): return a".into()),
                main: None,
                binary: false,
                components: None,
            },
            parameters: vec![KeyValue::new("p", 1)],
            annotations: vec![KeyValue::new("a", 1), KeyValue::new("b", 2)],
            limits: Limits {
                timeout: 5000,
                memory: 512,
                logs: 5,
            },
            updated: 1,
        }
    }

    fn patch(v: serde_json::Value) -> FunctionPatch {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_update_without_exec_keeps_the_code_and_replaces_what_is_given() {
        let old = stored();
        let d = patch(json!({"parameters": [{"key": "k", "value": "v"}]}))
            .apply(Some(&old))
            .unwrap();
        assert_eq!(d.exec, old.exec);
        assert_eq!(d.parameters, vec![KeyValue::new("k", "v")]);
        assert_eq!(d.annotations, old.annotations);
        assert_eq!(d.limits, old.limits);
        // Each limit on its own; annotations by key (a given one replaces, a new one is added).
        let d = patch(json!({"limits": {"memory": 256}, "annotations": [{"key": "b", "value": 9}, {"key": "c", "value": 3}]}))
            .apply(Some(&old))
            .unwrap();
        assert_eq!(
            d.limits,
            Limits {
                timeout: 5000,
                memory: 256,
                logs: 5
            }
        );
        assert_eq!(d.parameters, old.parameters);
        assert_eq!(
            d.annotations,
            vec![
                KeyValue::new("a", 1),
                KeyValue::new("b", 9),
                KeyValue::new("c", 3)
            ]
        );
        // An empty list clears the parameters.
        let d = patch(json!({"parameters": []})).apply(Some(&old)).unwrap();
        assert!(d.parameters.is_empty());
    }

    #[test]
    fn a_create_needs_exec_and_takes_defaults() {
        assert!(patch(json!({"parameters": []})).apply(None).is_err());
        let d =
            patch(json!({"exec": {"kind": "python:3", "code": "x"}, "limits": {"timeout": 1000}}))
                .apply(None)
                .unwrap();
        assert_eq!(
            d.limits,
            Limits {
                timeout: 1000,
                ..Limits::default()
            }
        );
        assert!(d.parameters.is_empty() && d.annotations.is_empty());
    }

    #[test]
    fn status_codes_follow_openwhisk() {
        let mut r = ActivationResponse {
            status: status::APPLICATION_ERROR.into(),
            success: false,
            result: json!({}),
        };
        assert_eq!(r.status_code(), Some(1));
        r.status = status::PENDING.into();
        assert_eq!(r.status_code(), None);
        // Records written with the old `statusCode` field still read.
        let old: ActivationResponse = serde_json::from_value(
            json!({"status": "success", "statusCode": 0, "success": true, "result": {}}),
        )
        .unwrap();
        assert_eq!(old.status_code(), Some(0));
    }
}
