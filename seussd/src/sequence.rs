//! Sequences (`exec.kind = "sequence"`, `exec.components`): each component runs as an activation of its
//! own, on whatever start path suits it, with the previous component's result as its input (its bound
//! parameters merged under it); the first component gets the sequence's arguments. The sequence's record
//! lists the components' activation ids in `logs`, takes the last component's response (or that of the
//! first that did not succeed, which ends the run) and the sum of their durations, as OpenWhisk does.
//!
//! Components are checked when the sequence is stored: at most [`MAX_COMPONENTS`], each an existing
//! function of this namespace (`pkg/action` of a package or binding resolved as `packages.rs` does, with
//! the package's parameters under the component's), and no sequence may reach itself through its
//! components. A component
//! deleted or changed into a sequence later is caught when the sequence runs (an error record; nesting
//! deeper than [`MAX_DEPTH`] is refused).

use crate::error::HostError;
use crate::host::{Inner, State};
use crate::model::{status, Activation, ActivationResponse, Exec, FunctionInfo, KeyValue};
use crate::packages::{merge, resolve, to_map, Packages};
use crate::util::{activation_id, now_ms};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Components of one sequence (OpenWhisk's default `actionSequenceLimit`).
pub const MAX_COMPONENTS: usize = 50;
/// Sequences nested in sequences, counting the outermost.
pub const MAX_DEPTH: u32 = 8;

/// The action a component names: `name`, `/_/name` or `/NS/name` with `NS` this namespace (`name` may
/// be `pkg/action`).
fn component_name<'a>(namespace: &str, c: &'a str) -> Result<&'a str, String> {
    let name = match c.strip_prefix('/') {
        None => c,
        Some(q) => match q.split_once('/') {
            Some((ns, name)) if ns == "_" || ns == namespace => name,
            Some((ns, _)) => return Err(format!("component '{c}' is in namespace '{ns}', not this one")),
            None => return Err(format!("component '{c}' is not /namespace/name")),
        },
    };
    if crate::store::valid_action_name(name) {
        Ok(name)
    } else {
        Err(format!("component '{c}' is not a valid action name"))
    }
}

/// Checks the components of sequence `name` against the functions in `st` and the `packages`; returns
/// them fully qualified.
pub(crate) fn check_components(
    st: &State,
    packages: &Packages,
    namespace: &str,
    name: &str,
    exec: &Exec,
) -> Result<Vec<String>, HostError> {
    let bad = |m: String| HostError::InvalidArgs(m);
    let comps = exec
        .components
        .as_deref()
        .ok_or_else(|| bad("a sequence needs exec.components".into()))?;
    if comps.is_empty() || comps.len() > MAX_COMPONENTS {
        return Err(bad(format!(
            "a sequence has 1 to {MAX_COMPONENTS} components, not {}",
            comps.len()
        )));
    }
    let names: Vec<&str> = comps
        .iter()
        .map(|c| component_name(namespace, c))
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    // Every sequence reachable from the components, once each: none may be `name` itself.
    let mut todo: Vec<&str> = names.clone();
    let mut seen = BTreeSet::new();
    while let Some(n) = todo.pop() {
        let missing = || bad(format!("Sequence component does not exist: '{n}'."));
        let f = resolve(packages, n).map_err(|_| missing())?.function;
        if f == name {
            return Err(bad("Sequence may not refer to itself.".into()));
        }
        if !seen.insert(f.clone()) {
            continue;
        }
        let e = st.functions.get(&f).ok_or_else(missing)?;
        if let Some(inner) = e.info.exec.components.as_deref().filter(|_| e.info.exec.is_sequence()) {
            todo.extend(inner.iter().filter_map(|c| component_name(namespace, c).ok()));
        }
    }
    Ok(names.iter().map(|n| format!("/{namespace}/{n}")).collect())
}

type Boxed<'a> = Pin<Box<dyn Future<Output = Activation> + Send + 'a>>;

