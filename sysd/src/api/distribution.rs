//! Registries through the API: `POST /images/create` (`docker pull`, and
//! `docker run` after a 404), `POST /images/{name}/push` and `POST /auth`
//! (`docker login`). See `crate::registry` for the work itself.
//!
//! What fails before the first progress line (a bad reference, a
//! registry down, credentials refused, no such manifest) is an HTTP
//! error, as Docker's is, so the CLI prints it (and offers a login on a
//! 401); later failures end the JSON stream with an `error` line.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::Request;
use serde_json::json;

use super::{json_response, ApiError, ApiResult, Query};
use crate::engine::Engine;
use crate::registry::{self, auth, Progress};

fn registry_error(e: registry::Error) -> ApiError {
    ApiError::new(e.status(), e.to_string())
}

fn credentials<B>(req: &Request<B>) -> Result<Option<registry::Credentials>, ApiError> {
    let header = req
        .headers()
        .get("X-Registry-Auth")
        .and_then(|v| v.to_str().ok());
    auth::from_header(header).map_err(|e| ApiError::bad(e.to_string()))
}

/// A JSON stream answer fed by a task: `produce` gets the progress sink.
pub(super) fn stream<F, Fut>(produce: F) -> hyper::Response<super::Body>
where
    F: FnOnce(Progress) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use http_body_util::BodyExt;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(Progress::new(tx)));
    let mut r = hyper::Response::new(BodyExt::boxed(super::streams::ChannelBody(rx)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// `POST /images/create?fromImage=&tag=`.
pub async fn pull(engine: &Arc<Engine>, req: Request<Incoming>, q: &Query) -> ApiResult {
    if q.get("fromSrc").is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::new(
            501,
            "docker import (fromSrc) is not supported by this engine; use docker load",
        ));
    }
    if let Some(p) = q.get("platform").filter(|p| !p.is_empty()) {
        if !matches!(p.as_str(), "linux/amd64" | "linux/x86_64" | "amd64") {
            return Err(ApiError::bad(format!(
                "platform {p} is not supported: this engine runs linux/amd64 images"
            )));
        }
    }
    let from = q
        .get("fromImage")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::bad("fromImage is required"))?;
    let image = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(d) if d.starts_with("sha256:") => format!("{from}@{d}"),
        Some(t) => format!("{from}:{t}"),
        None => from.clone(),
    };
    let creds = credentials(&req)?;
    let plan = registry::pull::resolve(&engine.config().registries, &image, creds)
        .await
        .map_err(registry_error)?;
    let engine = engine.clone();
    Ok(stream(move |progress| async move {
        let shown = plan.shown().to_owned();
        let store = engine.images().clone();
        match registry::pull::fetch(plan, store, engine.blob_locks().clone(), &progress).await {
            Ok(loaded) => {
                let name = loaded.names.first().cloned().unwrap_or(loaded.id);
                let attrs = std::collections::BTreeMap::from([("name".to_owned(), name.clone())]);
                engine.events().emit("image", "pull", &name, attrs);
            }
            Err(e) => {
                log::warn!("docker pull {shown}: {e}");
                progress.error(&e.to_string()).await;
            }
        }
    }))
}

/// `POST /images/{name}/push?tag=`.
pub async fn push(
    engine: &Arc<Engine>,
    req: Request<Incoming>,
    name: &str,
    q: &Query,
) -> ApiResult {
    let image = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name.to_owned(),
    };
    engine.images().get(&image).map_err(|_| {
        ApiError::new(
            404,
            format!("An image does not exist locally with the tag: {name}"),
        )
    })?;
    let creds = credentials(&req)?;
    let engine = engine.clone();
    Ok(stream(move |progress| async move {
        let store = engine.images().clone();
        let settings = engine.config().registries.clone();
        match registry::push::push(&settings, store, &image, creds, &progress).await {
            Ok(pushed) => {
                let attrs = std::collections::BTreeMap::from([(
                    "name".to_owned(),
                    format!("{image}@{}", pushed.digest),
                )]);
                engine.events().emit("image", "push", &image, attrs);
            }
            Err(e) => {
                log::warn!("docker push {image}: {e}");
                progress.error(&e.to_string()).await;
            }
        }
    }))
}

/// `POST /auth`: checks the credentials with the registry; the client
/// keeps them and sends them with each pull and push.
pub async fn login(engine: &Arc<Engine>, req: Request<Incoming>) -> ApiResult {
    use http_body_util::BodyExt;
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad(format!("reading the request: {e}")))?
        .to_bytes();
    let config: auth::AuthConfig = super::parse_json(&body, "auth config")?;
    let creds = config
        .credentials()
        .map_err(|e| ApiError::bad(e.to_string()))?
        .unwrap_or(registry::Credentials::Anonymous);
    let server = if config.server_address.is_empty() {
        registry::DOCKER_HUB.to_owned()
    } else {
        registry::host_of(&config.server_address).to_owned()
    };
    // Docker Hub's key in the CLI's config is its v1 index URL.
    let server = match server.as_str() {
        "index.docker.io" | "registry-1.docker.io" => registry::DOCKER_HUB.to_owned(),
        _ => server,
    };
    auth::login(&engine.config().registries, &server, &creds)
        .await
        .map_err(registry_error)?;
    Ok(json_response(
        200,
        &json!({ "Status": "Login Succeeded", "IdentityToken": "" }),
    ))
}
