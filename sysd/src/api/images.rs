//! `/images/...`: list, inspect, history, load, save, tag, remove and
//! prune; pull and push are in `distribution`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use bollard_stubs::models::{
    ImageConfig, ImageDeleteResponseItem, ImageHistoryResponseItem, ImageInspect,
    ImageInspectRootFs, ImagePruneResponse, ImageSummary,
};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::json;

use super::{flag, json_response, parse_query, ApiError, ApiResult};
use crate::engine::Engine;

pub async fn route(engine: &Arc<Engine>, req: Request<Incoming>, rest: &[&str]) -> ApiResult {
    let q = parse_query(req.uri().query());
    match (req.method().clone(), rest) {
        (Method::GET, ["json"]) => list(engine, &q).await,
        (Method::POST, ["load"]) => load(engine, req, flag(&q, "quiet")).await,
        (Method::POST, ["prune"]) => prune(engine, &q).await,
        (Method::POST, [name @ .., "tag"]) if !name.is_empty() => tag(engine, &name.join("/"), &q),
        (Method::GET, [name @ .., "history"]) if !name.is_empty() => {
            let image = lookup(engine, &name.join("/"))?;
            Ok(json_response(200, &history(&image)))
        }
        (Method::GET, ["get"]) => save(engine, super::query_all(req.uri().query(), "names")).await,
        (Method::GET, [name @ .., "get"]) if !name.is_empty() => {
            save(engine, vec![name.join("/")]).await
        }
        (Method::POST, ["create"]) => super::distribution::pull(engine, req, &q).await,
        (Method::POST, [name @ .., "push"]) if !name.is_empty() => {
            super::distribution::push(engine, req, &name.join("/"), &q).await
        }
        (Method::GET, ["search"]) => Err(super::not_yet(req.method(), req.uri().path())),
        (Method::GET, [name @ .., "json"]) if !name.is_empty() => {
            let reference = name.join("/");
            let image = lookup(engine, &reference)?;
            let mut shown = inspect(&image);
            // What the OCI config model lacks (a build's HEALTHCHECK and
            // ONBUILD) is read from the config as stored.
            if let (Some(c), Ok(raw)) =
                (shown.config.as_mut(), engine.images().config_bytes(&image))
            {
                let v = serde_json::from_slice::<serde_json::Value>(&raw).unwrap_or_default();
                c.healthcheck = serde_json::from_value(v["config"]["Healthcheck"].clone()).ok();
                c.on_build = serde_json::from_value(v["config"]["OnBuild"].clone()).ok();
            }
            Ok(json_response(200, &shown))
        }
        (Method::DELETE, name) if !name.is_empty() => remove(engine, &name.join("/")).await,
        (m, _) => Err(super::no_route(&m, &format!("images/{}", rest.join("/")))),
    }
}

pub fn lookup(engine: &Engine, reference: &str) -> Result<corral_image::Image, ApiError> {
    engine
        .images()
        .get(reference)
        .map_err(|e| image_error(reference, e))
}

pub fn image_error(reference: &str, e: corral_image::Error) -> ApiError {
    match e {
        corral_image::Error::NotFound(_) => {
            ApiError::new(404, format!("No such image: {reference}"))
        }
        corral_image::Error::InUse(_) => ApiError::new(409, e.to_string()),
        corral_image::Error::InvalidReference(_) => ApiError::bad(e.to_string()),
        other => ApiError::bad(other.to_string()),
    }
}

