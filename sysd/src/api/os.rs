//! `/corral/os/...`: the machine itself, system engine only.
//!
//! `GET /corral/os` says what runs and from where, the other slot's
//! version and the last upgrade with its outcome. `POST
//! /corral/os/upgrade?reboot=1` takes a signed bundle as the body (or
//! fetches it: `url=` an http(s) URL, `image=` an image holding it as
//! `/corral.bundle`) and
//! streams its steps like the install below; a refusal (not signed by a
//! trusted key, not a bundle, not an installed system) is a 400 before
//! anything is written. `POST /corral/os/rollback?reboot=1` makes the
//! other slot the default.
//!
//! `POST /corral/os/install` takes `{"device", "config", "config_origin",
//! "force"}`. Everything is checked first: a refusal (nothing written) is
//! a 400 with the reason, another install already running a 409. Then the
//! answer streams one JSON object a line, `{"status": "..."}` per step,
//! ending with `{"done": true}` or `{"error": "..."}`. The install runs
//! to its end even if the client goes away: stopping halfway is what the
//! write order guards against, not something to do on purpose.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::json;

use super::streams::ChannelBody;
use super::{flag, parse_query};
use super::{read_body, ApiError, ApiResult};
use crate::engine::Engine;
use crate::os::{install, slots, upgrade, OsError};

/// One install at a time.
static INSTALLING: Mutex<()> = Mutex::new(());

pub async fn route(engine: &Arc<Engine>, req: Request<Incoming>, rest: &[&str]) -> ApiResult {
    if !engine.config().role.manages_os {
        return Err(ApiError::new(
            404,
            "this engine does not manage the machine: use the system engine's socket (/run/corral/system.sock)",
        ));
    }
    match (req.method(), rest) {
        (&Method::POST, ["install"]) => install(req).await,
        (&Method::GET, []) => version().await,
        (&Method::POST, ["upgrade"]) => upgrade(req).await,
        (&Method::POST, ["rollback"]) => rollback(req).await,
        (m, _) => Err(super::no_route(m, "corral/os")),
    }
}

fn api_error(e: OsError) -> ApiError {
    match e {
        OsError::Refused(m) => ApiError::bad(m),
        OsError::Failed(m) => ApiError::internal(m),
    }
}

async fn install(req: Request<Incoming>) -> ApiResult {
    let body = read_body(req, 1 << 20).await?;
    let request: install::Request = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("not an install request: {e}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (planned_tx, planned) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let Ok(_guard) = INSTALLING.try_lock() else {
            let _ = planned_tx.send(Err(ApiError::new(409, "another install is running")));
            return;
        };
        let plan = match install::plan(&request) {
            Ok(p) => p,
            Err(e) => {
                let _ = planned_tx.send(Err(api_error(e)));
                return;
            }
        };
        let line = |v: serde_json::Value| Bytes::from(format!("{v}\n"));
        let _ = tx.blocking_send(line(json!({ "status": plan.summary })));
        let _ = planned_tx.send(Ok(()));
        let device = plan.device.clone();
        log::info!("installing Corral onto {device}");
        let mut say = |s: String| {
            log::info!("install: {s}");
            let _ = tx.blocking_send(line(json!({ "status": s })));
        };
        match plan.write(&mut say) {
            Ok(()) => {
                let _ = tx.blocking_send(line(json!({ "done": true })));
            }
            Err(e) => {
                log::error!("installing onto {device} failed: {e}");
                let _ = tx.blocking_send(line(json!({ "error": e.to_string() })));
            }
        }
    });
    match planned.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(ApiError::internal("the install ended without an answer")),
    }
    let mut r = Response::new(http_body_util::BodyExt::boxed(ChannelBody(rx)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Asks init for a clean reboot, a moment after the answer has gone out.
fn reboot_soon(why: String) {
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        log::info!("rebooting: {why}");
        if let Err(e) = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(1),
            nix::sys::signal::Signal::SIGTERM,
        ) {
            log::error!("asking init to reboot: {e}");
        }
    });
}

