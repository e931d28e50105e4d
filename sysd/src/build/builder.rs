//! A build from start to end, as Docker's classic builder does it: each
//! stage on its base (`scratch`, an earlier stage, or an image, pulled
//! when missing or with `--pull`), each step committed as an image whose
//! parent is the step before, and the layer cache consulted first.
//!
//! The cache is keyed by what Docker's compares: the parent image, the
//! step's history text (which names a `RUN`'s build args), and for
//! `COPY`/`ADD` the hash of what is copied. A hit reuses the image that
//! step made before, so a rebuild with nothing changed runs no step.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::cache::{self, Cache};
use super::dockerfile::{self, Kind, Stage, Step};
use super::run::{self, RunStep};
use super::state::State;
use super::{context, words, BuildError};
use crate::engine::Engine;
use crate::registry::{self, Progress};

pub struct Options {
    /// The Dockerfile's path in the context.
    pub dockerfile: String,
    pub tags: Vec<String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub remove: bool,
    pub force_remove: bool,
    /// `--network` for `RUN`.
    pub network: String,
    pub build_args: BTreeMap<String, Option<String>>,
    pub labels: BTreeMap<String, String>,
    /// The client's logins (`X-Registry-Config`) by registry host, for
    /// the images `FROM` and `COPY --from` pull.
    pub logins: std::collections::HashMap<String, registry::Credentials>,
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Where a stage is in its build.
pub(super) struct Current {
    pub state: State,
    /// The image the last step made (None: `scratch`, nothing yet).
    pub image: Option<String>,
    pub has_layers: bool,
}

pub(super) struct Build<'a> {
    pub engine: &'a Arc<Engine>,
    pub context: &'a Path,
    opts: &'a Options,
    out: &'a Progress,
    cache: Cache,
    /// Images of the stages built so far, with their names (an empty id:
    /// a stage on scratch that made nothing).
    pub stages: Vec<(Option<String>, String)>,
    step: usize,
    total: usize,
    declared: BTreeSet<String>,
}

/// Builds the image of the Dockerfile in `context` (an unpacked
/// directory) and tags it; returns its id.
pub async fn build(
    engine: &Arc<Engine>,
    context: &Path,
    opts: &Options,
    out: &Progress,
) -> Result<String, BuildError> {
    let text = context::read_dockerfile(context, &opts.dockerfile)?;
    let file = dockerfile::parse(&text).map_err(|e| BuildError::new(e.to_string()))?;
    context::drop_build_files(context, &opts.dockerfile)?;
    let last = match &opts.target {
        Some(t) => file
            .stages
            .iter()
            .position(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(t)))
            .ok_or_else(|| {
                BuildError::new(format!("failed to reach build target {t} in Dockerfile"))
            })?,
        None => file.stages.len() - 1,
    };
    let stages = &file.stages[..=last];
    // `--label` is one more step, a LABEL at the end, as Docker adds it.
    let total = file.global_args.len()
        + stages.iter().map(|s| s.steps.len() + 1).sum::<usize>()
        + usize::from(!opts.labels.is_empty());
    let mut b = Build {
        engine,
        context,
        opts,
        out,
        cache: Cache {
            path: engine.config().data_root.join("build-cache.json"),
        },
        stages: Vec::new(),
        step: 0,
        total,
        declared: BTreeSet::new(),
    };
    let mut globals = State::new(None, BTreeMap::new(), file.escape).map_err(BuildError::new)?;
    for step in &file.global_args {
        b.announce(step.line, &step.text).await;
        globals
            .apply(&step.kind, &opts.build_args)
            .map_err(|e| at(step, e))?;
    }
    let global = globals.args().clone();
    b.declared.extend(global.keys().cloned());
    let mut final_image = None;
    for stage in stages {
        let image = b.stage(stage, &global, file.escape).await?;
        b.stages
            .push((stage.name.clone(), image.clone().unwrap_or_default()));
        final_image = image;
    }
    let mut id = final_image
        .ok_or_else(|| BuildError::new("No image was generated. Is your Dockerfile empty?"))?;
    if !opts.labels.is_empty() {
        id = b.label(&id).await?;
    }
    let unused = State::unconsumed(&opts.build_args, &b.declared);
    if !unused.is_empty() {
        out.send(json!({"stream": format!(
            "[Warning] One or more build-args [{}] were not consumed\n",
            unused.join(" ")
        )}))
        .await;
    }
    if out.gone() {
        return Err(super::cancelled());
    }
    out.send(json!({"aux": {"ID": id}})).await;
    out.send(json!({"stream": format!("Successfully built {}\n", short(&id))}))
        .await;
    for t in &opts.tags {
        let store = engine.images().clone();
        let (i, t2) = (id.clone(), t.clone());
        tokio::task::spawn_blocking(move || store.tag(&i, &t2))
            .await
            .map_err(|e| BuildError::new(e.to_string()))?
            .map_err(|e| BuildError::new(format!("tagging {t}: {e}")))?;
        // As Docker shows it: `app` is app:latest.
        let name = corral_image::reference::normalize(t).unwrap_or_else(|_| t.clone());
        let attrs = BTreeMap::from([("name".to_owned(), name.clone())]);
        engine.events().emit("image", "tag", &id, attrs);
        out.send(json!({"stream": format!("Successfully tagged {name}\n")}))
            .await;
    }
    Ok(id)
}