/// Seconds since the epoch of an RFC 3339 time, 0 when unknown.
pub fn unix_time(rfc3339: Option<&str>) -> i64 {
    rfc3339
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn labels(image: &corral_image::Image) -> HashMap<String, String> {
    image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .map(|l| l.into_iter().collect())
        .unwrap_or_default()
}

pub(super) fn summary(image: &corral_image::Image) -> ImageSummary {
    ImageSummary {
        id: image.id.clone(),
        parent_id: String::new(),
        repo_tags: image.names.clone(),
        repo_digests: image.repo_digests.clone(),
        created: unix_time(image.created.as_deref()),
        size: image.size as i64,
        shared_size: -1,
        labels: labels(image),
        containers: -1,
        manifests: None,
        descriptor: None,
    }
}

pub fn inspect(image: &corral_image::Image) -> ImageInspect {
    let c = image.config.config().clone().unwrap_or_default();
    ImageInspect {
        id: Some(image.id.clone()),
        repo_tags: Some(image.names.clone()),
        repo_digests: Some(image.repo_digests.clone()),
        created: image.created.clone(),
        config: Some(ImageConfig {
            user: c.user().clone(),
            env: c.env().clone(),
            cmd: c.cmd().clone(),
            entrypoint: c.entrypoint().clone(),
            working_dir: c.working_dir().clone(),
            labels: Some(labels(image)),
            exposed_ports: c.exposed_ports().clone(),
            volumes: c.volumes().clone(),
            stop_signal: c.stop_signal().clone(),
            ..Default::default()
        }),
        architecture: Some(image.config.architecture().to_string()),
        os: Some(image.config.os().to_string()),
        size: Some(image.size as i64),
        root_fs: Some(ImageInspectRootFs {
            typ: "layers".into(),
            layers: Some(image.config.rootfs().diff_ids().clone()),
        }),
        ..Default::default()
    }
}

/// The images a build step made another from: Docker's intermediate
/// images, hidden by `docker images` (shown with `-a`) and never
/// dangling.
fn parents(images: &[corral_image::Image]) -> std::collections::HashSet<String> {
    images.iter().filter_map(|i| i.parent.clone()).collect()
}

/// Docker's `reference` filter: the pattern against `repo:tag`, then
/// against `repo` alone (`docker images app` lists every tag of app).
fn tag_matches(patterns: &[glob::Pattern], tag: &str) -> bool {
    let opts = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    // `host:5000/app` has no tag: its colon is the port's.
    let repo = match tag.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => r,
        _ => tag,
    };
    patterns
        .iter()
        .any(|p| p.matches_with(tag, opts) || p.matches_with(repo, opts))
}

const LIST_FILTERS: &[&str] = &["dangling", "reference", "label", "before", "since"];

/// `docker images [REPO[:TAG]] [-a] [--filter ...]`: Docker's filters,
/// `reference` matched as `path.Match` against `repo:tag` and then
/// `repo` (the tags shown are the matching ones), `dangling` (untagged),
/// `label`, `before` and `since` (an image, by creation time).
async fn list(engine: &Arc<Engine>, q: &super::Query) -> ApiResult {
    use super::containers::Filters;
    let f = Filters::parse(q.get("filters").map(String::as_str), LIST_FILTERS)?;
    let all = flag(q, "all");
    let store = engine.images().clone();
    let images = tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let parents = parents(&images);
    let created = |i: &corral_image::Image| unix_time(i.created.as_deref());
    let bound = |key: &str| -> Result<Option<i64>, ApiError> {
        match f.values(key) {
            [] => Ok(None),
            [one] => Ok(Some(created(&lookup(engine, one)?))),
            _ => Err(ApiError::bad(format!("filters: {key} takes one image"))),
        }
    };
    let (before, since) = (bound("before")?, bound("since")?);
    let mut patterns = Vec::new();
    for p in f.values("reference") {
        let pat = glob::Pattern::new(p)
            .map_err(|e| ApiError::bad(format!("filters: reference {p:?}: {e}")))?;
        patterns.push(pat);
    }
    let mut list = Vec::new();
    for i in &images {
        let dangling = i.names.is_empty();
        // Intermediate images of builds only with -a, and never as
        // dangling ones.
        if !all && dangling && parents.contains(&i.id) {
            continue;
        }
        if !f.matches("dangling", |d| match d {
            "true" | "1" => dangling && !parents.contains(&i.id),
            _ => !dangling,
        }) {
            continue;
        }
        let labels = labels(i);
        let label_ok = |l: &str| match l.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(l),
        };
        if !f.values("label").iter().all(|l| label_ok(l)) {
            continue;
        }
        if before.is_some_and(|b| created(i) >= b) || since.is_some_and(|s| created(i) <= s) {
            continue;
        }
        let mut summary = summary(i);
        if !patterns.is_empty() {
            summary.repo_tags.retain(|t| tag_matches(&patterns, t));
            if summary.repo_tags.is_empty() {
                continue;
            }
        }
        list.push(summary);
    }
    // Newest first, as Docker lists them.
    list.sort_by_key(|s| std::cmp::Reverse(s.created));
    Ok(json_response(200, &list))
}

