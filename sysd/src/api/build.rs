//! `POST /build`: the classic builder (see `crate::build`).
//!
//! The context arrives as a tar (plain or gzip, `docker build
//! --compress`), is spooled to the data root and unpacked there with the
//! same in-root extraction as `docker cp`, so no entry lands outside it.
//! `.dockerignore` was applied by the client. The answer is the JSON
//! stream the CLI prints (`Step 1/5 : FROM ...`); a failure ends it with
//! an `errorDetail` whose `code` is a failed `RUN`'s exit code, which the
//! CLI exits with.

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use serde_json::json;

use super::{flag, query_all, ApiError, ApiResult, Query};
use crate::build::builder::{self, Options};
use crate::build::context::Finished;
use crate::engine::Engine;

fn json_map(q: &Query, key: &str) -> Result<BTreeMap<String, Option<String>>, ApiError> {
    match q.get(key).filter(|s| !s.is_empty()) {
        None => Ok(BTreeMap::new()),
        Some(s) => serde_json::from_str(s)
            .map_err(|e| ApiError::bad(format!("{key}: not a JSON object of strings: {e}"))),
    }
}

fn options(req: &Request<Incoming>, q: &Query) -> Result<(Options, bool), ApiError> {
    if q.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::new(
            501,
            "remote build contexts (git and tarball URLs) are not supported by this engine: send the context",
        ));
    }
    if q.get("version").is_some_and(|v| v == "2") {
        return Err(ApiError::bad(
            "BuildKit builds (version=2) are not supported by this engine; it runs the classic builder (DOCKER_BUILDKIT=0)",
        ));
    }
    if let Some(p) = q.get("platform").filter(|p| !p.is_empty()) {
        if !matches!(p.as_str(), "linux/amd64" | "linux/x86_64" | "amd64") {
            return Err(ApiError::bad(format!(
                "platform {p} is not supported: this engine builds linux/amd64 images"
            )));
        }
    }
    let query = req.uri().query();
    let mut tags = Vec::new();
    for t in query_all(query, "t") {
        corral_image::reference::normalize(&t)
            .map_err(|e| ApiError::bad(format!("invalid tag {t:?}: {e}")))?;
        tags.push(t);
    }
    let labels = json_map(q, "labels")?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    let opts = Options {
        dockerfile: q
            .get("dockerfile")
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| "Dockerfile".into()),
        tags,
        target: q.get("target").filter(|t| !t.is_empty()).cloned(),
        no_cache: flag(q, "nocache"),
        pull: flag(q, "pull"),
        // Docker's default is rm=1; the CLI always sends it.
        remove: q.get("rm").is_none() || flag(q, "rm"),
        force_remove: flag(q, "forcerm"),
        network: q.get("networkmode").cloned().unwrap_or_default(),
        build_args: json_map(q, "buildargs")?,
        labels,
        logins: crate::registry::auth::from_config_header(
            req.headers()
                .get("X-Registry-Config")
                .and_then(|v| v.to_str().ok()),
        )
        .map_err(|e| ApiError::bad(e.to_string()))?,
    };
    Ok((opts, flag(q, "q")))
}

/// Unpacks the spooled context (a tar, plain or compressed with gzip,
/// bzip2 or xz) into `dir`.
fn unpack(mut file: std::fs::File, dir: &std::path::Path) -> Result<(), String> {
    // The spool's offset is at its end after writing.
    file.rewind().map_err(|e| e.to_string())?;
    let reader = crate::archive::decompressed(std::io::BufReader::new(file))
        .map_err(|e| format!("the build context: {e}"))?;
    let root = pathrs::Root::open(dir).map_err(|e| e.to_string())?;
    let opts = crate::archive::ExtractOptions {
        copy_uid_gid: false,
        no_overwrite_dir_non_dir: false,
    };
    crate::archive::extract(&root, "/", Finished::new(reader), opts)
        .map_err(|e| format!("the build context: {e}"))
}

/// `POST /build`.
pub async fn build(engine: &Arc<Engine>, req: Request<Incoming>, q: &Query) -> ApiResult {
    let (opts, quiet) = options(&req, q)?;
    let dir = engine.config().data_root.join("uploads");
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let spool = tempfile::tempfile_in(&dir).map_err(ApiError::internal)?;
    let mut writer = std::io::BufWriter::new(spool);
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad(format!("reading the build context: {e}")))?;
        if let Some(data) = frame.data_ref() {
            writer
                .write_all(data)
                .map_err(|e| ApiError::internal(format!("spooling the build context: {e}")))?;
        }
    }
    let spool = writer.into_inner().map_err(ApiError::internal)?;
    let context = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&dir)
        .map_err(ApiError::internal)?;
    let at = context.path().to_owned();
    tokio::task::spawn_blocking(move || unpack(spool, &at))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::bad)?;
    let engine = engine.clone();
    Ok(super::distribution::stream(move |progress| async move {
        let steps = if quiet {
            progress.muted()
        } else {
            progress.clone()
        };
        match builder::build(&engine, context.path(), &opts, &steps).await {
            Ok(id) if quiet => {
                // `--iidfile` reads the aux ID, quiet or not.
                progress.send(json!({ "aux": { "ID": id } })).await;
                progress.send(json!({ "stream": format!("{id}\n") })).await;
            }
            Ok(_) => {}
            Err(e) => {
                log::info!("docker build: {e}");
                let mut detail = json!({ "message": e.message });
                if let Some(code) = e.code {
                    detail["code"] = json!(code);
                }
                progress
                    .send(json!({ "errorDetail": detail, "error": e.message }))
                    .await;
            }
        }
        drop(context);
    }))
}
