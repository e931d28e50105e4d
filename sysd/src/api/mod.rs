//! The engine's HTTP API on a unix socket: the Docker Engine API v1.41,
//! same paths and JSON shapes, so the real `docker` CLI, docker-py,
//! docker-compose and `curl --unix-socket` work. Paths may carry a version
//! prefix (`/v1.41/...`).
//!
//! One module per resource, as moby's `api/server/router/`: [`system`]
//! (`_ping`, `version`, `info`), [`containers`] and [`create`] (the create
//! body), [`images`], and [`config`] (Corral's own `corral config`
//! endpoints, system role only). The streaming machinery — Docker's
//! multiplexed frames, hijacked connections, long polls whose headers go
//! out at once — is in [`streams`]. Request and response bodies are the
//! Docker API's own models (`bollard-stubs`, generated from moby's
//! swagger) wherever one exists.
//!
//! Every error is a JSON `{"message": ...}` with a 4xx or 5xx status and
//! Content-Type exactly `application/json` (with a `charset` suffix the
//! CLI prints the raw JSON); no request can take the daemon down.

mod admin;
mod archive;
pub mod attach;
mod build;
mod config;
pub mod containers;
pub mod create;
mod distribution;
mod events;
mod exec;
mod images;
mod networks;
mod os;
mod stats;
pub mod streams;
pub mod system;
mod top;
mod volumes;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use log::{debug, warn};
use serde::Serialize;
use serde_json::json;

use crate::engine::{Engine, EngineError};

pub const API_VERSION: &str = "1.41";
pub const MIN_API_VERSION: &str = "1.24";
/// The Docker release whose API this is: clients read the OS from the
/// `Server` header's `Docker/VERSION (OS)` shape (stats, build).
pub const DOCKER_VERSION: &str = "20.10.24";

pub type Body = BoxBody<Bytes, Infallible>;

/// An error answer: status and message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(500, message.to_string())
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        Self::new(e.status(), e.to_string())
    }
}

impl From<crate::volumes::VolumeError> for ApiError {
    fn from(e: crate::volumes::VolumeError) -> Self {
        EngineError::from(e).into()
    }
}

pub type ApiResult = Result<Response<Body>, ApiError>;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed()
}

/// A JSON answer (`application/json`, exactly).
pub fn json_response(status: u16, value: &impl Serialize) -> Response<Body> {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    let mut r = Response::new(full(text));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn empty(status: u16) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    if e.status == StatusCode::NOT_MODIFIED {
        // 304 has no body.
        return empty(304);
    }
    json_response(e.status.as_u16(), &json!({ "message": e.message }))
}

/// The query string, percent-decoded. A key given twice keeps its last
/// value; [`query_all`] has every one.
pub type Query = HashMap<String, String>;

pub fn parse_query(q: Option<&str>) -> Query {
    query_pairs(q).collect()
}

/// Every value of `key` (`/images/get?names=a&names=b`).
pub fn query_all(q: Option<&str>, key: &str) -> Vec<String> {
    query_pairs(q)
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

fn query_pairs(q: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A boolean query parameter as Docker reads one (`1`, `true`, `yes`).
pub fn flag(q: &Query, key: &str) -> bool {
    matches!(
        q.get(key).map(|s| s.to_ascii_lowercase()).as_deref(),
        Some("1" | "true" | "yes")
    )
}

/// The route: the path without its version prefix, split in segments.
pub fn route(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    if parts
        .first()
        .is_some_and(|p| p.starts_with('v') && p[1..].parse::<f32>().is_ok())
    {
        parts.remove(0);
    }
    parts
}

pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = req.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad(format!("reading the request body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > limit {
                return Err(ApiError::new(
                    413,
                    format!("request body larger than {limit} bytes"),
                ));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out.into())
}

/// A JSON request body into one of the API's models; a field of the wrong
/// type is named by its path (`HostConfig.Memory: invalid type ...`).
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad(format!("{what}: the request has no body")));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::bad(format!("{what}: {}", e.inner()))
        } else {
            ApiError::bad(format!("{what}: {path}: {}", e.inner()))
        }
    })
}