/// `docker load`: the archive is spooled to the data root (it may be
/// large) and imported whole or not at all.
/// `quiet` only turns progress off (the CLI sets it whenever its output is
/// not a terminal); the "Loaded image" lines are always sent, as Docker's.
async fn load(engine: &Arc<Engine>, req: Request<Incoming>, _quiet: bool) -> ApiResult {
    use std::io::Write;
    let dir = engine.config().data_root.join("uploads");
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
    let file = tempfile::NamedTempFile::new_in(&dir).map_err(ApiError::internal)?;
    let mut writer = std::io::BufWriter::new(file);
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad(format!("reading the uploaded archive: {e}")))?;
        if let Some(data) = frame.data_ref() {
            writer
                .write_all(data)
                .map_err(|e| ApiError::internal(format!("spooling the upload: {e}")))?;
        }
    }
    let file = writer.into_inner().map_err(ApiError::internal)?;
    let store = engine.images().clone();
    let loaded = tokio::task::spawn_blocking(move || store.load(file.path()))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::bad(e.to_string()))?;
    // A JSON stream, rendered by the CLI only with this exact type.
    let mut out = String::new();
    for l in &loaded {
        let name = l.names.first().cloned().unwrap_or_else(|| l.id.clone());
        let attrs = std::collections::BTreeMap::from([("name".to_owned(), name.clone())]);
        engine.events().emit("image", "load", &name, attrs);
        let line = if l.names.is_empty() {
            format!("Loaded image ID: {}\n", l.id)
        } else {
            l.names
                .iter()
                .map(|n| format!("Loaded image: {n}\n"))
                .collect()
        };
        out.push_str(&json!({ "stream": line }).to_string());
        out.push('\n');
    }
    let mut r = hyper::Response::new(super::full(out));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn remove(engine: &Arc<Engine>, reference: &str) -> ApiResult {
    let store = engine.images().clone();
    let e2 = engine.clone();
    let r = reference.to_owned();
    let removed =
        tokio::task::spawn_blocking(move || store.remove(&r, &|img| e2.image_in_use(&img.id)))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| image_error(reference, e))?;
    Ok(json_response(200, &delete_items(engine, removed)))
}

/// What a removal did, announced as events and in the API's shape.
fn delete_items(
    engine: &Arc<Engine>,
    removed: Vec<corral_image::Removed>,
) -> Vec<ImageDeleteResponseItem> {
    removed
        .into_iter()
        .inspect(|r| {
            let (action, what) = match r {
                corral_image::Removed::Untagged(n) => ("untag", n),
                corral_image::Removed::Deleted(id) => ("delete", id),
            };
            let attrs = std::collections::BTreeMap::from([("name".to_owned(), what.clone())]);
            engine.events().emit("image", action, what, attrs);
        })
        .map(|r| match r {
            corral_image::Removed::Untagged(n) => ImageDeleteResponseItem {
                untagged: Some(n),
                deleted: None,
            },
            corral_image::Removed::Deleted(id) => ImageDeleteResponseItem {
                untagged: None,
                deleted: Some(id),
            },
        })
        .collect()
}

/// `docker tag SOURCE TARGET`: `repo` and `tag` name the new reference.
fn tag(engine: &Arc<Engine>, reference: &str, q: &super::Query) -> ApiResult {
    let repo = q
        .get("repo")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad("repository name (repo=) must have at least one component"))?;
    let name = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.clone(),
    };
    engine
        .images()
        .tag(reference, &name)
        .map_err(|e| image_error(reference, e))?;
    let name = corral_image::reference::normalize(&name).unwrap_or(name);
    let attrs = std::collections::BTreeMap::from([("name".to_owned(), name.clone())]);
    engine.events().emit("image", "tag", &name, attrs);
    Ok(super::empty(201))
}

/// `docker history`: the config's history, newest first, each step that
/// made a layer with that layer's size; the newest carries the image's
/// id and names, the others `<missing>` as for any image not built here.
pub fn history(image: &corral_image::Image) -> Vec<ImageHistoryResponseItem> {
    let sizes: Vec<i64> = image
        .layers
        .iter()
        .map(|l| corral_image::dir_size(l) as i64)
        .collect();
    let steps = image.config.history().clone().unwrap_or_default();
    let mut layer = 0;
    let mut out: Vec<ImageHistoryResponseItem> = if steps.is_empty() {
        // No history recorded: one step per layer.
        sizes
            .iter()
            .map(|s| ImageHistoryResponseItem {
                id: "<missing>".into(),
                created: unix_time(image.created.as_deref()),
                created_by: String::new(),
                tags: Vec::new(),
                size: *s,
                comment: String::new(),
            })
            .collect()
    } else {
        steps
            .iter()
            .map(|h| {
                let size = if h.empty_layer().unwrap_or(false) {
                    0
                } else {
                    layer += 1;
                    sizes.get(layer - 1).copied().unwrap_or(0)
                };
                ImageHistoryResponseItem {
                    id: "<missing>".into(),
                    created: unix_time(h.created().as_deref()),
                    created_by: h.created_by().clone().unwrap_or_default(),
                    tags: Vec::new(),
                    size,
                    comment: h.comment().clone().unwrap_or_default(),
                }
            })
            .collect()
    };
    out.reverse();
    if let Some(top) = out.first_mut() {
        top.id = image.id.clone();
        top.tags = image.names.clone();
    }
    out
}

