//! Web actions: `/api/v1/web/{ns}/{pkg}/{action}.{ext}[/path]` runs an action annotated `web-export: true`
//! for any HTTP method, without credentials unless its `require-whisk-auth` annotation asks for them
//! (`true`: the API's Basic credentials; a string: that value in `X-Require-Whisk-Auth`). `pkg` is
//! `default` for an action outside packages, else a package or binding (see `packages.rs`), whose
//! parameters are merged under the action's.
//!
//! The action gets the query parameters and a JSON or form body as arguments, plus `__ow_method`
//! (lower case), `__ow_headers` (names in lower case) and `__ow_path` (what follows the action's name);
//! with `raw-http: true` it gets `__ow_query` (the raw query string) and `__ow_body` (the body as text,
//! or base64 when it is not UTF-8) instead of parsed ones. With `final: true` the request cannot
//! override a bound parameter (400).
//!
//! The extension shapes the answer: `.json` the result (or the field a further path projects, e.g.
//! `f.json/a/b`) as JSON; `.html`, `.text`, `.svg` the result's `html`, `text`, `svg` field with that
//! type; `.http` (also no extension) the result's `statusCode`, `headers` and `body` (a string, or JSON;
//! a base64 body with a non-text content type is decoded). An application error answers 400 with
//! `{"error": ...}`, any other failure 502; every answer carries `x-openwhisk-activation-id`.

use crate::host::Host;
use crate::model::{status, FunctionInfo, InvokeOpts};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde_json::{json, Map, Value};

/// The route's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ext {
    Json,
    Html,
    Text,
    Svg,
    Http,
}

impl Ext {
    /// Splits `action.ext` into the name and the extension (none: `.http`).
    fn split(action: &str) -> Option<(&str, Ext)> {
        let Some((name, ext)) = action.rsplit_once('.') else {
            return Some((action, Ext::Http));
        };
        let e = match ext {
            "json" => Ext::Json,
            "html" => Ext::Html,
            "text" => Ext::Text,
            "svg" => Ext::Svg,
            "http" => Ext::Http,
            _ => return None,
        };
        Some((name, e))
    }
}

fn error(code: StatusCode, msg: &str) -> Response {
    (code, Json(json!({"error": msg, "code": code.as_u16()}))).into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "The requested resource does not exist.")
}

fn annotation<'a>(f: &'a FunctionInfo, key: &str) -> Option<&'a Value> {
    f.annotations.iter().find(|a| a.key == key).map(|a| &a.value)
}

fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || matches!(v, Some(Value::String(s)) if s == "true")
}

