//! `/corral/os/...`: the machine itself, system engine only.
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
use super::{read_body, ApiError, ApiResult};
use crate::engine::Engine;
use crate::os::{install, OsError};

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
