//! Running one activation: queueing on the function's concurrency limit, getting an instance, the run
//! message, judging the reply (OpenWhisk statuses and error texts), parking or retiring the instance, and
//! storing the record.

use crate::host::Inner;
use crate::model::*;
use crate::reply::ReplyError;
use crate::util::now_ms;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

impl Inner {
    pub(crate) fn pending(&self, f: &FunctionInfo, id: &str, start: u64) -> Activation {
        Activation {
            namespace: f.namespace.clone(),
            name: f.name.clone(),
            version: f.version.clone(),
            subject: f.namespace.clone(),
            activation_id: id.to_string(),
            start,
            end: 0,
            duration: 0,
            response: ActivationResponse {
                status: status::PENDING.into(),
                success: false,
                result: json!({}),
            },
            logs: vec![],
            annotations: vec![],
            publish: false,
        }
    }

    /// Runs one activation (requested at `received`, ms since the epoch) to its record. The finished record
    /// goes to `done` as soon as the used instance is back in the idle pool; the store gets it from the saver's thread (see `saver.rs`), so the
    /// caller's answer does not wait for the disk.
    pub(crate) async fn run_activation(
        self: Arc<Self>,
        f: FunctionInfo,
        sem: Arc<Semaphore>,
        args: Value,
        id: String,
        received: u64,
        forced: Option<StartPath>,
        done: tokio::sync::oneshot::Sender<Activation>,
    ) {
        let mut permit = None;
        let mut start = received;
        let mut act = self.pending(&f, &id, received);
        // The used instance goes back to the pool (or is stopped) while the record is stored.
        let mut after = None;
        let msg = json!({
            "value": args,
            "namespace": f.namespace,
            "action_name": format!("/{}/{}", f.namespace, f.name),
            "action_version": f.version,
            "activation_id": id,
            "transaction_id": id,
            "deadline": (now_ms() + f.limits.timeout).to_string(),
        });
        let mut line = serde_json::to_vec(&msg).expect("JSON values serialize");
        line.push(b'\n');
        let mut timed_out = false;
        let mut abort = self.abort.subscribe();
        let run = async {
            permit = Some(sem.acquire_owned().await);
            start = now_ms();
            match self.start_instance(&f, forced, Some(&line)).await {
            Err(crate::starts::StartError::Init {
                path,
                logs,
                error,
                timed_out: t,
            }) => {
                timed_out = t;
                (
                    status::DEVELOPER_ERROR,
                    json!({ "error": error }),
                    logs,
                    Some(path),
                    0,
                )
            }
            Err(crate::starts::StartError::Internal(e))
            | Err(crate::starts::StartError::Deploy(e)) => {
                tracing::error!("activation {id} of {}: {e}", f.name);
                (
                    status::INTERNAL_ERROR,
                    json!({ "error": format!("Failed to start an instance: {e}") }),
                    vec![],
                    None,
                    0,
                )
            }
            Err(crate::starts::StartError::Unavailable(e)) => (
                status::INTERNAL_ERROR,
                json!({ "error": e }),
                vec![],
                None,
                0,
            ),
            Ok(started) => {
                // The instance began this activation when its start did (after any wait for a deploy slot).
                start = now_ms().saturating_sub(started.init_ms).max(start);
                let mut inst = started.inst;
                let deadline = started.run_deadline.unwrap_or_else(|| {
                    tokio::time::Instant::now() + Duration::from_millis(f.limits.timeout)
                });
                let t_run = std::time::Instant::now();
                let reply = if started.run_sent {
                    crate::reply::collect(
                        &mut inst.proc,
                        started.first_result,
                        deadline,
                        self.reply_limits(),
                    )
                    .await
                } else {
                    crate::reply::send_line(&mut inst.proc, &line, deadline, self.reply_limits())
                        .await
                };
                tracing::debug!(target: "seussd::timing", "run exchange {:?}", t_run.elapsed());
                let mut logs = started.logs;
                logs.extend(reply.logs);
                timed_out = matches!(reply.result, Err(ReplyError::TimedOut));
                let (status, result, healthy) = self.judge(&f, reply.result);
                after = Some((inst, healthy));
                // initTime only where the function's code was initialised in a new instance (OpenWhisk's
                // cold start); a warm deploy resumes an instance that already did it.
                let init_ms = match started.path {
                    StartPath::Cold | StartPath::Runtime => started.init_ms.max(1),
                    StartPath::Warm | StartPath::Hot => 0,
                };
                (status, result, logs, Some(started.path), init_ms)
            }
            }
        };
        // A shutdown past its grace period stops the activation where it is (queued, starting or running:
        // dropping `run` kills the instance) and records it.
        let (status, result, logs, path, init_ms) = tokio::select! {
            biased;
            r = run => r,
            _ = abort.wait_for(|a| *a) => (
                status::INTERNAL_ERROR,
                json!({ "error": "The activation was stopped: seussd shut down before it finished." }),
                vec![],
                None,
                0,
            ),
        };
        drop(permit);
        let end = now_ms();
        act.start = start;
        act.end = end.max(start + 1);
        act.duration = act.end - start;
        act.logs = logs;
        act.response = ActivationResponse {
            status: status.to_string(),
            success: status == status::SUCCESS,
            result,
        };
        act.annotations = vec![
            KeyValue::new("path", format!("{}/{}", f.namespace, f.name)),
            KeyValue::new("kind", f.exec.kind.clone()),
            KeyValue::new(
                "limits",
                serde_json::to_value(&f.limits).unwrap_or_default(),
            ),
            KeyValue::new("waitTime", start.saturating_sub(received)),
        ];
        if let Some(p) = path {
            act.annotations.push(KeyValue::new("startPath", p.as_str()));
        }
        if init_ms > 0 {
            act.annotations.push(KeyValue::new("initTime", init_ms));
        }
        if timed_out {
            act.annotations.push(KeyValue::new("timeout", true));
        }
        self.activations.fetch_add(1, Ordering::Relaxed);
        let t_park = std::time::Instant::now();
        // A healthy instance is parked before the answer, so the caller's next invocation can find it idle.
        let (retire, measure) = match after {
            Some((inst, true)) => (None, self.park(inst).await),
            Some((inst, false)) => (Some(inst), None),
            None => (None, None),
        };
        // The caller may have given up (a blocking invoke past its wait): the record is stored anyway.
        self.saver.save(act.clone());
        let counted = (act.response.status.clone(), act.duration, start.saturating_sub(received));
        let _ = done.send(act);
        tracing::debug!(target: "seussd::timing", "park {:?}", t_park.elapsed());
        // Let the caller's task (woken by `done`) answer before the bookkeeping below: on one worker
        // thread it would otherwise wait for the stub refill and the instance's measurement (an A/B in
        // the VM: 4-7 ms on a warm start).
        tokio::task::yield_now().await;
        self.metrics
            .activation(&f.namespace, &f.name, path, &counted.0, counted.1, counted.2);
        self.clone().refill_stubs();
        if let Some(inst) = retire {
            self.retire(inst).await;
        }
        if let Some(id) = measure {
            self.measure_idle(id).await;
        }
    }

