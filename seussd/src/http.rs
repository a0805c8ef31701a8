//! The OpenWhisk REST API subset over HTTP/1.1 (axum): actions create/update/get/delete/list, invoke
//! (blocking, `result=true`, non-blocking), activations get/result/logs. Basic auth on every route, compared
//! in constant time; JSON errors `{"error": ..., "code": <status>}`; bodies over `max_body_bytes` get 413.
//! A thin adapter: every route is one call of [`Host`].
//!
//! Extensions: `?seussPath=cold|runtime|warm|hot` on invoke forces a start path (409 if unavailable);
//! `GET /api/v1/seuss/stats` and `GET /api/v1/seuss/snapshots` show [`Host::stats`] and the snapshots.

use crate::host::{Host, HostError};
use crate::model::{status, Activation, FunctionDef, InvokeOpts, StartPath};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

type Q = Query<HashMap<String, String>>;

/// A JSON error response.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error": self.1, "code": self.0.as_u16()})),
        )
            .into_response()
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        let code = match &e {
            HostError::NotFound(_) => StatusCode::NOT_FOUND,
            HostError::InvalidArgs(_) => StatusCode::BAD_REQUEST,
            HostError::Conflict(_) => StatusCode::CONFLICT,
            HostError::Busy(_) | HostError::ModuleNotLoaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            HostError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let msg = match e {
            HostError::NotFound(m) => format!("The requested resource does not exist: {m}"),
            other => other.to_string(),
        };
        ApiError(code, msg)
    }
}

type ApiResult = Result<Response, ApiError>;

/// Builds the router for `host`.
pub fn router(host: Host) -> Router {
    Router::new()
        .route("/api/v1/namespaces/:ns/actions", get(list_actions))
        .route(
            "/api/v1/namespaces/:ns/actions/:name",
            get(get_action)
                .put(put_action)
                .delete(delete_action)
                .post(invoke),
        )
        .route(
            "/api/v1/namespaces/:ns/activations/:id",
            get(get_activation),
        )
        .route(
            "/api/v1/namespaces/:ns/activations/:id/result",
            get(get_result),
        )
        .route("/api/v1/namespaces/:ns/activations/:id/logs", get(get_logs))
        .route("/api/v1/seuss/stats", get(seuss_stats))
        .route("/api/v1/seuss/snapshots", get(seuss_snapshots))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "The requested resource does not exist.".into(),
            )
        })
        .layer(axum::middleware::from_fn_with_state(host.clone(), auth))
        .with_state(host)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    host: Host,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(host))
        .with_graceful_shutdown(shutdown)
        .await
}

/// True if `header` carries one of the configured `uuid:key` credentials (constant-time per candidate).
pub fn authorized(creds: &[String], header: Option<&str>) -> bool {
    let Some(b64) = header.and_then(|h| h.strip_prefix("Basic ")) else {
        return false;
    };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let mut ok = subtle::Choice::from(0u8);
    for c in creds {
        ok |= c.as_bytes().ct_eq(&given);
    }
    bool::from(ok)
}

async fn auth(State(host): State<Host>, req: Request, next: Next) -> Response {
    let h = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !authorized(&host.config().auth, h) {
        let mut r = ApiError(
            StatusCode::UNAUTHORIZED,
            "The supplied authentication is invalid".into(),
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"seuss\""),
        );
        return r;
    }
    next.run(req).await
}

fn check_ns(host: &Host, ns: &str) -> Result<(), ApiError> {
    if ns == "_" || ns == host.config().namespace {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("namespace '{ns}' is not yours"),
        ))
    }
}

async fn body_json(host: &Host, body: Body, empty_ok: bool) -> Result<Value, ApiError> {
    let limit = host.config().max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request content exceeds the maximum of {limit} bytes."),
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) && empty_ok {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("The request content was malformed: {e}"),
        )
    })
}

fn flag(q: &Q, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v.is_empty())
}

