//! Corral's own endpoints: the saved system config and changes to it
//! (`corral config set/unset/edit`). Only the system engine manages the
//! config; elsewhere they are 404 with where to go instead.

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response};

use super::{full, json_response, read_body, ApiError, ApiResult};
use crate::sysconfig::{self, Change, ChangeError, Manager};

fn manager() -> Result<&'static Manager, ApiError> {
    sysconfig::manager().ok_or_else(|| {
        ApiError::new(
            404,
            "this engine does not manage the system config: use the system engine's socket (/run/corral/system.sock)",
        )
    })
}

/// `/corral/config/...`
pub async fn route(req: Request<Incoming>, rest: &[&str]) -> ApiResult {
    match (req.method(), rest) {
        (&Method::GET, ["saved"]) => {
            manager()?;
            let text = sysconfig::saved_text().map_err(ApiError::internal)?;
            let mut r = Response::new(full(text));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/toml"),
            );
            Ok(r)
        }
        (&Method::POST, []) => {
            let manager = manager()?;
            let body = read_body(req, 1 << 20).await?;
            let change: Change = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad(format!("not a config change: {e}")))?;
            // Its own task: a client that goes away (Ctrl-C, or a console
            // shell the change itself restarts) must not cut the change
            // short between the saved file and the live system.
            let done = tokio::spawn(manager.change(change))
                .await
                .map_err(|e| ApiError::internal(format!("the config change failed: {e}")))?;
            match done {
                Ok(report) => Ok(json_response(200, &report)),
                Err(e @ ChangeError::Invalid(_)) => Err(ApiError::bad(e.to_string())),
                Err(e @ ChangeError::Conflict(_)) => Err(ApiError::new(409, e.to_string())),
                Err(e @ ChangeError::Io(_)) => Err(ApiError::internal(e)),
            }
        }
        (m, _) => Err(super::no_route(m, "corral/config")),
    }
}
