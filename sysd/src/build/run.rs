//! The steps that change files, done with the engine's own containers:
//! `RUN` in a started container of the image so far, `COPY`/`ADD` and
//! `WORKDIR`'s directory in a container never started; either way the
//! container's overlay upper directory is the step's layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_config::ServiceDef;
use pathrs::Root;
use serde_json::json;

use super::BuildError;
use crate::engine::Engine;
use crate::registry::Progress;
use crate::state::ApiFields;

/// What the runtime makes in a container for itself (mount points of
/// `/proc`, `/dev`, `/sys` and the files the engine binds over), left
/// out of a step's layer when they are only the empty mount points it
/// made. Docker keeps them in a separate "init" layer for the same
/// reason.
const RUNTIME_PATHS: &[&str] = &[
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "dev",
    "proc",
    "sys",
];

pub struct RunStep<'a> {
    pub image: &'a str,
    /// `docker build --network`: `default`, `bridge`, `none`, `host` or
    /// a user-defined network.
    pub network: &'a str,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Remove the container after a successful step (`--rm`, default).
    pub remove: bool,
    /// Remove it after a failed one too (`--force-rm`).
    pub force_remove: bool,
}

/// A step's network, as `docker run --network` takes it.
fn network(def: &mut ServiceDef, name: &str) -> ApiFields {
    use crate::network::{Endpoint, Mode, BRIDGE_NAME};
    let mut api = ApiFields::default();
    let endpoint = |name: &str| Endpoint {
        name: name.to_owned(),
        ..Default::default()
    };
    match name {
        "none" => api.network.mode = Mode::None,
        "host" => {
            def.host_namespaces = Some(vec![corral_config::service::HostNamespace::Net]);
            api.network.mode = Mode::Host;
        }
        "" | "default" | "bridge" => {
            api.network.mode = Mode::Bridge;
            api.network.endpoints = vec![endpoint(BRIDGE_NAME)];
        }
        other => {
            api.network.mode = Mode::Bridge;
            api.network.endpoints = vec![endpoint(other)];
        }
    }
    api
}

fn new_container(
    engine: &Arc<Engine>,
    mut def: ServiceDef,
    net: &str,
) -> Result<String, BuildError> {
    let mut warnings = Vec::new();
    let api = network(&mut def, net);
    engine
        .create(None, def, false, api, &mut warnings)
        .map_err(|e| BuildError::new(e.to_string()))
}

/// Runs the step, its output forwarded as `{"stream": ...}`; returns its
/// layer's diff id (None when it changed nothing).
pub async fn run(
    engine: &Arc<Engine>,
    step: RunStep<'_>,
    progress: &Progress,
) -> Result<Option<String>, BuildError> {
    let def = ServiceDef {
        image: Some(step.image.to_owned()),
        // The argv is the whole command (the shell form already has the
        // stage's shell in front): no entrypoint of the image's.
        entrypoint: Some(Vec::new()),
        command: Some(step.argv.clone()),
        env: Some(step.env.clone()),
        ..Default::default()
    };
    let id = new_container(engine, def, step.network)?;
    progress
        .send(json!({"stream": format!(" ---> Running in {}\n", &id[..12])}))
        .await;
    let result = run_in(engine, &id, &step, progress).await;
    // A cancelled step's container has nobody to look at it.
    let remove = match &result {
        Ok(_) => step.remove,
        Err(_) => step.force_remove || progress.gone(),
    };
    if remove {
        if result.is_ok() {
            progress
                .send(json!({"stream": format!("Removing intermediate container {}\n", &id[..12])}))
                .await;
        }
        if let Err(e) = engine.remove_with(&id, true, true).await {
            log::warn!("build: removing the step's container {id}: {e}");
        }
    }
    result
}

async fn run_in(
    engine: &Arc<Engine>,
    id: &str,
    step: &RunStep<'_>,
    progress: &Progress,
) -> Result<Option<String>, BuildError> {
    let (live, exits) = engine
        .subscribe(id)
        .map_err(|e| BuildError::new(e.to_string()))?;
    let mut follow = crate::api::streams::Follow::new(live, exits);
    engine
        .start(id)
        .await
        .map_err(|e| BuildError::new(e.to_string()))?;
    loop {
        tokio::select! {
            next = follow.next() => match next {
                Some((_, chunk)) => {
                    progress
                        .send(json!({"stream": String::from_utf8_lossy(&chunk)}))
                        .await
                }
                None => break,
            },
            // The client went away (Ctrl-C): the step is stopped, as
            // Docker cancels the build.
            () = progress.closed() => {
                if let Err(e) = engine.kill(id, nix::sys::signal::Signal::SIGKILL) {
                    log::warn!("build: killing the cancelled step {id}: {e}");
                }
                let _ = engine.wait(id, false).await;
                return Err(super::cancelled());
            }
        }
    }
    let code = engine
        .wait(id, false)
        .await
        .map_err(|e| BuildError::new(e.to_string()))?;
    if code != 0 {
        return Err(BuildError {
            message: format!(
                "The command '{}' returned a non-zero code: {code}",
                step.argv.join(" ")
            ),
            code: Some(code),
        });
    }
    commit_upper(engine, engine.data_dir(id).join("upper"), true).await
}

