//! The OpenWhisk REST API subset over HTTP/1.1 (axum): `GET /api/v1` (no credentials needed), namespaces
//! list, actions create/update (merging as OpenWhisk does)/get/delete/list, invoke (blocking with `timeout` ms,
//! `result=true`, non-blocking; the `x-openwhisk-activation-id` header on each answer), activations
//! get/result/logs and list (`name`, `skip`, `limit`, `since`, `upto`, `docs`, `count`). Basic auth on every other route, compared in constant time; JSON errors `{"error": ..., "code": <status>}`; bodies over `max_body_bytes` get 413.
//! Sequences (`exec.kind = "sequence"`) are created and invoked like any action (see `sequence.rs`).
//! Packages: create/update/get/delete/list (`skip`, `limit`, `count`) under `.../packages`, their actions
//! as `.../actions/{pkg}/{action}` (or `pkg%2Faction`), a package's actions listed by `.../actions/{pkg}/`
//! (see `packages.rs`); the actions list shows an action of a package with namespace `NS/pkg`.
//! A thin adapter: every route is one call of [`Host`].
//!
//! Extensions: `?seussPath=cold|runtime|warm|hot` on invoke forces a start path (409 if unavailable);
//! `GET /api/v1/seuss/stats` and `GET /api/v1/seuss/snapshots` show [`Host::stats`] and the snapshots.
//!
//! Operations: `/health` (liveness) and `/ready` (readiness, [`Host::ready`]) need no credentials;
//! `/metrics` (Prometheus, see `metrics.rs`) is open, behind the credentials or off as `metrics` in the
//! config says.

use crate::config::MetricsAccess;
use crate::host::{Host, HostError};
use crate::model::{
    activation_summary, status, Activation, ActivationQuery, FunctionPatch, InvokeOpts, StartPath,
};
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
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
            HostError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        let msg = match e {
            HostError::NotFound(m) => format!("The requested resource does not exist: {m}"),
            // OpenWhisk's messages are sentences of their own.
            HostError::Conflict(m) | HostError::InvalidArgs(m) => m,
            other => other.to_string(),
        };
        ApiError(code, msg)
    }
}

type ApiResult = Result<Response, ApiError>;

