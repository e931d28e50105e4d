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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pathrs::Root;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::dockerfile::{self, Kind, Stage, Step};
use super::run::{self, RunStep};
use super::sources::{self, Placement};
use super::state::State;
use super::{words, BuildError};
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
}

/// One build cache for the engine: builds may run side by side.
static CACHE_LOCK: Mutex<()> = Mutex::new(());

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn cache_key(parent: Option<&str>, created_by: &str, extra: &str) -> String {
    let mut h = Sha256::new();
    h.update(parent.unwrap_or("scratch").as_bytes());
    h.update([0]);
    h.update(created_by.as_bytes());
    h.update([0]);
    h.update(extra.as_bytes());
    hex::encode(h.finalize())
}

struct Cache {
    path: PathBuf,
}

impl Cache {
    fn read(&self) -> BTreeMap<String, String> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn get(&self, key: &str) -> Option<String> {
        let _g = CACHE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        self.read().get(key).cloned()
    }

    /// Written whole to a new file and renamed over: a crash leaves the
    /// old cache or the new one.
    fn put(&self, key: &str, image: &str, live: impl Fn(&str) -> bool) -> Result<(), BuildError> {
        let _g = CACHE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = self.read();
        // Entries whose images are gone (removed, pruned) go with them.
        map.retain(|_, v| live(v));
        map.insert(key.to_owned(), image.to_owned());
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&map).map_err(|e| BuildError::new(e.to_string()))?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| BuildError::new(format!("{}: {e}", self.path.display())))
    }
}

/// Where a stage is in its build.
struct Current {
    state: State,
    /// The image the last step made (None: `scratch`, nothing yet).
    image: Option<String>,
    has_layers: bool,
}

struct Build<'a> {
    engine: &'a Arc<Engine>,
    context: &'a Path,
    opts: &'a Options,
    out: &'a Progress,
    cache: Cache,
    /// Images of the stages built so far, with their names.
    stages: Vec<(Option<String>, String)>,
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
    let text = read_dockerfile(context, &opts.dockerfile)?;
    let file = dockerfile::parse(&text).map_err(|e| BuildError::new(e.to_string()))?;
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
    let total = file.global_args.len() + stages.iter().map(|s| s.steps.len() + 1).sum::<usize>();
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
    out.send(json!({"aux": {"ID": id}})).await;
    out.send(json!({"stream": format!("Successfully built {}\n", short(&id))}))
        .await;
    for t in &opts.tags {
        let store = engine.images().clone();
        let (i, t2) = (id.clone(), t.clone());
        let name = tokio::task::spawn_blocking(move || store.tag(&i, &t2))
            .await
            .map_err(|e| BuildError::new(e.to_string()))?
            .map_err(|e| BuildError::new(format!("tagging {t}: {e}")))?;
        let attrs = BTreeMap::from([("name".to_owned(), name.clone())]);
        engine.events().emit("image", "tag", &id, attrs);
        out.send(json!({"stream": format!("Successfully tagged {t}\n")}))
            .await;
    }
    Ok(id)
}

/// The Dockerfile, read inside the context (a symlink there cannot point
/// out of it).
fn read_dockerfile(context: &Path, name: &str) -> Result<String, BuildError> {
    use std::io::Read;
    let missing = || BuildError::new(format!("Cannot locate specified Dockerfile: {name}"));
    let root = Root::open(context).map_err(|e| BuildError::new(e.to_string()))?;
    let handle = root.resolve(name).map_err(|_| missing())?;
    let mut f = handle
        .reopen(pathrs::flags::OpenFlags::O_RDONLY)
        .map_err(|_| missing())?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| BuildError::new(format!("reading the Dockerfile {name}: {e}")))?;
    Ok(text)
}

fn at(step: &Step, message: impl std::fmt::Display) -> BuildError {
    BuildError::new(format!("Dockerfile line {}: {message}", step.line))
}