    /// Maps an instance's reply to (status, result, instance still usable).
    pub(crate) fn judge(
        &self,
        f: &FunctionInfo,
        r: Result<Value, ReplyError>,
    ) -> (&'static str, Value, bool) {
        match r {
            // OpenWhisk keeps only the error of an application error.
            Ok(Value::Object(mut m)) if m.contains_key("error") => {
                let error = m.remove("error").unwrap_or_default();
                (status::APPLICATION_ERROR, json!({ "error": error }), true)
            }
            Ok(Value::Object(m)) => (status::SUCCESS, Value::Object(m), true),
            Ok(_) => (
                status::DEVELOPER_ERROR,
                json!({"error": "The action did not return a dictionary."}),
                true,
            ),
            Err(ReplyError::TimedOut) => (
                status::DEVELOPER_ERROR,
                json!({"error": format!("The action timed out: it exceeded its time limit of {} milliseconds.", f.limits.timeout)}),
                false,
            ),
            Err(ReplyError::TooLarge) => (
                status::DEVELOPER_ERROR,
                json!({"error": format!("The action produced a response that exceeded the allowed length of {} bytes.", self.cfg.max_result_bytes)}),
                false,
            ),
            Err(ReplyError::Malformed(e)) => (
                status::DEVELOPER_ERROR,
                json!({"error": format!("The action did not produce a valid JSON response: {e}")}),
                false,
            ),
            Err(ReplyError::Exited) => (
                status::DEVELOPER_ERROR,
                json!({"error": "The action did not produce a valid response and exited unexpectedly."}),
                false,
            ),
        }
    }
}