async fn list_actions(State(host): State<Host>, Path(ns): Path<String>) -> ApiResult {
    check_ns(&host, &ns)?;
    let list: Vec<Value> = host
        .list_functions()
        .await
        .into_iter()
        .map(|f| {
            let mut v = serde_json::to_value(&f).unwrap_or_default();
            if let Some(e) = v.get_mut("exec").and_then(Value::as_object_mut) {
                e.remove("code");
            }
            v
        })
        .collect();
    Ok(Json(list).into_response())
}

async fn get_action(
    State(host): State<Host>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    check_ns(&host, &ns)?;
    Ok(Json(host.get_function(&name).await?).into_response())
}

async fn put_action(
    State(host): State<Host>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    body: Body,
) -> ApiResult {
    check_ns(&host, &ns)?;
    let v = body_json(&host, body, false).await?;
    let def: FunctionDef = serde_json::from_value(v).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("The request content was malformed: {e}"),
        )
    })?;
    Ok(Json(host.put_function(&name, def, flag(&q, "overwrite")).await?).into_response())
}

async fn delete_action(
    State(host): State<Host>,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    check_ns(&host, &ns)?;
    let f = host.get_function(&name).await?;
    host.delete_function(&name).await?;
    Ok(Json(f).into_response())
}

fn invoke_response(act: Activation, result_only: bool) -> Response {
    if act.end == 0 {
        return (
            StatusCode::ACCEPTED,
            Json(json!({"activationId": act.activation_id})),
        )
            .into_response();
    }
    let code = match act.response.status.as_str() {
        status::SUCCESS => StatusCode::OK,
        status::INTERNAL_ERROR => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_GATEWAY,
    };
    if result_only {
        (code, Json(act.response.result)).into_response()
    } else {
        (code, Json(act)).into_response()
    }
}

async fn invoke(
    State(host): State<Host>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    body: Body,
) -> ApiResult {
    check_ns(&host, &ns)?;
    let args = body_json(&host, body, true).await?;
    let path = match q.get("seussPath") {
        None => None,
        Some(p) => Some(StartPath::parse(p).ok_or_else(|| {
            ApiError(StatusCode::BAD_REQUEST, format!("unknown start path '{p}'"))
        })?),
    };
    let blocking = flag(&q, "blocking");
    let act = host
        .invoke(&name, args, InvokeOpts { blocking, path })
        .await?;
    if !blocking {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"activationId": act.activation_id})),
        )
            .into_response());
    }
    Ok(invoke_response(act, flag(&q, "result")))
}

async fn get_activation(
    State(host): State<Host>,
    Path((ns, id)): Path<(String, String)>,
) -> ApiResult {
    check_ns(&host, &ns)?;
    Ok(Json(host.get_activation(&id).await?).into_response())
}

async fn get_result(State(host): State<Host>, Path((ns, id)): Path<(String, String)>) -> ApiResult {
    check_ns(&host, &ns)?;
    Ok(Json(host.get_activation(&id).await?.response).into_response())
}

async fn get_logs(State(host): State<Host>, Path((ns, id)): Path<(String, String)>) -> ApiResult {
    check_ns(&host, &ns)?;
    Ok(Json(json!({"logs": host.get_activation(&id).await?.logs})).into_response())
}

async fn seuss_stats(State(host): State<Host>) -> ApiResult {
    Ok(Json(host.stats()).into_response())
}

async fn seuss_snapshots(State(host): State<Host>) -> ApiResult {
    Ok(Json(host.list_snapshots().await).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn basic_auth_matches_only_configured_credentials() {
        let creds = vec!["u1:k1".to_string(), "u2:k2".to_string()];
        assert!(authorized(&creds, Some(&basic("u2:k2"))));
        assert!(!authorized(&creds, Some(&basic("u2:k1"))));
        assert!(!authorized(&creds, Some(&basic("u2:k2x"))));
        assert!(!authorized(&creds, Some("Bearer abc")));
        assert!(!authorized(&creds, Some("Basic !!!")));
        assert!(!authorized(&creds, None));
        assert!(!authorized(&[], Some(&basic(""))));
    }
}
