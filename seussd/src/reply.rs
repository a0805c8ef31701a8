//! Reading one protocol reply from an instance: the JSON line on fd 3 plus stdout/stderr up to the
//! end-of-activation markers, under a deadline, with bounded result and log sizes.

use crate::proc::{Line, Proc};
use crate::util::{now_ms, rfc3339_ms};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The ActionLoop end-of-activation marker.
pub const MARK: &[u8] = b"XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX";

/// Why no usable reply came.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyError {
    /// The deadline passed.
    TimedOut,
    /// The result line exceeded the size limit.
    TooLarge,
    /// The result line is not JSON.
    Malformed(String),
    /// The instance closed its result pipe (it exited or was killed).
    Exited,
}

#[derive(Debug)]
pub struct Reply {
    pub result: Result<Value, ReplyError>,
    /// `"<RFC 3339> stdout: text"` lines, in arrival order.
    pub logs: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct ReplyLimits {
    pub max_result: usize,
    pub max_logs: usize,
}

async fn drain(
    rx: &mut mpsc::Receiver<Line>,
    stream: &str,
    out: &mut Vec<(u64, String)>,
    budget: &AtomicUsize,
) {
    while let Some(line) = rx.recv().await {
        let text = match line {
            Line::Data(d) if d == MARK => return,
            Line::Data(d) => String::from_utf8_lossy(&d).into_owned(),
            Line::TooLong => "<line too long, dropped>".to_string(),
        };
        let t = now_ms();
        let entry = format!("{} {stream}: {text}", rfc3339_ms(t));
        let left = budget.load(Ordering::Relaxed);
        if entry.len() <= left {
            budget.store(left - entry.len(), Ordering::Relaxed);
            out.push((t, entry));
        } else {
            budget.store(0, Ordering::Relaxed);
        }
    }
}

/// Collects a reply; `first` is a result line already taken from the result channel.
pub async fn collect(
    p: &mut Proc,
    first: Option<Option<Line>>,
    deadline: Instant,
    lim: ReplyLimits,
) -> Reply {
    let Proc {
        result,
        stdout,
        stderr,
        ..
    } = p;
    let budget = AtomicUsize::new(lim.max_logs);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let res = async {
        let line = match first {
            Some(l) => l,
            None => result.recv().await,
        };
        match line {
            None => Err(ReplyError::Exited),
            Some(Line::TooLong) => Err(ReplyError::TooLarge),
            Some(Line::Data(d)) if d.len() > lim.max_result => Err(ReplyError::TooLarge),
            Some(Line::Data(d)) => {
                serde_json::from_slice(&d).map_err(|e| ReplyError::Malformed(e.to_string()))
            }
        }
    };
    let all = async {
        tokio::join!(
            res,
            drain(stdout, "stdout", &mut out, &budget),
            drain(stderr, "stderr", &mut err, &budget)
        )
        .0
    };
    let result = tokio::time::timeout_at(deadline, all)
        .await
        .unwrap_or(Err(ReplyError::TimedOut));
    let truncated = budget.load(Ordering::Relaxed) == 0;
    let mut logs: Vec<(u64, String)> = out.into_iter().chain(err).collect();
    logs.sort_by_key(|(t, _)| *t);
    let mut logs: Vec<String> = logs.into_iter().map(|(_, l)| l).collect();
    if truncated {
        logs.push(format!(
            "{} stderr: Logs were truncated because the total bytes size exceeds the limit of {} bytes.",
            rfc3339_ms(now_ms()),
            lim.max_logs
        ));
    }
    Reply { result, logs }
}

/// Sends one message line (a JSON object) and collects the reply.
pub async fn exchange(p: &mut Proc, msg: &Value, deadline: Instant, lim: ReplyLimits) -> Reply {
    let mut line = serde_json::to_vec(msg).expect("JSON values serialize");
    line.push(b'\n');
    send_line(p, &line, deadline, lim).await
}

/// Sends one message line (ending in a newline) and collects the reply.
pub async fn send_line(p: &mut Proc, line: &[u8], deadline: Instant, lim: ReplyLimits) -> Reply {
    match tokio::time::timeout_at(deadline, p.send_stdin(line)).await {
        Ok(Ok(())) => collect(p, None, deadline, lim).await,
        Ok(Err(_)) => Reply {
            result: Err(ReplyError::Exited),
            logs: vec![],
        },
        Err(_) => Reply {
            result: Err(ReplyError::TimedOut),
            logs: vec![],
        },
    }
}