/// Builds the router for `host`.
pub fn router(host: Host) -> Router {
    let authenticated = Router::new()
        .route("/api/v1/namespaces", get(list_namespaces))
        .route("/api/v1/namespaces/:ns/actions", get(list_actions))
        .route(
            "/api/v1/namespaces/:ns/actions/:name",
            get(get_action)
                .put(put_action)
                .delete(delete_action)
                .post(invoke),
        )
        .route("/api/v1/namespaces/:ns/actions/:pkg/", get(list_package_actions))
        .route(
            "/api/v1/namespaces/:ns/actions/:pkg/:name",
            get(get_action)
                .put(put_action)
                .delete(delete_action)
                .post(invoke),
        )
        .route("/api/v1/namespaces/:ns/packages", get(list_packages))
        .route(
            "/api/v1/namespaces/:ns/packages/:name",
            get(get_package).put(put_package).delete(delete_package),
        )
        .route("/api/v1/namespaces/:ns/activations", get(list_activations))
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
        });
    // As in OpenWhisk, the API description needs no credentials; nor do liveness, readiness and web
    // actions (which check their own `require-whisk-auth`, see `web.rs`).
    let mut public = Router::new()
        .route("/api/v1", get(api_info))
        .route("/api/v1/", get(api_info))
        .route("/api/v1/web/:ns/:pkg/:action", any(crate::web::web))
        .route("/api/v1/web/:ns/:pkg/:action/*rest", any(crate::web::web_path))
        .route("/health", get(health))
        .route("/ready", get(ready));
    let authenticated = match host.config().metrics {
        MetricsAccess::Open => {
            public = public.route("/metrics", get(metrics));
            authenticated
        }
        MetricsAccess::Auth => authenticated.route("/metrics", get(metrics)),
        MetricsAccess::Off => authenticated,
    };
    public
        .merge(authenticated.layer(axum::middleware::from_fn_with_state(host.clone(), auth)))
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
    if !authorized(&host.credentials(), h) {
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

/// `GET /api/v1`: what this API is (OpenWhisk's fields; seuss serves no swagger documents).
async fn api_info() -> Response {
    Json(json!({
        "description": "OpenWhisk API (seuss)",
        "api_version": "1.0.0",
        "api_version_path": "v1",
        "build": env!("CARGO_PKG_VERSION"),
        "buildno": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

/// `GET /health`: liveness (the process serves requests).
async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /ready`: 200 once [`Host::ready`], else 503.
async fn ready(State(host): State<Host>) -> Response {
    let ready = host.ready();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let rt = host.list_snapshots().await.iter().any(|s| s.function.is_none());
    (code, Json(json!({"ready": ready, "runtime_snapshot": rt}))).into_response()
}

/// `GET /metrics`: the Prometheus text exposition (OpenMetrics text, which Prometheus reads).
async fn metrics(State(host): State<Host>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        host.metrics_text(),
    )
        .into_response()
}

/// `GET /api/v1/namespaces`: the caller's namespaces (seuss has one).
async fn list_namespaces(State(host): State<Host>) -> Response {
    Json(json!([host.config().namespace])).into_response()
}

/// The action path of a route: `{ns}/{name}` or `{ns}/{pkg}/{name}` (as `pkg/name`).
pub struct ActionPath(String, String);

#[axum::async_trait]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ActionPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Response> {
        let Path(p) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let (ns, name) = (p.get("ns").cloned().unwrap_or_default(), p.get("name").cloned().unwrap_or_default());
        Ok(match p.get("pkg") {
            Some(pkg) => ActionPath(ns, format!("{pkg}/{name}")),
            None => ActionPath(ns, name),
        })
    }
}

/// `skip` and `limit` of a list (OpenWhisk's collections: `limit` 0 means the largest page, above it is
/// refused).
fn page(q: &Q) -> Result<(usize, usize), ApiError> {
    let limit = match number(q, "limit")? {
        None => ActivationQuery::DEFAULT_LIMIT,
        Some(0) => ActivationQuery::MAX_LIMIT,
        Some(n) if n <= ActivationQuery::MAX_LIMIT as u64 => n as usize,
        Some(n) => {
            return Err(bad(format!(
                "The value '{n}' is not in the range of 0 to {} for 'limit'.",
                ActivationQuery::MAX_LIMIT
            )))
        }
    };
    let skip = number(q, "skip")?.map_or(Ok(0), |n| {
        usize::try_from(n).map_err(|_| bad(format!("'skip' {n} is too large.")))
    })?;
    Ok((skip, limit))
}

/// The page of `items` that `q` asks for, or `{collection: N}` with `count=true` (N counted after
/// `skip`, as OpenWhisk counts).
fn listed<T: serde::Serialize>(q: &Q, collection: &str, items: Vec<T>) -> ApiResult {
    let (skip, limit) = page(q)?;
    if strict_flag(q, "count")? {
        return Ok(Json(json!({ collection: items.len().saturating_sub(skip) })).into_response());
    }
    let page: Vec<T> = items.into_iter().skip(skip).take(limit).collect();
    Ok(Json(page).into_response())
}

/// Actions whose package is `pkg` (`None`: all), as the list shows them (without code).
async fn actions_listed(host: &Host, pkg: Option<&str>, q: &Q) -> ApiResult {
    let list: Vec<Value> = host
        .list_functions()
        .await
        .into_iter()
        .filter(|f| pkg.is_none() || crate::packages::package_of(&f.name).map(|p| p.0) == pkg)
        .map(|f| {
            let mut v = crate::packages::action_view(&f);
            if let Some(e) = v.get_mut("exec").and_then(Value::as_object_mut) {
                e.remove("code");
            }
            v
        })
        .collect();
    listed(q, "actions", list)
}

async fn list_actions(State(host): State<Host>, Path(ns): Path<String>, q: Q) -> ApiResult {
    check_ns(&host, &ns)?;
    actions_listed(&host, None, &q).await
}

/// `GET .../actions/{pkg}/`: the actions of package `pkg` (a binding: of the package it binds).
async fn list_package_actions(
    State(host): State<Host>,
    Path((ns, pkg)): Path<(String, String)>,
    q: Q,
) -> ApiResult {
    check_ns(&host, &ns)?;
    let real = host.actions_package(&pkg)?;
    actions_listed(&host, Some(&real), &q).await
}

async fn get_action(State(host): State<Host>, ActionPath(ns, name): ActionPath) -> ApiResult {
    check_ns(&host, &ns)?;
    Ok(Json(crate::packages::action_view(&host.get_action(&name).await?)).into_response())
}

/// `v` as the body type `T`, or 400 as OpenWhisk answers malformed content.
fn parse_body<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("The request content was malformed: {e}"),
        )
    })
}

async fn put_action(
    State(host): State<Host>,
    ActionPath(ns, name): ActionPath,
    q: Q,
    body: Body,
) -> ApiResult {
    check_ns(&host, &ns)?;
    let patch: FunctionPatch = parse_body(body_json(&host, body, false).await?)?;
    let f = host.update_function(&name, patch, flag(&q, "overwrite")).await?;
    Ok(Json(crate::packages::action_view(&f)).into_response())
}

async fn delete_action(State(host): State<Host>, ActionPath(ns, name): ActionPath) -> ApiResult {
    check_ns(&host, &ns)?;
    let f = host.get_action(&name).await?;
    host.delete_function(&name).await?;
    Ok(Json(crate::packages::action_view(&f)).into_response())
}

async fn list_packages(State(host): State<Host>, Path(ns): Path<String>, q: Q) -> ApiResult {
    check_ns(&host, &ns)?;
    listed(&q, "packages", host.list_packages().await)
}

async fn get_package(State(host): State<Host>, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    check_ns(&host, &ns)?;
    Ok(Json(host.get_package(&name).await?).into_response())
}

async fn put_package(
    State(host): State<Host>,
    Path((ns, name)): Path<(String, String)>,
    q: Q,
    body: Body,
) -> ApiResult {
    check_ns(&host, &ns)?;
    let put: crate::packages::PackagePut = parse_body(body_json(&host, body, true).await?)?;
    Ok(Json(host.put_package(&name, put, flag(&q, "overwrite")).await?).into_response())
}

async fn delete_package(State(host): State<Host>, Path((ns, name)): Path<(String, String)>, q: Q) -> ApiResult {
    check_ns(&host, &ns)?;
    Ok(Json(host.delete_package(&name, flag(&q, "force")).await?).into_response())
}

/// OpenWhisk's header naming the activation on every invoke answer.
const ACTIVATION_ID_HEADER: &str = "x-openwhisk-activation-id";

fn with_activation_id(id: &str, mut r: Response) -> Response {
    if let Ok(v) = header::HeaderValue::from_str(id) {
        r.headers_mut().insert(ACTIVATION_ID_HEADER, v);
    }
    r
}

fn invoke_response(act: Activation, blocking: bool, result_only: bool) -> Response {
    let id = act.activation_id.clone();
    let r = if !blocking || act.end == 0 {
        (
            StatusCode::ACCEPTED,
            Json(json!({"activationId": act.activation_id})),
        )
            .into_response()
    } else {
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
    };
    with_activation_id(&id, r)
}

async fn invoke(
    State(host): State<Host>,
    ActionPath(ns, name): ActionPath,
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
    // OpenWhisk's `timeout`: how long (ms) a blocking invoke waits before answering 202 with the id.
    let wait = number(&q, "timeout")?.map_or(crate::host::BLOCKING_WAIT, std::time::Duration::from_millis);
    let act = host
        .invoke_waiting(&name, args, InvokeOpts { blocking, path }, wait)
        .await?;
    Ok(invoke_response(act, blocking, flag(&q, "result")))
}

fn bad(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg)
}

/// A boolean query flag (`true|yes|on|1`, empty counts as true; `false|no|off|0`); anything else is a 400.
fn strict_flag(q: &Q, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("false" | "no" | "off" | "0") => Ok(false),
        Some("true" | "yes" | "on" | "1" | "") => Ok(true),
        Some(v) => Err(bad(format!("The parameter '{key}' must be true or false, not '{v}'."))),
    }
}

fn number(q: &Q, key: &str) -> Result<Option<u64>, ApiError> {
    q.get(key)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                bad(format!(
                    "The parameter '{key}' must be a non-negative integer, not '{v}'."
                ))
            })
        })
        .transpose()
}

/// The list query of `GET .../activations`, checked as OpenWhisk does: `limit` 0 means the largest page,
/// above it is refused; `skip` and the epochs are non-negative integers; `name` a function name.
fn activation_query(q: &Q) -> Result<ActivationQuery, ApiError> {
    let (skip, limit) = page(q)?;
    let name = match q.get("name").map(|n| n.trim()) {
        None | Some("") => None,
        Some(n) if crate::store::valid_action_name(n) => Some(n.to_string()),
        Some(n) => return Err(bad(format!("The name filter '{n}' is not a valid name."))),
    };
    Ok(ActivationQuery {
        name,
        skip,
        limit,
        since: number(q, "since")?,
        upto: number(q, "upto")?,
    })
}

async fn list_activations(State(host): State<Host>, Path(ns): Path<String>, q: Q) -> ApiResult {
    check_ns(&host, &ns)?;
    let query = activation_query(&q)?;
    let (docs, count) = (strict_flag(&q, "docs")?, strict_flag(&q, "count")?);
    if docs && count {
        return Err(bad("The parameters 'docs' and 'count' cannot be combined.".into()));
    }
    if count {
        let n = host.count_activations(&query).await?;
        return Ok(Json(json!({ "activations": n })).into_response());
    }
    let list = host.list_activations(&query).await?;
    if docs {
        return Ok(Json(list).into_response());
    }
    Ok(Json(list.iter().map(activation_summary).collect::<Vec<_>>()).into_response())
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