/// `image prune`: images no container uses; only those without a name
/// unless the `dangling=false` filter (`-a`) asks for all.
async fn prune(engine: &Arc<Engine>, q: &super::Query) -> ApiResult {
    let mut known = super::containers::PRUNE_FILTERS.to_vec();
    known.push("dangling");
    let f = super::containers::Filters::parse(q.get("filters").map(String::as_str), &known)?;
    let all = f.has("dangling") && f.matches("dangling", |d| matches!(d, "0" | "false"));
    let store = engine.images().clone();
    let images = store.list().map_err(ApiError::internal)?;
    let layer_sizes = |imgs: &[corral_image::Image]| -> HashMap<std::path::PathBuf, u64> {
        imgs.iter()
            .flat_map(|i| i.layers.iter())
            .map(|l| (l.clone(), corral_image::dir_size(l)))
            .collect()
    };
    let before = layer_sizes(&images);
    let parents = parents(&images);
    let mut deleted = Vec::new();
    for image in &images {
        // An intermediate image goes with the last image built on it.
        if (!all && !image.names.is_empty())
            || parents.contains(&image.id)
            || engine.image_in_use(&image.id)
        {
            continue;
        }
        if super::containers::prune_spares(&f, image.created.as_deref(), &labels(image))? {
            continue;
        }
        let (s, e, id) = (store.clone(), engine.clone(), image.id.clone());
        let removed =
            tokio::task::spawn_blocking(move || s.remove(&id, &|img| e.image_in_use(&img.id)))
                .await
                .map_err(ApiError::internal)?;
        match removed {
            Ok(items) => deleted.extend(delete_items(engine, items)),
            Err(e) => log::debug!("image prune: {}: {e}", image.id),
        }
    }
    let after: std::collections::HashSet<_> = store
        .list()
        .map_err(ApiError::internal)?
        .into_iter()
        .flat_map(|i| i.layers)
        .collect();
    let reclaimed: u64 = before
        .iter()
        .filter(|(l, _)| !after.contains(*l))
        .map(|(_, s)| s)
        .sum();
    Ok(json_response(
        200,
        &ImagePruneResponse {
            images_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed as i64),
        },
    ))
}

/// `docker save`: the archive streams out as it is written. Whatever
/// stops it before its first byte (an image not there, one whose layer
/// archives were not kept) is an error answer, not a cut archive.
async fn save(engine: &Arc<Engine>, names: Vec<String>) -> ApiResult {
    if names.is_empty() {
        return Err(ApiError::bad("no image names given (names=)"));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let store = engine.images().clone();
    let shown = names.join(" ");
    tokio::task::spawn_blocking(move || {
        let mut out = FirstWrite {
            inner: super::streams::ChannelWriter(tx),
            started: Some(started_tx),
        };
        let result = store.save(&names, &mut out);
        match (result, out.started.take()) {
            (Err(e), Some(before)) => {
                let _ = before.send(Err(e));
            }
            (Err(e), None) => log::warn!("docker save {}: {e}", names.join(" ")),
            (Ok(()), Some(before)) => {
                let _ = before.send(Ok(()));
            }
            (Ok(()), None) => {}
        }
    });
    match started.await {
        Ok(Ok(())) => {}
        Ok(Err(corral_image::Error::NotFound(n))) => {
            return Err(image_error(&n.clone(), corral_image::Error::NotFound(n)))
        }
        Ok(Err(e)) => return Err(image_error(&shown, e)),
        Err(_) => return Err(ApiError::internal("docker save ended without an answer")),
    }
    let mut r = hyper::Response::new(BodyExt::boxed(super::streams::ChannelBody(rx)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-tar"),
    );
    Ok(r)
}

/// A writer that says when its first byte is written.
struct FirstWrite {
    inner: super::streams::ChannelWriter,
    started: Option<tokio::sync::oneshot::Sender<Result<(), corral_image::Error>>>,
}

impl std::io::Write for FirstWrite {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(s) = self.started.take() {
            let _ = s.send(Ok(()));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filters_match_tags_and_repositories() {
        let p = |s: &str| vec![glob::Pattern::new(s).unwrap()];
        assert!(tag_matches(&p("app"), "app:1"));
        assert!(tag_matches(&p("app:1"), "app:1"));
        assert!(!tag_matches(&p("app:2"), "app:1"));
        assert!(tag_matches(&p("a*"), "app:1"));
        // `*` stops at `/`, as Go's path.Match.
        assert!(!tag_matches(&p("*"), "10.0.2.2:5000/app:1"));
        assert!(tag_matches(&p("*/app"), "10.0.2.2:5000/app:1"));
        assert!(tag_matches(&p("10.0.2.2:5000/app"), "10.0.2.2:5000/app"));
    }
}