/// `GET|POST|... /api/v1/web/{ns}/{pkg}/{action}`.
pub async fn web(
    State(host): State<Host>,
    Path((ns, pkg, action)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    serve(host, ns, pkg, action, String::new(), req).await
}

/// `... /api/v1/web/{ns}/{pkg}/{action}/{rest}`.
pub async fn web_path(
    State(host): State<Host>,
    Path((ns, pkg, action, rest)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    serve(host, ns, pkg, action, format!("/{rest}"), req).await
}

async fn serve(host: Host, ns: String, pkg: String, action: String, rest: String, req: Request) -> Response {
    if !(ns == "_" || ns == host.config().namespace) {
        return not_found();
    }
    let Some((name, ext)) = Ext::split(&action) else {
        return error(StatusCode::NOT_ACCEPTABLE, "Content type is not supported (json, html, text, svg, http).");
    };
    let name = if pkg == "default" { name.to_string() } else { format!("{pkg}/{name}") };
    let name = name.as_str();
    // The action as its package shows it: `final` then covers the package's parameters too.
    let Ok(f) = host.get_action(name).await else {
        return not_found();
    };
    if !truthy(annotation(&f, "web-export")) {
        return not_found();
    }
    if let Some(r) = check_auth(&host, &f, req.headers()) {
        return r;
    }
    let (parts, body) = req.into_parts();
    let raw = truthy(annotation(&f, "raw-http"));
    let args = match arguments(&host, &parts.method, &parts.headers, parts.uri.query(), body, &rest, raw).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if truthy(annotation(&f, "final")) {
        if let Some(p) = f.parameters.iter().find(|p| args.contains_key(&p.key)) {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("Request defines parameters that are not allowed (e.g., reserved properties): {}.", p.key),
            );
        }
    }
    let act = match host.invoke(name, Value::Object(args), InvokeOpts { blocking: true, path: None }).await {
        Ok(a) => a,
        Err(e) => return crate::http::ApiError::from(e).into_response(),
    };
    let id = act.activation_id.clone();
    let mut r = if act.end == 0 {
        (StatusCode::ACCEPTED, Json(json!({"activationId": id}))).into_response()
    } else if act.response.status == status::SUCCESS {
        shape(ext, &rest, act.response.result)
    } else {
        let code = if act.response.status == status::APPLICATION_ERROR {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::BAD_GATEWAY
        };
        let e = act.response.result.get("error").cloned().unwrap_or(act.response.result);
        (code, Json(json!({"error": e, "code": id}))).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert("x-openwhisk-activation-id", v);
    }
    r
}

/// `Some(answer)` when the action's `require-whisk-auth` refuses the request.
fn check_auth(host: &Host, f: &FunctionInfo, headers: &HeaderMap) -> Option<Response> {
    let ok = match annotation(f, "require-whisk-auth") {
        None | Some(Value::Bool(false)) => true,
        Some(Value::Bool(true)) => crate::http::authorized(
            &host.credentials(),
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()),
        ),
        Some(v) => {
            let want = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let given = headers.get("x-require-whisk-auth").map(HeaderValue::as_bytes).unwrap_or_default();
            bool::from(subtle::ConstantTimeEq::ct_eq(want.as_bytes(), given))
        }
    };
    (!ok).then(|| error(StatusCode::UNAUTHORIZED, "The resource requires authentication, which was not supplied with the request"))
}

/// The action's arguments for this request (see the module docs).
async fn arguments(
    host: &Host,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Body,
    rest: &str,
    raw: bool,
) -> Result<Map<String, Value>, Response> {
    let limit = host.config().max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        error(StatusCode::PAYLOAD_TOO_LARGE, &format!("The request content exceeds the maximum of {limit} bytes."))
    })?;
    let mut args = Map::new();
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if raw {
        args.insert("__ow_query".into(), json!(query.unwrap_or_default()));
        let body = match std::str::from_utf8(&bytes) {
            Ok(s) => s.to_string(),
            Err(_) => base64::engine::general_purpose::STANDARD.encode(&bytes),
        };
        args.insert("__ow_body".into(), json!(body));
    } else {
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            args.insert(k.into_owned(), Value::String(v.into_owned()));
        }
        if !bytes.is_empty() {
            if ctype.starts_with("application/json") {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(Value::Object(m)) => args.extend(m),
                    Ok(other) => {
                        args.insert("__ow_body".into(), other);
                    }
                    Err(e) => {
                        return Err(error(StatusCode::BAD_REQUEST, &format!("The request content was malformed: {e}")))
                    }
                }
            } else if ctype.starts_with("application/x-www-form-urlencoded") {
                for (k, v) in form_urlencoded::parse(&bytes) {
                    args.insert(k.into_owned(), Value::String(v.into_owned()));
                }
            } else {
                let body = match std::str::from_utf8(&bytes) {
                    Ok(s) if !ctype.starts_with("application/octet-stream") => s.to_string(),
                    _ => base64::engine::general_purpose::STANDARD.encode(&bytes),
                };
                args.insert("__ow_body".into(), json!(body));
            }
        }
    }
    let hdrs: Map<String, Value> = headers
        .iter()
        .filter(|(k, _)| *k != header::AUTHORIZATION)
        .filter_map(|(k, v)| Some((k.as_str().to_string(), json!(v.to_str().ok()?))))
        .collect();
    args.insert("__ow_method".into(), json!(method.as_str().to_ascii_lowercase()));
    args.insert("__ow_headers".into(), Value::Object(hdrs));
    args.insert("__ow_path".into(), json!(rest));
    Ok(args)
}