impl Build<'_> {
    async fn announce(&mut self, _line: usize, text: &str) {
        self.step += 1;
        self.out
            .send(json!({"stream": format!("Step {}/{} : {text}\n", self.step, self.total)}))
            .await;
    }

    async fn shown(&self, id: &str) {
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
        let plan = registry::pull::resolve(&self.engine.config().registries, reference, None)
            .await
            .map_err(|e| BuildError::new(e.to_string()))?;
        let loaded = registry::pull::fetch(plan, store, self.engine.blob_locks().clone(), self.out)
            .await
            .map_err(|e| BuildError::new(e.to_string()))?;
        Ok(loaded.id)
    }

    /// A stage or image named by `FROM` or `COPY --from`.
    async fn base(&self, name: &str) -> Result<String, BuildError> {
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
        for step in &stage.steps {
            self.announce(step.line, &step.text).await;
            self.step(&mut cur, step).await?;
        }
        self.declared.extend(cur.state.declared().cloned());
        Ok(cur.image)
    }

    fn cached(&self, key: &str) -> Option<String> {
        if self.opts.no_cache {
            return None;
        }
        let id = self.cache.get(key)?;
        self.engine.images().get(&id).ok().map(|i| i.id)
    }

    /// Takes the cached image as the stage's state.
    async fn use_cache(&self, cur: &mut Current, id: String) -> Result<(), BuildError> {
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
    async fn commit(
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
        let args = &self.opts.build_args;
        match &step.kind {
            Kind::Run(form) => {
                let argv = cur.state.argv(form);
                let created_by = cur.state.run_created_by(&argv, args);
                let key = cache_key(cur.image.as_deref(), &created_by, "");
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
                let key = cache_key(cur.image.as_deref(), &applied.created_by, "");
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

    #[allow(clippy::too_many_arguments)]
    async fn copy(
        &mut self,
        cur: &mut Current,
        step: &Step,
        add: bool,
        srcs: &[String],
        dest: &str,
        from: Option<&str>,
        chown: Option<&str>,
    ) -> Result<(), BuildError> {
        let kw = if add { "ADD" } else { "COPY" };
        let vars = cur.state.vars();
        let esc = cur.state.escape();
        let ex = |t: &str| words::expand(t, &vars, esc).map_err(|e| at(step, e));
        let srcs: Vec<String> = srcs.iter().map(|s| ex(s)).collect::<Result<_, _>>()?;
        if add {
            if let Some(url) = srcs.iter().find(|s| s.contains("://")) {
                return Err(at(step, format!(
                    "ADD {url}: sources from URLs are not supported by this builder; fetch them with RUN (wget, curl)"
                )));
            }
        }
        let dest = ex(dest)?;
        let workdir = cur.state.image["config"]["WorkingDir"]
            .as_str()
            .unwrap_or("/")
            .to_owned();
        let dest_is_dir = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
        let abs = if dest.starts_with('/') {
            dest.clone()
        } else {
            format!("{}/{dest}", workdir.trim_end_matches('/'))
        };
        let abs = crate::archive::abs_path(&abs);
        let owner = match chown {
            Some(c) => {
                let c = ex(c)?;
                let layers = match &cur.image {
                    Some(id) => self
                        .engine
                        .images()
                        .get(id)
                        .map(|i| i.layers)
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                let (u, g, _) = crate::spec::resolve_user(&c, &layers)
                    .map_err(|e| at(step, format!("{kw} --chown: {e}")))?;
                Some((c, (u, g)))
            }
            None => None,
        };
        let tmp = self.engine.config().data_root.join("uploads");
        std::fs::create_dir_all(&tmp).map_err(|e| BuildError::new(e.to_string()))?;
        let collected = match from {
            None => {
                let (ctx, s, t) = (self.context.to_owned(), srcs.clone(), tmp.clone());
                tokio::task::spawn_blocking(move || {
                    let root = Root::open(&ctx).map_err(|e| e.to_string())?;
                    sources::collect(&root, Some(&ctx), &s, &t)
                })
                .await
                .map_err(|e| BuildError::new(e.to_string()))?
            }
            Some(f) => {
                let f = ex(f)?;
                let image = match f.parse::<usize>() {
                    Ok(i) if i < self.stages.len() => self.stages[i].1.clone(),
                    _ => self.base(&f).await?,
                };
                self.collect_from_image(&image, srcs.clone(), tmp.clone())
                    .await?
            }
        }
        .map_err(|e| at(step, e))?;
        if collected.items.len() > 1 && !dest_is_dir {
            return Err(at(step, format!(
                "When using {kw} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        let kind = match collected.items.as_slice() {
            [one] if !one.is_dir => "file",
            [_] => "dir",
            _ => "multi",
        };
        let chown_text = owner
            .as_ref()
            .map(|(c, _)| format!("--chown={c} "))
            .unwrap_or_default();
        let created_by = cur.state.nop(&format!(
            "{kw} {chown_text}{kind}:{} in {dest} ",
            collected.hash
        ));
        let from_text = from.unwrap_or("");
        let key = cache_key(cur.image.as_deref(), &created_by, from_text);
        if let Some(id) = self.cached(&key) {
            return self.use_cache(cur, id).await;
        }
        let image = cur.image.clone().unwrap_or_default();
        let mut collected = collected;
        let owner = owner.map(|(_, o)| o).unwrap_or((0, 0));
        let layer = run::change(self.engine, &image, cur.has_layers, move |root| {
            let at = Placement {
                dest: &abs,
                dest_is_dir,
                owner,
                add,
            };
            sources::place(root, &mut collected, &at, &tmp)
        })
        .await
        .map_err(|e| at(step, e))?;
        self.commit(cur, &key, &created_by, layer).await
    }

    /// `COPY --from`: the sources, read in a container of that image.
    async fn collect_from_image(
        &self,
        image: &str,
        srcs: Vec<String>,
        tmp: PathBuf,
    ) -> Result<Result<sources::Sources, String>, BuildError> {
        let def = corral_config::ServiceDef {
            image: Some(image.to_owned()),
            entrypoint: Some(Vec::new()),
            command: Some(vec!["/bin/true".into()]),
            ..Default::default()
        };
        let mut warnings = Vec::new();
        let id = self
            .engine
            .create(
                None,
                def,
                false,
                crate::state::ApiFields::default(),
                &mut warnings,
            )
            .map_err(|e| BuildError::new(e.to_string()))?;
        let r = self
            .engine
            .in_root(&id, None, move |root| {
                sources::collect(root, None, &srcs, &tmp)
            })
            .await
            .map_err(|e| BuildError::new(e.to_string()));
        if let Err(e) = self.engine.remove_with(&id, true, true).await {
            log::warn!("build: removing {id}: {e}");
        }
        r
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
        let key = cache_key(Some(id), &applied.created_by, "");
        if let Some(cached) = self.cached(&key) {
            return Ok(cached);
        }
        self.commit(&mut cur, &key, &applied.created_by, None)
            .await?;
        Ok(cur.image.unwrap_or_default())
    }
}

/// A word for `LABEL`, quoted so spaces and `=` stay in it.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_changes_with_each_input() {
        let a = cache_key(Some("sha256:1"), "/bin/sh -c make", "");
        assert_eq!(a, cache_key(Some("sha256:1"), "/bin/sh -c make", ""));
        assert_ne!(a, cache_key(Some("sha256:2"), "/bin/sh -c make", ""));
        assert_ne!(a, cache_key(Some("sha256:1"), "|1 V=2 /bin/sh -c make", ""));
        assert_ne!(a, cache_key(Some("sha256:1"), "/bin/sh -c make", "stage"));
        assert_ne!(a, cache_key(None, "/bin/sh -c make", ""));
    }

    #[test]
    fn the_cache_forgets_images_that_are_gone() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache {
            path: d.path().join("build-cache.json"),
        };
        c.put("k1", "sha256:a", |_| true).unwrap();
        c.put("k2", "sha256:b", |id| id != "sha256:a").unwrap();
        assert_eq!(c.get("k1"), None);
        assert_eq!(c.get("k2").as_deref(), Some("sha256:b"));
    }

    #[test]
    fn labels_are_quoted_words() {
        assert_eq!(quote(r#"a "b" c"#), r#""a \"b\" c""#);
    }
}