/// Serves one request.
pub async fn handle(
    engine: Arc<Engine>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let result = dispatch(&engine, req).await;
    let mut response = match result {
        Ok(r) => r,
        Err(e) => {
            debug!("{method} {path}: {} {}", e.status, e.message);
            error_response(&e)
        }
    };
    let headers = response.headers_mut();
    headers.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    headers.insert("Ostype", HeaderValue::from_static("linux"));
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    headers.insert(
        hyper::header::SERVER,
        HeaderValue::from_str(&format!(
            "Docker/{DOCKER_VERSION} (linux) corral-sysd/{}",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("Docker (linux)")),
    );
    Ok(response)
}

async fn dispatch(engine: &Arc<Engine>, req: Request<Incoming>) -> ApiResult {
    let parts = route(req.uri().path());
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let not_found = || {
        ApiError::new(
            404,
            format!("page not found: {} {}", req.method(), req.uri().path()),
        )
    };
    match parts.first().copied() {
        Some("_ping" | "version" | "info") => system::route(engine, &req, &parts)
            .await
            .unwrap_or_else(|| Err(not_found())),
        Some("containers") => containers::route(engine, req, &parts[1..]).await,
        Some("images") => images::route(engine, req, &parts[1..]).await,
        Some("exec") => exec::route(engine, req, &parts[1..]).await,
        Some("volumes") => volumes::route(engine, req, &parts[1..]).await,
        Some("networks") => networks::route(engine, req, &parts[1..]).await,
        Some("auth") if req.method() == Method::POST && parts.len() == 1 => {
            distribution::login(engine, req).await
        }
        Some("events") if req.method() == Method::GET && parts.len() == 1 => {
            events::events(engine, &parse_query(req.uri().query()))
        }
        Some("corral") if parts.get(1) == Some(&"config") => config::route(req, &parts[2..]).await,
        Some("corral") if parts.get(1) == Some(&"os") => os::route(engine, req, &parts[2..]).await,
        Some("corral") if parts.get(1) == Some(&"admin") => {
            admin::route(engine, req, &parts[2..]).await
        }
        Some("system") if req.method() == Method::GET && parts == ["system", "df"] => {
            system::df(engine).await
        }
        // `system prune` prunes the build cache too: the classic builder
        // keeps none apart from images, which `image prune` covers.
        Some("build") if req.method() == Method::POST && parts == ["build", "prune"] => Ok(
            json_response(200, &json!({ "CachesDeleted": [], "SpaceReclaimed": 0 })),
        ),
        Some("build") if req.method() == Method::POST && parts.len() == 1 => {
            let q = parse_query(req.uri().query());
            build::build(engine, req, &q).await
        }
        Some(top) if NOT_YET.contains(&top) => Err(not_yet(req.method(), req.uri().path())),
        _ => Err(not_found()),
    }
}

/// Docker API resources this engine does not serve yet: a clear 501
/// rather than a 404 that reads like a missing object.
const NOT_YET: &[&str] = &[
    "plugins",
    "swarm",
    "nodes",
    "services",
    "tasks",
    "secrets",
    "configs",
    "distribution",
    "session",
    "system",
    "commit",
];

/// A Docker API call this engine does not implement yet.
pub fn not_yet(method: &Method, path: &str) -> ApiError {
    ApiError::new(
        501,
        format!("{method} {path} is not supported by this engine yet"),
    )
}

/// Who is on the other end of a connection (SO_PEERCRED), in each
/// request's extensions: the user id and, where this engine's pid
/// namespace shows it, the process.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
}

/// Serves on a listener from [`bind`] until the task is dropped. A peer
/// the role refuses gets a 403 naming why on every request.
pub async fn serve(engine: Arc<Engine>, listener: tokio::net::UnixListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("API: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = match stream.peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                pid: c.pid().filter(|p| *p > 0),
            },
            Err(e) => {
                warn!("API: a connection without credentials refused: {e}");
                continue;
            }
        };
        let refused = engine.config().role.refuses(peer.uid);
        if let Some(why) = &refused {
            warn!(
                "API: refused a connection from uid {} (pid {}): {why}",
                peer.uid,
                peer.pid.map_or("unknown".into(), |p| p.to_string())
            );
        }
        let engine = engine.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let engine = engine.clone();
                let refused = refused.clone();
                req.extensions_mut().insert(peer);
                async move {
                    match refused {
                        Some(why) => Ok::<_, Infallible>(error_response(&ApiError::new(403, why))),
                        None => handle(engine, req).await,
                    }
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                // attach and exec take the connection over.
                .with_upgrades()
                .await
            {
                debug!("API connection: {e}");
            }
        });
    }
}

/// Binds the socket, replacing a stale one, with no window in which
/// anyone else could connect: made 0600 (by the umask), then given its
/// group and `mode`.
pub fn bind(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let with_path = |e: std::io::Error, what: &str| {
        std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = tokio::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener.map_err(|e| with_path(e, "binding"))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| with_path(e, "chown"))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| with_path(e, "chmod"))?;
    Ok(listener)
}

/// `method` is not one the path takes.
pub fn no_route(method: &Method, what: &str) -> ApiError {
    ApiError::new(404, format!("page not found: {method} {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_strip_the_version() {
        assert_eq!(route("/v1.41/containers/json"), ["containers", "json"]);
        assert_eq!(
            route("/containers/abc/start"),
            ["containers", "abc", "start"]
        );
        assert_eq!(route("/_ping"), ["_ping"]);
        assert_eq!(
            route("/images/corral%2Fbusybox:1/json"),
            ["images", "corral/busybox:1", "json"]
        );
        assert_eq!(
            route("/images/corral/busybox:1"),
            ["images", "corral", "busybox:1"]
        );
    }

    #[test]
    fn queries_decode() {
        let q = parse_query(Some("all=1&name=my%20box&filters=%7B%7D&x"));
        assert_eq!(q["all"], "1");
        assert_eq!(q["name"], "my box");
        assert_eq!(q["filters"], "{}");
        assert_eq!(q["x"], "");
        assert!(flag(&q, "all"));
        assert!(!flag(&q, "x"));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(
            query_all(Some("names=a&x=1&names=b%3A1"), "names"),
            ["a", "b:1"]
        );
    }

    #[test]
    fn bodies_of_the_wrong_shape_name_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            #[serde(rename = "HostConfig")]
            host_config: bollard_stubs::models::HostConfig,
        }
        let e =
            parse_json::<T>(br#"{"HostConfig":{"Memory":"x"}}"#, "container config").unwrap_err();
        assert!(
            e.message
                .starts_with("container config: HostConfig.Memory: invalid type"),
            "{}",
            e.message
        );
        let e = parse_json::<T>(b"", "container config").unwrap_err();
        assert_eq!(e.message, "container config: the request has no body");
    }
}
