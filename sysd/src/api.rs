//! The engine's HTTP API on a unix socket: a subset of the Docker Engine
//! API v1.41, same paths and JSON shapes, so `curl --unix-socket` and
//! Docker clients work. Paths may carry a version prefix (`/v1.41/...`).
//! Every error is a JSON `{"message": ...}` with a 4xx or 5xx status; no
//! request can take the daemon down.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use corral_config::service::{
    Bind, ByteSize, CapName, Cpus, Device, HostNamespace, Resources, Restart,
};
use corral_config::ServiceDef;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use log::{debug, warn};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::engine::{Engine, EngineError, Snapshot};
use crate::logs::{Entry, Stream};
use crate::state::Status;

pub const API_VERSION: &str = "1.41";
pub const MIN_API_VERSION: &str = "1.24";

type Body = BoxBody<Bytes, Infallible>;

/// An error answer: status and message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        Self::new(e.status(), e.to_string())
    }
}

type ApiResult = Result<Response<Body>, ApiError>;

fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed()
}

fn json_response(status: u16, value: &Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn empty(status: u16) -> Response<Body> {
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

/// The query string, percent-decoded.
pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
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

fn flag(q: &HashMap<String, String>, key: &str) -> bool {
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

fn config_manager() -> Result<&'static crate::sysconfig::Manager, ApiError> {
    crate::sysconfig::manager().ok_or_else(|| {
        ApiError::new(
            404,
            "this engine does not manage the system config: use the system engine's socket (/run/corral/system.sock)",
        )
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
    headers.insert(
        "Api-Version",
        hyper::header::HeaderValue::from_static(API_VERSION),
    );
    headers.insert("Ostype", hyper::header::HeaderValue::from_static("linux"));
    headers.insert(
        hyper::header::SERVER,
        hyper::header::HeaderValue::from_static(concat!("corral-sysd/", env!("CARGO_PKG_VERSION"))),
    );
    Ok(response)
}

async fn dispatch(engine: &Arc<Engine>, req: Request<Incoming>) -> ApiResult {
    let q = parse_query(req.uri().query());
    let parts = route(req.uri().path());
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (&method, parts.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => {
            let mut r = Response::new(full("OK"));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Ok(r)
        }
        (&Method::GET, ["version"]) => Ok(json_response(200, &version())),
        (&Method::GET, ["corral", "config", "saved"]) => {
            config_manager()?;
            let text =
                crate::sysconfig::saved_text().map_err(|e| ApiError::new(500, e.to_string()))?;
            let mut r = Response::new(full(text));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/toml"),
            );
            Ok(r)
        }
        (&Method::POST, ["corral", "config"]) => {
            let manager = config_manager()?;
            let body = read_body(req, 1 << 20).await?;
            let change: crate::sysconfig::Change = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad(format!("not a config change: {e}")))?;
            use crate::sysconfig::ChangeError;
            // Its own task: a client that goes away (Ctrl-C, or a console
            // shell the change itself restarts) must not cut the change
            // short between the saved file and the live system.
            let done = tokio::spawn(manager.change(change))
                .await
                .map_err(|e| ApiError::new(500, format!("the config change failed: {e}")))?;
            match done {
                Ok(report) => Ok(json_response(
                    200,
                    &serde_json::to_value(&report).unwrap_or_default(),
                )),
                Err(e @ ChangeError::Invalid(_)) => Err(ApiError::bad(e.to_string())),
                Err(e @ ChangeError::Conflict(_)) => Err(ApiError::new(409, e.to_string())),
                Err(e @ ChangeError::Io(_)) => Err(ApiError::new(500, e.to_string())),
            }
        }
        (&Method::GET, ["info"]) => Ok(json_response(200, &info(engine))),
        (&Method::GET, ["containers", "json"]) => {
            let all = flag(&q, "all");
            let list: Vec<Value> = engine
                .list()
                .iter()
                .filter(|s| all || s.record.state.status == Status::Running)
                .map(container_summary)
                .collect();
            Ok(json_response(200, &Value::Array(list)))
        }
        (&Method::POST, ["containers", "create"]) => {
            let body = read_body(req, 1 << 20).await?;
            let create: CreateBody = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad(format!("invalid container config: {e}")))?;
            let def = create.into_def()?;
            let id = engine.create(q.get("name").map(String::as_str), def, false)?;
            Ok(json_response(201, &json!({ "Id": id, "Warnings": [] })))
        }
        (_, ["containers", reference, rest @ ..]) => {
            let id = engine.resolve(reference)?;
            container_action(engine, &method, &id, rest, &q).await
        }
        (&Method::GET, ["images", "json"]) => images_list(engine).await,
        (&Method::POST, ["images", "load"]) => images_load(engine, req, flag(&q, "quiet")).await,
        (&Method::DELETE, ["images", name @ ..]) if !name.is_empty() => {
            images_remove(engine, &name.join("/")).await
        }
        (&Method::GET, ["images", name @ .., "json"]) if !name.is_empty() => {
            let image = engine
                .images()
                .get(&name.join("/"))
                .map_err(|e| image_error(&name.join("/"), e))?;
            Ok(json_response(200, &image_summary(&image)))
        }
        _ => Err(ApiError::new(
            404,
            format!("page not found: {method} {}", req.uri().path()),
        )),
    }
}

async fn container_action(
    engine: &Arc<Engine>,
    method: &Method,
    id: &str,
    rest: &[&str],
    q: &HashMap<String, String>,
) -> ApiResult {
    let timeout = match q.get("t") {
        Some(t) => Some(Duration::from_secs(t.parse::<u64>().map_err(|_| {
            ApiError::bad(format!("t={t:?} is not a number of seconds"))
        })?)),
        None => None,
    };
    match (method, rest) {
        (&Method::GET, ["json"]) => {
            let snap = engine.inspect(id)?;
            let reasons = engine
                .images()
                .get(&snap.record.image_id)
                .ok()
                .and_then(|image| {
                    image
                        .label(corral_image::labels::REASONS)
                        .map(str::to_owned)
                });
            Ok(json_response(200, &inspect(&snap, reasons.as_deref())))
        }
        (&Method::POST, ["start"]) => {
            engine.start(id)?;
            Ok(empty(204))
        }
        (&Method::POST, ["stop"]) => {
            engine.stop(id, timeout).await?;
            Ok(empty(204))
        }
        (&Method::POST, ["restart"]) => {
            engine.restart(id, timeout).await?;
            Ok(empty(204))
        }
        (&Method::POST, ["kill"]) => {
            let signal = parse_signal(q.get("signal").map(String::as_str).unwrap_or("SIGKILL"))?;
            engine.kill(id, signal)?;
            Ok(empty(204))
        }
        (&Method::POST, ["wait"]) => {
            let condition = q
                .get("condition")
                .map(String::as_str)
                .unwrap_or("not-running");
            let code = match condition {
                "not-running" => engine.wait(id, false).await?,
                "next-exit" => engine.wait(id, true).await?,
                "removed" => {
                    let code = engine.wait(id, false).await?;
                    engine.wait_removed(id).await?;
                    code
                }
                other => {
                    return Err(ApiError::bad(format!(
                        "condition={other:?}: use not-running, next-exit or removed"
                    )))
                }
            };
            Ok(json_response(
                200,
                &json!({ "StatusCode": code, "Error": null }),
            ))
        }
        (&Method::GET, ["logs"]) => logs(engine, id, q),
        (&Method::DELETE, []) => {
            engine.remove(id, flag(q, "force")).await?;
            Ok(empty(204))
        }
        _ => Err(ApiError::new(
            404,
            format!(
                "page not found: {method} containers/{id}/{}",
                rest.join("/")
            ),
        )),
    }
}

fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, ApiError> {
    use std::str::FromStr;
    let bad = || ApiError::bad(format!("invalid signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| bad())
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
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

/// Docker's multiplexed stream frame: stream type, three zero bytes, the
/// payload length big-endian, the payload.
pub fn frame(entry: &Entry, timestamps: bool) -> Bytes {
    let mut payload = Vec::new();
    if timestamps {
        payload.extend_from_slice(entry.time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(entry.log.as_bytes());
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(match entry.stream {
        Stream::Stdout => 1,
        Stream::Stderr => 2,
    });
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out.into()
}

fn logs(engine: &Arc<Engine>, id: &str, q: &HashMap<String, String>) -> ApiResult {
    let stdout = flag(q, "stdout");
    let stderr = flag(q, "stderr");
    if !stdout && !stderr {
        return Err(ApiError::bad(
            "you must choose at least one stream (stdout=1 and/or stderr=1)",
        ));
    }
    let tail = match q.get("tail").map(String::as_str) {
        None | Some("all") | Some("") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::bad(format!("tail={n:?} is not a number or \"all\"")))?,
        ),
    };
    let follow = flag(q, "follow");
    let timestamps = flag(q, "timestamps");
    let wanted = move |e: &Entry| match e.stream {
        Stream::Stdout => stdout,
        Stream::Stderr => stderr,
    };
    let (history, live, exits) = engine.logs(id, tail, follow)?;
    let mut head = Vec::new();
    for e in history.iter().filter(|e| wanted(e)) {
        head.extend_from_slice(&frame(e, timestamps));
    }
    let content_type = hyper::header::HeaderValue::from_static("application/vnd.docker.raw-stream");
    let (Some(mut live), Some(mut exits)) = (live, exits) else {
        let mut r = Response::new(full(head));
        r.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, content_type);
        return Ok(r);
    };
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(16);
    tokio::spawn(async move {
        if tx.send_data(head.into()).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                e = live.recv() => match e {
                    Ok(e) if wanted(&e) => if tx.send_data(frame(&e, timestamps)).await.is_err() { return },
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        warn!("a log follower fell {n} lines behind; they are skipped");
                    }
                    Err(_) => return,
                },
                _ = exits.changed() => {
                    // Drain what arrived with the exit, then end.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while let Ok(e) = live.try_recv() {
                        if wanted(&e) && tx.send_data(frame(&e, timestamps)).await.is_err() { return }
                    }
                    return;
                }
            }
        }
    });
    let mut r = Response::new(body.boxed());
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, content_type);
    Ok(r)
}