impl Inner {
    /// Runs sequence `f` with `args` (its own parameters already merged) to its record, which is stored
    /// and sent to `done`.
    pub(crate) async fn run_sequence(
        self: Arc<Self>,
        f: FunctionInfo,
        args: Value,
        id: String,
        received: u64,
        done: tokio::sync::oneshot::Sender<Activation>,
    ) {
        let act = self.sequence_record(&f, args, id, received, 0).await;
        let _ = done.send(act);
    }

    fn sequence_record<'a>(
        self: &'a Arc<Self>,
        f: &'a FunctionInfo,
        args: Value,
        id: String,
        received: u64,
        depth: u32,
    ) -> Boxed<'a> {
        Box::pin(async move {
            let mut act = self.pending(f, &id, received);
            let mut input = args;
            let mut duration = 0;
            let mut response = None;
            for c in f.exec.components.as_deref().unwrap_or_default() {
                let r = match self.run_component(c, input.clone(), depth).await {
                    Ok(r) => r,
                    Err(error) => {
                        response = Some(ActivationResponse {
                            status: status::DEVELOPER_ERROR.into(),
                            success: false,
                            result: json!({ "error": error }),
                        });
                        break;
                    }
                };
                act.logs.push(r.activation_id.clone());
                duration += r.duration;
                let ok = r.response.success;
                input = r.response.result.clone();
                response = Some(r.response);
                if !ok {
                    break;
                }
            }
            let end = now_ms();
            act.end = end.max(received + 1);
            act.duration = duration;
            act.response = response.unwrap_or_else(|| ActivationResponse {
                status: status::SUCCESS.into(),
                success: true,
                result: input,
            });
            act.annotations = vec![
                KeyValue::new("path", format!("{}/{}", f.namespace, f.name)),
                KeyValue::new("kind", crate::model::SEQUENCE_KIND),
                KeyValue::new("limits", serde_json::to_value(&f.limits).unwrap_or_default()),
            ];
            if depth == 0 {
                act.annotations.push(KeyValue::new("topmost", true));
            }
            self.activations.fetch_add(1, Ordering::Relaxed);
            self.saver.save(act.clone());
            self.metrics
                .activation(&f.namespace, &f.name, None, &act.response.status, act.duration, 0);
            act
        })
    }

    /// Runs component `c` (a qualified name) on `input`: its record, or why it could not run.
    async fn run_component(self: &Arc<Self>, c: &str, input: Value, depth: u32) -> Result<Activation, String> {
        let name = component_name(&self.cfg.namespace, c)?;
        let missing = || format!("Sequence component does not exist: '{c}'.");
        let r = resolve(&self.packages.lock(), name).map_err(|_| missing())?;
        let (info, sem) = {
            let st = self.lock();
            let e = st.functions.get(&r.function).ok_or_else(missing)?;
            (e.info.clone(), e.sem.clone())
        };
        let Value::Object(input) = input else {
            return Err(format!("the input of component '{c}' is not a JSON object"));
        };
        let mut merged: Map<String, Value> = to_map(&merge(&r.package_parameters, &info.parameters));
        merged.extend(input);
        let id = activation_id();
        if info.exec.is_sequence() {
            if depth + 1 >= MAX_DEPTH {
                return Err(format!("Sequences are nested deeper than {MAX_DEPTH}."));
            }
            return Ok(self.sequence_record(&info, Value::Object(merged), id, now_ms(), depth + 1).await);
        }
        let (done, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(self.clone().run_activation(info, sem, Value::Object(merged), id, now_ms(), None, done));
        rx.await.map_err(|_| format!("component '{c}' ended without a record"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_names_are_this_namespaces_actions() {
        assert_eq!(component_name("guest", "f"), Ok("f"));
        assert_eq!(component_name("guest", "/_/f"), Ok("f"));
        assert_eq!(component_name("guest", "/guest/f"), Ok("f"));
        assert!(component_name("guest", "/other/f").is_err());
        assert!(component_name("guest", "/guest").is_err());
        assert_eq!(component_name("guest", "/guest/pkg/f"), Ok("pkg/f"));
        assert_eq!(component_name("guest", "/_/pkg/f"), Ok("pkg/f"));
        assert!(component_name("guest", "/guest/pkg/f/g").is_err());
        assert!(component_name("guest", "../f").is_err());
    }
}