/// Changes the files of `image` with `f`, run on a thread of its own in
/// the root of a container that is never started (or, for an image with
/// no layers yet, an empty directory); returns the layer (None: nothing
/// changed).
pub async fn change<F>(
    engine: &Arc<Engine>,
    image: &str,
    has_layers: bool,
    f: F,
) -> Result<Option<String>, BuildError>
where
    F: FnOnce(&Root) -> Result<(), String> + Send + 'static,
{
    if !has_layers {
        let tmp = uploads(engine)?;
        let dir = tempfile::tempdir_in(&tmp).map_err(|e| BuildError::new(e.to_string()))?;
        let path = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let root = Root::open(&path).map_err(|e| e.to_string())?;
            f(&root)
        })
        .await
        .map_err(|e| BuildError::new(e.to_string()))?
        .map_err(BuildError::new)?;
        let r = commit_upper(engine, dir.path().to_owned(), false).await;
        drop(dir);
        return r;
    }
    let def = ServiceDef {
        image: Some(image.to_owned()),
        entrypoint: Some(Vec::new()),
        command: Some(vec!["/bin/true".into()]),
        ..Default::default()
    };
    // Never started: no network to join.
    let id = new_container(engine, def, "none")?;
    let result = async {
        engine
            .in_layers(&id, f)
            .await
            .map_err(|e| BuildError::new(e.to_string()))?
            .map_err(BuildError::new)?;
        commit_upper(engine, engine.data_dir(&id).join("upper"), false).await
    }
    .await;
    if let Err(e) = engine.remove_with(&id, true, true).await {
        log::warn!("build: removing the step's container {id}: {e}");
    }
    result
}

fn uploads(engine: &Engine) -> Result<PathBuf, BuildError> {
    let tmp = engine.config().data_root.join("uploads");
    std::fs::create_dir_all(&tmp)
        .map_err(|e| BuildError::new(format!("{}: {e}", tmp.display())))?;
    Ok(tmp)
}

/// The upper directory as a layer in the store.
async fn commit_upper(
    engine: &Arc<Engine>,
    upper: PathBuf,
    ran: bool,
) -> Result<Option<String>, BuildError> {
    let store = engine.images().clone();
    let tmp = uploads(engine)?;
    tokio::task::spawn_blocking(move || -> Result<Option<String>, String> {
        let exclude: Vec<&str> = if ran {
            RUNTIME_PATHS
                .iter()
                .copied()
                .filter(|p| is_empty_mount_point(&upper.join(p)))
                .collect()
        } else {
            Vec::new()
        };
        if changed(&upper, &exclude).is_none() {
            return Ok(None);
        }
        let file = tempfile::NamedTempFile::new_in(&tmp).map_err(|e| e.to_string())?;
        {
            let mut w = std::io::BufWriter::new(file.as_file());
            corral_image::diff_tar(&upper, &mut w, &exclude)
                .and_then(|()| std::io::Write::flush(&mut w))
                .map_err(|e| format!("writing the step's layer: {e}"))?;
        }
        store
            .import_layer(file.path())
            .map(Some)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| BuildError::new(e.to_string()))?
    .map_err(BuildError::new)
}

/// Some entry of `upper` that is not excluded (nor only a directory on
/// the way to an excluded one).
fn changed(upper: &Path, exclude: &[&str]) -> Option<PathBuf> {
    let rd = std::fs::read_dir(upper).ok()?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if exclude.contains(&name.as_str()) {
            continue;
        }
        let below: Vec<&str> = exclude
            .iter()
            .filter_map(|x| x.strip_prefix(&format!("{name}/")))
            .collect();
        if below.is_empty() || !e.file_type().is_ok_and(|t| t.is_dir()) {
            return Some(e.path());
        }
        if changed(&e.path(), &below).is_some() {
            return Some(e.path());
        }
    }
    None
}

/// An empty file or directory: what the runtime made to mount over.
fn is_empty_mount_point(p: &Path) -> bool {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_file() => m.len() == 0,
        Ok(m) if m.is_dir() => std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_that_only_made_mount_points_changed_nothing() {
        let d = tempfile::tempdir().unwrap();
        let u = d.path();
        std::fs::create_dir_all(u.join("etc")).unwrap();
        std::fs::create_dir_all(u.join("proc")).unwrap();
        std::fs::write(u.join("etc/hosts"), "").unwrap();
        let ex = ["etc/hosts", "proc"];
        assert_eq!(changed(u, &ex), None);
        std::fs::write(u.join("etc/motd"), "hi").unwrap();
        assert_eq!(changed(u, &ex), Some(u.join("etc")));
        assert!(is_empty_mount_point(&u.join("etc/hosts")));
        assert!(!is_empty_mount_point(&u.join("etc/motd")));
    }
}