fn image_error(reference: &str, e: corral_image::Error) -> ApiError {
    match e {
        corral_image::Error::NotFound(_) => {
            ApiError::new(404, format!("No such image: {reference}"))
        }
        corral_image::Error::InUse(_) => ApiError::new(409, e.to_string()),
        other => ApiError::new(400, other.to_string()),
    }
}

async fn images_list(engine: &Arc<Engine>) -> ApiResult {
    let store = engine.images().clone();
    let images = tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(|e| ApiError::new(500, e.to_string()))?
        .map_err(|e| ApiError::new(500, e.to_string()))?;
    Ok(json_response(
        200,
        &Value::Array(images.iter().map(image_summary).collect()),
    ))
}

fn unix_time(rfc3339: Option<&str>) -> i64 {
    rfc3339
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn image_summary(image: &corral_image::Image) -> Value {
    let labels = image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default();
    json!({
        "Id": image.id,
        "ParentId": "",
        "RepoTags": image.names,
        "RepoDigests": [],
        "Created": unix_time(image.created.as_deref()),
        "Size": image.size,
        "VirtualSize": image.size,
        "SharedSize": -1,
        "Labels": labels,
        "Containers": -1,
    })
}

async fn images_load(engine: &Arc<Engine>, req: Request<Incoming>, quiet: bool) -> ApiResult {
    use std::io::Write;
    let dir = engine.config().data_root.join("uploads");
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::new(500, format!("{}: {e}", dir.display())))?;
    let file =
        tempfile::NamedTempFile::new_in(&dir).map_err(|e| ApiError::new(500, e.to_string()))?;
    let mut writer = std::io::BufWriter::new(file);
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad(format!("reading the uploaded archive: {e}")))?;
        if let Some(data) = frame.data_ref() {
            writer
                .write_all(data)
                .map_err(|e| ApiError::new(500, format!("spooling the upload: {e}")))?;
        }
    }
    let file = writer
        .into_inner()
        .map_err(|e| ApiError::new(500, e.to_string()))?;
    let store = engine.images().clone();
    let loaded = tokio::task::spawn_blocking(move || store.load(file.path()))
        .await
        .map_err(|e| ApiError::new(500, e.to_string()))?
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let mut out = String::new();
    for l in &loaded {
        let line = if l.names.is_empty() {
            format!("Loaded image ID: {}\n", l.id)
        } else {
            l.names
                .iter()
                .map(|n| format!("Loaded image: {n}\n"))
                .collect()
        };
        if !quiet {
            out.push_str(&json!({ "stream": line }).to_string());
            out.push('\n');
        }
    }
    let mut r = Response::new(full(out));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn images_remove(engine: &Arc<Engine>, reference: &str) -> ApiResult {
    let store = engine.images().clone();
    let e2 = engine.clone();
    let r = reference.to_owned();
    let removed =
        tokio::task::spawn_blocking(move || store.remove(&r, &|img| e2.image_in_use(&img.id)))
            .await
            .map_err(|e| ApiError::new(500, e.to_string()))?
            .map_err(|e| image_error(reference, e))?;
    let list: Vec<Value> = removed
        .iter()
        .map(|r| match r {
            corral_image::Removed::Untagged(n) => json!({ "Untagged": n }),
            corral_image::Removed::Deleted(id) => json!({ "Deleted": id }),
        })
        .collect();
    Ok(json_response(200, &Value::Array(list)))
}

