//! `COPY` and `ADD` as steps of a build: their words expanded, the
//! owner of `--chown` looked up in the image so far, the sources picked
//! from the context or from a stage or image (`--from`) and hashed for
//! the cache, and on a miss placed in a container of the image (see
//! [`super::sources`]).

use std::path::PathBuf;

use pathrs::Root;

use super::builder::{at, Build, Current};
use super::dockerfile::Step;
use super::sources::{self, Placement};
use super::{cache, run, words, BuildError};

impl Build<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn copy(
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
                // Docker: a user without a group is also the group's name
                // or id (`--chown=1000` is 1000:1000).
                let c = if c.contains(':') {
                    c
                } else {
                    format!("{c}:{c}")
                };
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
                    sources::collect(&root, &s, &t)
                })
                .await
                .map_err(|e| BuildError::new(e.to_string()))?
            }
            Some(f) => {
                let f = ex(f)?;
                let image = match f.parse::<usize>() {
                    Ok(i) if i < self.stages.len() => self.stages[i].1.clone(),
                    Ok(i) => {
                        return Err(at(step, format!(
                            "{kw} --from={i}: there is no stage {i} before this one (stages count from 0)"
                        )))
                    }
                    Err(_) => self.base(&f).await?,
                };
                if image.is_empty() {
                    return Err(at(step, format!(
                        "{kw} --from={f}: that stage has no files (FROM scratch and no step that adds any)"
                    )));
                }
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
        let key = cache::key(cur.image.as_deref(), &created_by, from_text);
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
            .in_layers(&id, move |root| sources::collect(root, &srcs, &tmp))
            .await
            .map_err(|e| BuildError::new(e.to_string()));
        if let Err(e) = self.engine.remove_with(&id, true, true).await {
            log::warn!("build: removing {id}: {e}");
        }
        r
    }
}