fn json_response(v: serde_json::Value) -> ApiResult {
    let mut r = Response::new(super::full(v.to_string()));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn version() -> ApiResult {
    let info = tokio::task::spawn_blocking(version_info)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    json_response(info)
}

fn version_info() -> serde_json::Value {
    let boot = crate::os::boot::BootInfo::current();
    let running = slots::running_release();
    let mut v = json!({
        "version": corral_disk::bundle::version_id(&running),
        "name": install::version(running.as_bytes()),
        "trial": boot.trial,
    });
    match slots::BootDisk::find(&boot) {
        Ok(disk) => {
            v["booted"] = json!(format!("slot {} of {}", disk.current, disk.dev));
            v["slot"] = json!(disk.current.letter());
            let other = disk.current.other();
            v["other"] = json!({
                "slot": other.letter(),
                "version": disk.release(other).ok().flatten()
                    .and_then(|r| corral_disk::bundle::version_id(&String::from_utf8_lossy(&r))),
            });
            match disk.env() {
                Ok(env) => {
                    v["default"] = json!(env.get(slots::DEFAULT));
                    v["pending_trial"] = json!(env.get(slots::TRIAL));
                    v["last_upgrade"] = json!(env.get(slots::UPGRADE));
                    v["outcome"] = json!(env.get(slots::OUTCOME));
                }
                Err(e) => v["error"] = json!(format!("reading grubenv: {e}")),
            }
        }
        Err(_) => {
            v["booted"] = json!(if boot.live {
                "live from the ISO"
            } else {
                "from a kernel and initramfs given to the boot loader (no slots)"
            });
        }
    }
    v
}

async fn upgrade(req: Request<Incoming>) -> ApiResult {
    let query = parse_query(req.uri().query());
    let reboot = flag(&query, "reboot");
    let limit = corral_disk::bundle::MAX_SIZE as usize;
    let fetched = match (query.get("image"), query.get("url")) {
        (Some(image), _) if !image.is_empty() => Some(Remote::Image(image.clone())),
        (_, Some(url)) if !url.is_empty() => Some(Remote::Url(url.clone())),
        _ => None,
    };
    let body = match fetched {
        // The bundle is fetched here, on the host's network, with the
        // machine's registry settings or CAs, once the system is known to
        // be upgradable.
        Some(remote) => {
            tokio::task::spawn_blocking(upgrade::preflight)
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .map_err(api_error)?;
            Bytes::from(remote.fetch().await?)
        }
        None => {
            if let Some(len) = req
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            {
                if let Some(msg) = upgrade::too_big(len) {
                    return Err(ApiError::new(413, msg));
                }
            }
            read_body(req, limit).await?
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (planned_tx, planned) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let Ok(_guard) = INSTALLING.try_lock() else {
            let _ = planned_tx.send(Err(ApiError::new(409, "an install or upgrade is running")));
            return;
        };
        let checked = match upgrade::check(&body) {
            Ok(c) => c,
            Err(e) => {
                let _ = planned_tx.send(Err(api_error(e)));
                return;
            }
        };
        let line = |v: serde_json::Value| Bytes::from(format!("{v}\n"));
        log::info!("upgrade: {}", checked.summary);
        let _ = tx.blocking_send(line(json!({ "status": checked.summary })));
        let _ = planned_tx.send(Ok(()));
        let version = checked.version().to_owned();
        let mut say = |s: String| {
            log::info!("upgrade: {s}");
            let _ = tx.blocking_send(line(json!({ "status": s })));
        };
        match checked.write(&mut say) {
            Ok(()) => {
                if reboot {
                    say(format!("rebooting into Corral {version} on trial"));
                }
                let _ = tx.blocking_send(line(json!({ "done": true })));
                if reboot {
                    // Back on the runtime: the reboot waits a moment so the
                    // last lines reach the client.
                    let handle = tokio::runtime::Handle::current();
                    handle.spawn(async move { reboot_soon(format!("upgrade to {version}")) });
                }
            }
            Err(e) => {
                log::error!("upgrade failed: {e}");
                let _ = tx.blocking_send(line(json!({ "error": e.to_string() })));
            }
        }
    });
    match planned.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(ApiError::internal("the upgrade ended without an answer")),
    }
    let mut r = Response::new(http_body_util::BodyExt::boxed(ChannelBody(rx)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Where the system engine fetches a bundle from.
enum Remote {
    /// An image holding it as `/corral.bundle`.
    Image(String),
    /// An http:// or https:// URL.
    Url(String),
}

impl Remote {
    async fn fetch(self) -> Result<Vec<u8>, ApiError> {
        let max = corral_disk::bundle::MAX_SIZE;
        match self {
            Remote::Image(image) => {
                log::info!("upgrade: pulling the bundle from {image}");
                crate::registry::file::read_file(
                    &upgrade::registry_settings(),
                    &image,
                    upgrade::IMAGE_BUNDLE_PATH,
                    max,
                )
                .await
                .map_err(|e| ApiError::new(e.status(), format!("{e}; nothing was written")))
            }
            Remote::Url(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ApiError::bad(format!(
                        "{url}: not an http:// or https:// URL"
                    )));
                }
                log::info!("upgrade: downloading the bundle from {url}");
                crate::os::fetch::download(&url, max)
                    .await
                    .map_err(api_error)
            }
        }
    }
}

async fn rollback(req: Request<Incoming>) -> ApiResult {
    let reboot = flag(&parse_query(req.uri().query()), "reboot");
    let done = tokio::task::spawn_blocking(|| {
        let _guard = INSTALLING
            .try_lock()
            .map_err(|_| ApiError::new(409, "an install or upgrade is running"))?;
        upgrade::rollback().map_err(api_error)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    log::warn!("rollback by hand: {done}");
    if reboot {
        reboot_soon("rollback by hand".into());
    }
    json_response(json!({ "message": done, "rebooting": reboot }))
}