fn version() -> Value {
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    json!({
        "Platform": { "Name": "Corral" },
        "Components": [{ "Name": "Engine", "Version": env!("CARGO_PKG_VERSION"), "Details": { "ApiVersion": API_VERSION } }],
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": kernel,
        "BuildTime": "",
    })
}

fn info(engine: &Arc<Engine>) -> Value {
    let list = engine.list();
    let running = list
        .iter()
        .filter(|s| s.record.state.status == Status::Running)
        .count();
    let images = engine.images().list().map(|l| l.len()).unwrap_or(0);
    let uname = nix::sys::utsname::uname().ok();
    let (kernel, host) = uname
        .as_ref()
        .map(|u| {
            (
                u.release().to_string_lossy().into_owned(),
                u.nodename().to_string_lossy().into_owned(),
            )
        })
        .unwrap_or_default();
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<u64>().ok())
                })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    let cfg = engine.config();
    json!({
        "ID": format!("corral-{}", cfg.role),
        "Containers": list.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": list.len() - running,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [],
        "DockerRootDir": cfg.data_root,
        "KernelVersion": kernel,
        "OperatingSystem": "Corral",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total,
        "Name": host,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2",
        "LoggingDriver": "json-file",
        "SecurityOptions": ["name=seccomp,profile=default", "name=cgroupns"],
        "Labels": [format!("io.corral.role={}", cfg.role)],
    })
}