/// The HTTP answer `result` makes under `ext`.
fn shape(ext: Ext, rest: &str, result: Value) -> Response {
    let projected = || {
        rest.split('/')
            .filter(|s| !s.is_empty())
            .try_fold(&result, |v, k| v.get(k))
            .cloned()
    };
    let typed = |field: &str, ctype: &'static str| match result.get(field) {
        Some(Value::String(s)) => ([(header::CONTENT_TYPE, ctype)], s.clone()).into_response(),
        _ => error(
            StatusCode::BAD_REQUEST,
            &format!("The action did not produce a valid response: it has no string '{field}'."),
        ),
    };
    match ext {
        Ext::Json => match projected() {
            Some(v) => Json(v).into_response(),
            None => not_found(),
        },
        Ext::Html => typed("html", "text/html; charset=utf-8"),
        Ext::Text => typed("text", "text/plain; charset=utf-8"),
        Ext::Svg => typed("svg", "image/svg+xml"),
        Ext::Http => http_response(result),
    }
}

/// `.http`: `statusCode`, `headers`, `body` of the result.
fn http_response(result: Value) -> Response {
    let bad = |m: &str| error(StatusCode::BAD_GATEWAY, &format!("The action did not produce a valid response: {m}"));
    let code = match result.get("statusCode") {
        None => None,
        Some(v) => match v.as_u64().and_then(|c| u16::try_from(c).ok()).and_then(|c| StatusCode::from_u16(c).ok()) {
            Some(c) => Some(c),
            None => return bad("statusCode is not an HTTP status"),
        },
    };
    let mut headers = HeaderMap::new();
    if let Some(h) = result.get("headers") {
        let Some(h) = h.as_object() else { return bad("headers is not an object") };
        for (k, v) in h {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(&v)) {
                (Ok(k), Ok(v)) => {
                    headers.insert(k, v);
                }
                _ => return bad(&format!("header '{k}' is not a valid HTTP header")),
            }
        }
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let body: Vec<u8> = match result.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => {
            let textual = ctype.as_deref().is_none_or(|c| {
                c.starts_with("text/") || c.contains("json") || c.contains("xml") || c.contains("javascript")
            });
            if textual {
                s.clone().into_bytes()
            } else {
                match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
                    Ok(b) => b,
                    Err(_) => return bad("a binary body must be base64"),
                }
            }
        }
        Some(other) => {
            if ctype.is_none() {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            other.to_string().into_bytes()
        }
    };
    if ctype.is_none() && !headers.contains_key(header::CONTENT_TYPE) && !body.is_empty() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    }
    let code = code.unwrap_or(if body.is_empty() { StatusCode::NO_CONTENT } else { StatusCode::OK });
    let mut r = (code, body).into_response();
    r.headers_mut().extend(headers);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_split_off_the_name() {
        assert_eq!(Ext::split("f.json"), Some(("f", Ext::Json)));
        assert_eq!(Ext::split("f"), Some(("f", Ext::Http)));
        assert_eq!(Ext::split("f.svg"), Some(("f", Ext::Svg)));
        assert_eq!(Ext::split("f.exe"), None);
    }

    #[test]
    fn http_results_shape_the_answer() {
        let r = http_response(json!({"statusCode": 201, "headers": {"x-a": "b"}, "body": "hi"}));
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["x-a"], "b");
        assert!(r.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        assert_eq!(http_response(json!({})).status(), StatusCode::NO_CONTENT);
        assert_eq!(http_response(json!({"statusCode": 7000})).status(), StatusCode::BAD_GATEWAY);
        assert_eq!(http_response(json!({"headers": {"bad header": "x"}})).status(), StatusCode::BAD_GATEWAY);
        let r = http_response(json!({"body": {"a": 1}}));
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