pub(super) fn at(step: &Step, message: impl std::fmt::Display) -> BuildError {
    BuildError::new(format!("Dockerfile line {}: {message}", step.line))
}

impl Build<'_> {
    async fn announce(&mut self, _line: usize, text: &str) {
        self.step += 1;
        self.out
            .send(json!({"stream": format!("Step {}/{} : {text}\n", self.step, self.total)}))
            .await;
    }

    pub(super) async fn shown(&self, id: &str) {
        self.out
            .send(json!({"stream": format!(" ---> {}\n", short(id))}))
            .await;
    }

    /// An image by reference: pulled when the store lacks it, or always
    /// with `--pull`.
    async fn image(&self, reference: &str) -> Result<String, BuildError> {
        let store = self.engine.images().clone();
        if !self.opts.pull {
            if let Ok(img) = store.get(reference) {
                return Ok(img.id);
            }
        }
        let login = registry::reference(reference)
            .ok()
            .and_then(|r| self.opts.logins.get(r.registry()).cloned());
        let plan = registry::pull::resolve(&self.engine.config().registries, reference, login)
            .await
            .map_err(|e| BuildError::new(e.to_string()))?;
        let loaded = registry::pull::fetch(plan, store, self.engine.blob_locks().clone(), self.out)
            .await
            .map_err(|e| BuildError::new(e.to_string()))?;
        Ok(loaded.id)
    }

    /// A stage or image named by `FROM` or `COPY --from`.
    pub(super) async fn base(&self, name: &str) -> Result<String, BuildError> {
        if let Some((_, id)) = self
            .stages
            .iter()
            .find(|(n, _)| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        {
            return Ok(id.clone());
        }
        self.image(name).await
    }

    async fn stage(
        &mut self,
        stage: &Stage,
        global: &BTreeMap<String, Option<String>>,
        escape: char,
    ) -> Result<Option<String>, BuildError> {
        self.announce(stage.line, &stage.text).await;
        let vars = State::global_vars(global);
        let base = words::expand(&stage.base, &vars, escape)
            .map_err(|e| BuildError::new(format!("Dockerfile line {}: FROM: {e}", stage.line)))?;
        let mut cur = if base.eq_ignore_ascii_case("scratch") {
            Current {
                state: State::new(None, global.clone(), escape).map_err(BuildError::new)?,
                image: None,
                has_layers: false,
            }
        } else {
            let id = self.base(&base).await?;
            self.shown(&id).await;
            let img = self
                .engine
                .images()
                .get(&id)
                .map_err(|e| BuildError::new(format!("{base}: {e}")))?;
            let config = self
                .engine
                .images()
                .config_bytes(&img)
                .map_err(|e| BuildError::new(format!("{base}: {e}")))?;
            Current {
                state: State::new(Some(&config), global.clone(), escape)
                    .map_err(|e| BuildError::new(format!("{base}: {e}")))?,
                image: Some(id),
                has_layers: !img.layers.is_empty(),
            }
        };
        // The base image's ONBUILD triggers run first, as steps of this
        // stage; errors point at its FROM.
        let triggers = cur.state.take_triggers();
        if !triggers.is_empty() {
            let n = triggers.len();
            let s = if n == 1 { "" } else { "s" };
            self.out
                .send(json!({"stream": format!("# Executing {n} build trigger{s}\n")}))
                .await;
        }
        for t in &triggers {
            let mut step = dockerfile::trigger_step(t, escape).map_err(|e| {
                BuildError::new(format!(
                    "Dockerfile line {}: {base}'s ONBUILD {}",
                    stage.line, e.message
                ))
            })?;
            step.line = stage.line;
            self.step(&mut cur, &step).await.map_err(|e| BuildError {
                message: format!("{} (ONBUILD trigger {t:?} of {base})", e.message),
                code: e.code,
            })?;
        }
        for step in &stage.steps {
            self.announce(step.line, &step.text).await;
            self.step(&mut cur, step).await?;
        }
        self.declared.extend(cur.state.declared().cloned());
        Ok(cur.image)
    }

    pub(super) fn cached(&self, key: &str) -> Option<String> {
        if self.opts.no_cache {
            return None;
        }
        let id = self.cache.get(key)?;
        self.engine.images().get(&id).ok().map(|i| i.id)
    }

    /// Takes the cached image as the stage's state.
    pub(super) async fn use_cache(&self, cur: &mut Current, id: String) -> Result<(), BuildError> {
        let img = self
            .engine
            .images()
            .get(&id)
            .map_err(|e| BuildError::new(e.to_string()))?;
        let config = self
            .engine
            .images()
            .config_bytes(&img)
            .map_err(|e| BuildError::new(e.to_string()))?;
        cur.state.image =
            serde_json::from_slice(&config).map_err(|e| BuildError::new(e.to_string()))?;
        cur.has_layers = !img.layers.is_empty();
        self.out
            .send(json!({"stream": " ---> Using cache\n"}))
            .await;
        self.shown(&id).await;
        cur.image = Some(id);
        Ok(())
    }

    /// Records the step in the config and commits it as an image.
    pub(super) async fn commit(
        &self,
        cur: &mut Current,
        key: &str,
        created_by: &str,
        layer: Option<String>,
    ) -> Result<(), BuildError> {
        cur.state
            .record(created_by, layer.as_deref(), &crate::engine::now());
        cur.has_layers |= layer.is_some();
        let bytes =
            serde_json::to_vec(&cur.state.image).map_err(|e| BuildError::new(e.to_string()))?;
        let store = self.engine.images().clone();
        let parent = cur.image.clone();
        let loaded =
            tokio::task::spawn_blocking(move || store.add_image(&bytes, parent.as_deref(), &[]))
                .await
                .map_err(|e| BuildError::new(e.to_string()))?
                .map_err(|e| BuildError::new(format!("committing the step: {e}")))?;
        let store = self.engine.images().clone();
        self.cache
            .put(key, &loaded.id, |id| store.get(id).is_ok())?;
        self.shown(&loaded.id).await;
        cur.image = Some(loaded.id);
        Ok(())
    }

    async fn step(&mut self, cur: &mut Current, step: &Step) -> Result<(), BuildError> {
        if self.out.gone() {
            return Err(super::cancelled());
        }
        let args = &self.opts.build_args;
        match &step.kind {
            Kind::Run(form) => {
                let argv = cur.state.argv(form);
                let created_by = cur.state.run_created_by(&argv, args);
                let key = cache::key(cur.image.as_deref(), &created_by, "");
                if let Some(id) = self.cached(&key) {
                    return self.use_cache(cur, id).await;
                }
                let image = self.image_for_run(cur, step).await?;
                let layer = run::run(
                    self.engine,
                    RunStep {
                        image: &image,
                        network: &self.opts.network,
                        argv,
                        env: cur.state.run_env(args),
                        remove: self.opts.remove,
                        force_remove: self.opts.force_remove,
                    },
                    self.out,
                )
                .await?;
                self.commit(cur, &key, &created_by, layer).await
            }
            Kind::Copy {
                add,
                sources,
                dest,
                from,
                chown,
            } => {
                self.copy(
                    cur,
                    step,
                    *add,
                    sources,
                    dest,
                    from.as_deref(),
                    chown.as_deref(),
                )
                .await
            }
            kind => {
                let applied = cur.state.apply(kind, args).map_err(|e| at(step, e))?;
                // The config the step leaves decides its image as much as
                // its text (an ENTRYPOINT drops a CMD only when this stage
                // set none), as Docker's cache compares configs.
                let key = cache::key(
                    cur.image.as_deref(),
                    &applied.created_by,
                    &cur.state.image["config"].to_string(),
                );
                if let Some(id) = self.cached(&key) {
                    return self.use_cache(cur, id).await;
                }
                let layer = match kind {
                    Kind::Workdir(_) => self.make_workdir(cur).await?,
                    _ => None,
                };
                self.commit(cur, &key, &applied.created_by, layer).await
            }
        }
    }

    /// `RUN` needs an image to make its container from, and a program
    /// in it.
    async fn image_for_run(&self, cur: &Current, step: &Step) -> Result<String, BuildError> {
        match (&cur.image, cur.has_layers) {
            (Some(id), true) => Ok(id.clone()),
            _ => Err(at(
                step,
                "RUN needs a program to run, and this stage (FROM scratch) has no files yet",
            )),
        }
    }

    /// Docker makes the `WORKDIR` when it is set, so later steps and the
    /// image's containers can start there.
    async fn make_workdir(&self, cur: &Current) -> Result<Option<String>, BuildError> {
        let dir = cur.state.image["config"]["WorkingDir"]
            .as_str()
            .unwrap_or("/")
            .to_owned();
        let image = cur.image.clone().unwrap_or_default();
        run::change(self.engine, &image, cur.has_layers, move |root| {
            if crate::archive::is_dir(root, &dir) {
                return Ok(());
            }
            root.mkdir_all(&dir, &std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map(|_| ())
                .map_err(|e| format!("WORKDIR {dir}: {e}"))
        })
        .await
    }

    /// `--label`s, on the final image (Docker adds them as a last
    /// `LABEL` step).
    async fn label(&mut self, id: &str) -> Result<String, BuildError> {
        let text = self
            .opts
            .labels
            .iter()
            .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
            .collect::<Vec<_>>()
            .join(" ");
        self.announce(0, &format!("LABEL {text}")).await;
        let store = self.engine.images();
        let img = store.get(id).map_err(|e| BuildError::new(e.to_string()))?;
        let config = store
            .config_bytes(&img)
            .map_err(|e| BuildError::new(e.to_string()))?;
        let mut cur = Current {
            state: State::new(Some(&config), BTreeMap::new(), '\\').map_err(BuildError::new)?,
            image: Some(id.to_owned()),
            has_layers: !img.layers.is_empty(),
        };
        let applied = cur
            .state
            .apply(&Kind::Label(text), &BTreeMap::new())
            .map_err(BuildError::new)?;
        let key = cache::key(
            Some(id),
            &applied.created_by,
            &cur.state.image["config"].to_string(),
        );
        if let Some(cached) = self.cached(&key) {
            return Ok(cached);
        }
        self.commit(&mut cur, &key, &applied.created_by, None)
            .await?;
        Ok(cur.image.unwrap_or_default())
    }
}

/// A word for `LABEL`, quoted so spaces, `=` and `$` stay in it as given.
fn quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "\\$");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_quoted_words() {
        assert_eq!(quote(r#"a "b" c"#), r#""a \"b\" c""#);
        // Read back by the lexer, the value is as given.
        let vars = words::Vars::from([("HOME".to_owned(), "/root".to_owned())]);
        let v = r#"costs $5 in "$HOME" \ here"#;
        assert_eq!(words::expand(&quote(v), &vars, '\\').unwrap(), v);
    }
}