fn human_ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

fn since(t: Option<&str>) -> Option<Duration> {
    let t = humantime::parse_rfc3339_weak(t?).ok()?;
    SystemTime::now().duration_since(t).ok()
}

/// Docker's human status line: "Up 5 minutes", "Exited (0) 3 seconds ago".
pub fn status_line(s: &crate::state::RunState) -> String {
    match s.status {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}",
            human_ago(since(s.started_at.as_deref()).unwrap_or_default())
        ),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code.unwrap_or(0),
            human_ago(since(s.finished_at.as_deref()).unwrap_or_default())
        ),
        Status::Exited => format!(
            "Exited ({}){} {} ago",
            s.exit_code.unwrap_or(0),
            if s.oom_killed { " OOM killed" } else { "" },
            human_ago(since(s.finished_at.as_deref()).unwrap_or_default())
        ),
    }
}

fn command_line(snap: &Snapshot) -> String {
    let image = crate::spec::argv(&snap.record.def, &oci_spec::image::Config::default());
    if image.is_empty() {
        String::new()
    } else {
        image.join(" ")
    }
}

fn network_mode(def: &ServiceDef) -> &'static str {
    if def
        .host_namespaces
        .iter()
        .flatten()
        .any(|n| *n == HostNamespace::Net)
    {
        "host"
    } else {
        "none"
    }
}

fn container_summary(snap: &Snapshot) -> Value {
    let r = &snap.record;
    json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": r.image,
        "ImageID": r.image_id,
        "Command": command_line(snap),
        "Created": unix_time(Some(&r.created)),
        "State": r.state.status.as_str(),
        "Status": status_line(&r.state),
        "Ports": [],
        "Labels": { "io.corral.service": if r.service { "true" } else { "false" } },
        "HostConfig": { "NetworkMode": network_mode(&r.def) },
        "NetworkSettings": { "Networks": {} },
        "Mounts": [],
    })
}

/// `key: reason` lines as a JSON object.
fn reasons_json(text: Option<&str>) -> Value {
    let map: serde_json::Map<String, Value> = text
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    Value::Object(map)
}

fn inspect(snap: &Snapshot, reasons: Option<&str>) -> Value {
    let r = &snap.record;
    let process = snap.spec.as_ref().and_then(|s| s.process().clone());
    let args = process
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    let env = process
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    let caps: Vec<String> = process
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .and_then(|c| c.bounding().clone())
        .map(|b| {
            let mut v: Vec<String> = b.iter().map(|c| c.to_string()).collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    let res = r.def.resources.clone().unwrap_or_default();
    let restart = match r.def.restart() {
        Restart::Always => "always",
        Restart::OnFailure => "on-failure",
        Restart::No => "no",
    };
    let def_json = serde_json::to_value(&r.def).unwrap_or(Value::Null);
    json!({
        "Id": r.id,
        "Created": r.created,
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.get(1..).unwrap_or_default(),
        "State": {
            "Status": r.state.status.as_str(),
            "Running": r.state.status == Status::Running,
            "Paused": false,
            "Restarting": r.state.status == Status::Restarting,
            "OOMKilled": r.state.oom_killed,
            "Dead": false,
            "Pid": r.state.pid.unwrap_or(0),
            "ExitCode": r.state.exit_code.unwrap_or(0),
            "Error": r.state.error,
            "StartedAt": r.state.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": r.state.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "Image": r.image_id,
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {
            "Binds": r.def.binds.iter().flatten().map(|b| String::from(b.clone())).collect::<Vec<_>>(),
            "NetworkMode": network_mode(&r.def),
            "PidMode": if r.def.host_namespaces.iter().flatten().any(|n| *n == HostNamespace::Pid) { "host" } else { "" },
            "IpcMode": if r.def.host_namespaces.iter().flatten().any(|n| *n == HostNamespace::Ipc) { "host" } else { "private" },
            "UTSMode": if r.def.host_namespaces.iter().flatten().any(|n| *n == HostNamespace::Uts) { "host" } else { "" },
            "RestartPolicy": { "Name": restart, "MaximumRetryCount": if r.def.restart() == Restart::OnFailure { r.def.max_retries() } else { 0 } },
            "Privileged": r.def.privileged.unwrap_or(false),
            "ReadonlyRootfs": r.def.readonly_rootfs.unwrap_or(false),
            "Init": r.def.init.unwrap_or(false),
            "CapAdd": r.def.cap_add.iter().flatten().map(|c| c.as_str()).collect::<Vec<_>>(),
            "CapDrop": r.def.cap_drop.iter().flatten().map(|c| c.as_str()).collect::<Vec<_>>(),
            "Memory": res.memory.map(|m| m.get()).unwrap_or(0),
            "PidsLimit": res.pids.unwrap_or(0),
            "NanoCpus": res.cpus.map(|c| (c.get() * 1e9) as i64).unwrap_or(0),
            "BlkioWeight": res.io_weight.unwrap_or(0),
            "SecurityOpt": if r.def.seccomp == Some(false) { vec!["seccomp=unconfined"] } else { vec![] },
        },
        "Config": {
            "Hostname": snap.spec.as_ref().and_then(|s| s.hostname().clone()).unwrap_or_default(),
            "Env": env,
            "Cmd": r.def.command,
            "Entrypoint": r.def.entrypoint,
            "Image": r.image,
            "WorkingDir": process.as_ref().map(|p| p.cwd().to_string_lossy().into_owned()).unwrap_or_default(),
            "User": r.def.user.clone().unwrap_or_default(),
            "Labels": {},
        },
        "Corral": {
            "Service": r.service,
            "Definition": def_json,
            "Capabilities": caps,
            // Why the image's service definition grants what it does.
            "Reasons": reasons_json(reasons),
        },
        "Mounts": [],
        "NetworkSettings": { "Networks": {} },
    })
}

/// `Entrypoint` and `Cmd` may be a string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrOrVec {
    Str(String),
    Vec(Vec<String>),
}

impl StrOrVec {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrOrVec::Str(s) if s.is_empty() => Vec::new(),
            StrOrVec::Str(s) => s.split_whitespace().map(str::to_owned).collect(),
            StrOrVec::Vec(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartPolicyBody {
    name: String,
    maximum_retry_count: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeviceBody {
    path_on_host: String,
    path_in_container: String,
    cgroup_permissions: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfigBody {
    binds: Option<Vec<String>>,
    cap_add: Option<Vec<String>>,
    cap_drop: Option<Vec<String>>,
    privileged: bool,
    readonly_rootfs: bool,
    init: Option<bool>,
    memory: i64,
    pids_limit: Option<i64>,
    nano_cpus: i64,
    blkio_weight: u16,
    network_mode: String,
    pid_mode: String,
    ipc_mode: String,
    #[serde(rename = "UTSMode")]
    uts_mode: String,
    restart_policy: Option<RestartPolicyBody>,
    devices: Option<Vec<DeviceBody>>,
    security_opt: Option<Vec<String>>,
}

/// The subset of `POST /containers/create` the engine understands.
/// Unknown fields are ignored, as Docker clients send many.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    image: String,
    cmd: Option<StrOrVec>,
    entrypoint: Option<StrOrVec>,
    env: Option<Vec<String>>,
    working_dir: String,
    user: String,
    hostname: String,
    tty: bool,
    open_stdin: bool,
    host_config: Option<HostConfigBody>,
}

fn field<T, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::bad(format!("{name}: {e}")))
}

impl CreateBody {
    fn into_def(self) -> Result<ServiceDef, ApiError> {
        if self.image.is_empty() {
            return Err(ApiError::bad("Image: an image is required"));
        }
        if self.tty || self.open_stdin {
            return Err(ApiError::bad(
                "Tty/OpenStdin: interactive containers are not supported by this engine yet",
            ));
        }
        let mut def = ServiceDef {
            image: Some(self.image),
            restart: Some(Restart::No),
            ..Default::default()
        };
        def.command = self.cmd.map(StrOrVec::into_vec);
        def.entrypoint = self
            .entrypoint
            .map(StrOrVec::into_vec)
            .filter(|e| !e.is_empty());
        if let Some(env) = self.env {
            let mut map = std::collections::BTreeMap::new();
            for kv in env {
                let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
                if k.is_empty() {
                    return Err(ApiError::bad(format!("Env: {kv:?} has no variable name")));
                }
                map.insert(k.to_owned(), v.to_owned());
            }
            def.env = Some(map);
        }
        if !self.working_dir.is_empty() {
            if !self.working_dir.starts_with('/') {
                return Err(ApiError::bad(format!(
                    "WorkingDir: {:?} must be an absolute path",
                    self.working_dir
                )));
            }
            def.working_dir = Some(self.working_dir);
        }
        if !self.user.is_empty() {
            def.user = Some(self.user);
        }
        if !self.hostname.is_empty() {
            field(
                "Hostname",
                corral_config::Hostname::try_from(self.hostname.clone()),
            )?;
            def.hostname = Some(self.hostname);
        }
        let Some(h) = self.host_config else {
            return Ok(def);
        };
        if let Some(binds) = h.binds {
            def.binds = Some(
                binds
                    .into_iter()
                    .map(|b| field("HostConfig.Binds", Bind::try_from(b)))
                    .collect::<Result<_, _>>()?,
            );
        }
        let caps = |name: &str, v: Option<Vec<String>>| -> Result<Option<Vec<CapName>>, ApiError> {
            v.map(|v| {
                v.into_iter()
                    .map(|c| field(name, CapName::try_from(c)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
        };
        def.cap_add = caps("HostConfig.CapAdd", h.cap_add)?;
        def.cap_drop = caps("HostConfig.CapDrop", h.cap_drop)?;
        def.privileged = h.privileged.then_some(true);
        def.readonly_rootfs = h.readonly_rootfs.then_some(true);
        def.init = h.init;
        let mut res = Resources::default();
        if h.memory < 0 {
            return Err(ApiError::bad("HostConfig.Memory: must not be negative"));
        }
        if h.memory > 0 {
            if h.memory < 6 << 20 {
                return Err(ApiError::bad(
                    "HostConfig.Memory: minimum memory limit allowed is 6MB",
                ));
            }
            res.memory = Some(ByteSize::bytes(h.memory as u64));
        }
        if let Some(p) = h.pids_limit.filter(|p| *p > 0) {
            res.pids = Some(
                u32::try_from(p).map_err(|_| ApiError::bad("HostConfig.PidsLimit: too large"))?,
            );
        }
        if h.nano_cpus < 0 {
            return Err(ApiError::bad("HostConfig.NanoCpus: must not be negative"));
        }
        if h.nano_cpus > 0 {
            res.cpus = Some(field(
                "HostConfig.NanoCpus",
                Cpus::try_from(h.nano_cpus as f64 / 1e9),
            )?);
        }
        if h.blkio_weight != 0 {
            if !(10..=1000).contains(&h.blkio_weight) {
                return Err(ApiError::bad("HostConfig.BlkioWeight: must be 10–1000"));
            }
            res.io_weight = Some(h.blkio_weight);
        }
        if res != Resources::default() {
            def.resources = Some(res);
        }
        let mut host_ns = Vec::new();
        for (name, value, ns) in [
            ("NetworkMode", &h.network_mode, HostNamespace::Net),
            ("PidMode", &h.pid_mode, HostNamespace::Pid),
            ("IpcMode", &h.ipc_mode, HostNamespace::Ipc),
            ("UTSMode", &h.uts_mode, HostNamespace::Uts),
        ] {
            match value.as_str() {
                "host" => host_ns.push(ns),
                "" | "default" | "private" | "none" | "bridge" | "shareable" => {}
                other => {
                    return Err(ApiError::bad(format!(
                        "HostConfig.{name}: {other:?} is not supported (use \"host\" or leave it unset)"
                    )))
                }
            }
        }
        if !host_ns.is_empty() {
            def.host_namespaces = Some(host_ns);
        }
        if let Some(rp) = h.restart_policy {
            def.restart = Some(match rp.name.as_str() {
                "" | "no" => Restart::No,
                "always" | "unless-stopped" => Restart::Always,
                "on-failure" => Restart::OnFailure,
                other => {
                    return Err(ApiError::bad(format!(
                        "HostConfig.RestartPolicy.Name: {other:?} is not one of no, always, unless-stopped, on-failure"
                    )))
                }
            });
            if rp.name == "on-failure" && rp.maximum_retry_count > 0 {
                def.max_retries = Some(rp.maximum_retry_count);
            }
        }
        if let Some(devices) = h.devices {
            let mut list = Vec::new();
            for d in devices {
                let container = if d.path_in_container.is_empty() {
                    d.path_on_host.clone()
                } else {
                    d.path_in_container
                };
                let perms = if d.cgroup_permissions.is_empty() {
                    "rwm".to_owned()
                } else {
                    d.cgroup_permissions
                };
                list.push(field(
                    "HostConfig.Devices",
                    Device::try_from(format!("{}:{container}:{perms}", d.path_on_host)),
                )?);
            }
            def.devices = Some(list);
        }
        for opt in h.security_opt.into_iter().flatten() {
            match opt.replace(':', "=").as_str() {
                "seccomp=unconfined" => def.seccomp = Some(false),
                "no-new-privileges" | "no-new-privileges=true" => {}
                other => {
                    return Err(ApiError::bad(format!(
                        "HostConfig.SecurityOpt: {other:?} is not supported"
                    )))
                }
            }
        }
        Ok(def)
    }
}

/// Serves on a listener from [`bind`] until the task is dropped.
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
        let engine = engine.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(engine.clone(), req));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                debug!("API connection: {e}");
            }
        });
    }
}

/// Binds the socket with mode 0600 from the start (no window in which
/// another user could connect), replacing a stale one.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = tokio::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    listener.map_err(|e| std::io::Error::new(e.kind(), format!("binding {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_become_an_object() {
        let v = reasons_json(Some(
            "cap-add.NET_ADMIN: sets addresses\nhost-namespaces.net: the host's links: all of them",
        ));
        assert_eq!(v["cap-add.NET_ADMIN"], "sets addresses");
        assert_eq!(v["host-namespaces.net"], "the host's links: all of them");
        assert_eq!(reasons_json(None), serde_json::json!({}));
    }

    use super::*;

    fn def(json: &str) -> Result<ServiceDef, ApiError> {
        serde_json::from_str::<CreateBody>(json).unwrap().into_def()
    }

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
    }

    #[test]
    fn create_body_maps_to_a_definition() {
        let def = def(r#"{
            "Image": "busybox", "Cmd": ["sh", "-c", "true"], "Entrypoint": null,
            "Env": ["A=1", "B=x=y"], "WorkingDir": "/tmp", "User": "nobody",
            "Labels": {"a": "b"}, "AttachStdout": true,
            "HostConfig": {
                "Binds": ["/data:/data:ro"], "CapAdd": ["NET_ADMIN"], "CapDrop": ["cap_mknod"],
                "Memory": 16777216, "PidsLimit": 32, "NanoCpus": 500000000, "BlkioWeight": 300,
                "NetworkMode": "host", "PidMode": "", "ReadonlyRootfs": true, "Init": true,
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                "SecurityOpt": ["seccomp=unconfined"]
            }
        }"#)
        .unwrap();
        assert_eq!(def.image.as_deref(), Some("busybox"));
        assert_eq!(def.command.as_deref().unwrap(), ["sh", "-c", "true"]);
        assert_eq!(def.env.as_ref().unwrap()["B"], "x=y");
        assert_eq!(def.user.as_deref(), Some("nobody"));
        assert!(def.binds.as_ref().unwrap()[0].readonly);
        assert_eq!(def.cap_drop.as_ref().unwrap()[0].as_str(), "MKNOD");
        let r = def.resources.as_ref().unwrap();
        assert_eq!(r.memory.unwrap().get(), 16 << 20);
        assert_eq!(r.pids, Some(32));
        assert_eq!(r.cpus.unwrap().get(), 0.5);
        assert_eq!(r.io_weight, Some(300));
        assert_eq!(
            def.host_namespaces.as_deref(),
            Some(&[HostNamespace::Net][..])
        );
        assert_eq!(def.restart, Some(Restart::OnFailure));
        assert_eq!(def.max_retries, Some(2));
        assert_eq!(def.seccomp, Some(false));
        assert_eq!(def.readonly_rootfs, Some(true));
        assert_eq!(def.init, Some(true));
    }

    #[test]
    fn create_body_defaults_never_restart() {
        let d = def(r#"{"Image": "busybox", "Entrypoint": "/bin/sh -c", "Cmd": "true"}"#).unwrap();
        assert_eq!(d.restart, Some(Restart::No));
        assert_eq!(d.entrypoint.as_deref().unwrap(), ["/bin/sh", "-c"]);
        assert_eq!(d.command.as_deref().unwrap(), ["true"]);
    }

    #[test]
    fn bad_create_bodies_name_the_field() {
        for (body, needle) in [
            (r#"{}"#, "Image: an image is required"),
            (
                r#"{"Image":"b","HostConfig":{"Binds":["rel:/x"]}}"#,
                "HostConfig.Binds",
            ),
            (
                r#"{"Image":"b","HostConfig":{"CapAdd":["NET_ADMN"]}}"#,
                "HostConfig.CapAdd: unknown capability",
            ),
            (
                r#"{"Image":"b","HostConfig":{"Memory":1024}}"#,
                "minimum memory",
            ),
            (
                r#"{"Image":"b","HostConfig":{"NetworkMode":"container:x"}}"#,
                "HostConfig.NetworkMode",
            ),
            (
                r#"{"Image":"b","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#,
                "RestartPolicy.Name",
            ),
            (r#"{"Image":"b","Env":["=x"]}"#, "Env:"),
            (r#"{"Image":"b","WorkingDir":"tmp"}"#, "WorkingDir"),
            (r#"{"Image":"b","Tty":true}"#, "interactive"),
            (
                r#"{"Image":"b","HostConfig":{"SecurityOpt":["apparmor=x"]}}"#,
                "SecurityOpt",
            ),
        ] {
            let e = def(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
        assert!(serde_json::from_str::<CreateBody>(r#"{"Image": 5}"#).is_err());
    }

    #[test]
    fn frames_are_docker_multiplexed() {
        let e = Entry {
            log: "hi\n".into(),
            stream: Stream::Stderr,
            time: "2026-11-24T00:00:00Z".into(),
        };
        assert_eq!(
            &frame(&e, false)[..],
            b"\x02\x00\x00\x00\x00\x00\x00\x03hi\n"
        );
        let f = frame(&e, true);
        assert_eq!(&f[8..], b"2026-11-24T00:00:00Z hi\n");
        assert_eq!(
            u32::from_be_bytes([f[4], f[5], f[6], f[7]]) as usize,
            f.len() - 8
        );
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn status_lines() {
        let mut s = crate::state::RunState::default();
        assert_eq!(status_line(&s), "Created");
        s.status = Status::Exited;
        s.exit_code = Some(137);
        s.oom_killed = true;
        s.finished_at = Some(
            humantime::format_rfc3339(SystemTime::now() - Duration::from_secs(125)).to_string(),
        );
        assert_eq!(status_line(&s), "Exited (137) OOM killed 2 minutes ago");
    }
}
