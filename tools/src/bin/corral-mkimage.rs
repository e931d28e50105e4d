//! `corral-mkimage`: writes a directory as a one-layer OCI image archive
//! (`oci-archive`), reproducibly: sorted entries, fixed times and owners,
//! so the same tree gives the same bytes and the same image id.
//!
//! With `--recipe images/NAME/image.toml` it first stages the tree from
//! the recipe: files from Debian packages (with their shared libraries),
//! from the recipe directory and from the project's build output.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use corral_image::build::{write_oci_archive, write_oci_archive_layers, ImageConfigSpec};
use corral_image::labels::{PACKAGES, REASONS, SERVICE};
use corral_tools::debs::Cache;
use corral_tools::recipe::{Recipe, Stager};

#[derive(Debug, Parser)]
#[command(
    name = "corral-mkimage",
    about = "Write a directory as an OCI image archive"
)]
struct Args {
    /// The image's root filesystem; given again, each is a layer over
    /// the ones before.
    #[arg(long, required_unless_present = "recipe", conflicts_with = "recipe")]
    rootfs: Vec<PathBuf>,
    /// Build from a recipe (images/NAME/image.toml) instead of a directory.
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// The project's build output (for a recipe's `binaries`); the stage
    /// directory is written next to the archive.
    #[arg(long, default_value = "out")]
    out_dir: PathBuf,
    /// With --recipe: only stage the tree, into --output (a directory),
    /// and write no archive (the initramfs takes e2fsprogs this way).
    #[arg(long, requires = "recipe")]
    stage_only: bool,
    /// Name and tag, e.g. busybox:latest.
    #[arg(long, required_unless_present = "recipe")]
    name: Option<String>,
    /// Entrypoint, one argument per flag.
    #[arg(long = "entrypoint")]
    entrypoint: Vec<String>,
    /// Default command, one argument per flag.
    #[arg(long = "cmd")]
    cmd: Vec<String>,
    /// NAME=VALUE, repeatable.
    #[arg(long = "env")]
    env: Vec<String>,
    /// KEY=VALUE, repeatable.
    #[arg(long = "label")]
    labels: Vec<String>,
    #[arg(long)]
    working_dir: Option<String>,
    #[arg(long)]
    user: Option<String>,
    /// The archive to write (the directory, with --stage-only).
    #[arg(long, short)]
    output: PathBuf,
}

fn main() -> Result<()> {
    let a = Args::parse();
    if let Some(recipe) = &a.recipe {
        return build_recipe(recipe, &a.out_dir, &a.output, a.stage_only);
    }
    let (false, Some(name)) = (a.rootfs.is_empty(), &a.name) else {
        anyhow::bail!("--rootfs and --name are required without --recipe");
    };
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l:?}: expected KEY=VALUE"))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    let spec = ImageConfigSpec {
        entrypoint: a.entrypoint,
        cmd: a.cmd,
        env: a.env,
        working_dir: a.working_dir,
        user: a.user,
        labels,
    };
    let layers: Vec<&Path> = a.rootfs.iter().map(PathBuf::as_path).collect();
    let id = write_oci_archive_layers(&layers, name, &spec, &a.output)
        .with_context(|| format!("writing {}", a.output.display()))?;
    println!("{name} {id} {}", a.output.display());
    Ok(())
}

fn build_recipe(path: &Path, out_dir: &Path, output: &Path, stage_only: bool) -> Result<()> {
    let recipe = Recipe::load(path)?;
    let recipe_dir = path.parent().unwrap_or(Path::new("."));
    let packages = Cache::new(Cache::default_dir())
        .fetch(&recipe.packages, &recipe.standalone_packages)
        .with_context(|| format!("{}: fetching Debian packages", path.display()))?;
    let stage = if stage_only {
        output.to_owned()
    } else {
        output.with_extension("d")
    };
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("removing the old stage {}", stage.display()))?;
    }
    let mut stager = Stager::new(&stage, &packages, recipe_dir, out_dir);
    stager
        .stage_all(&recipe)
        .with_context(|| format!("{}: staging the image", path.display()))?;
    if stage_only {
        println!("{} staged in {}", recipe.name, stage.display());
        return Ok(());
    }
    let mut labels = std::collections::BTreeMap::new();
    if let Some(service) = recipe
        .service_toml()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    {
        labels.insert(SERVICE.to_owned(), service);
    }
    if !recipe.reasons.is_empty() {
        labels.insert(REASONS.to_owned(), recipe.reasons_label());
    }
    let mut used: Vec<String> = packages
        .iter()
        .filter(|p| stager.used.contains(&p.name))
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    used.sort();
    if !used.is_empty() {
        labels.insert(PACKAGES.to_owned(), used.join(" "));
    }
    let spec = ImageConfigSpec {
        entrypoint: recipe.entrypoint.clone(),
        cmd: recipe.cmd.clone(),
        env: recipe.env.clone(),
        working_dir: recipe.working_dir.clone(),
        user: recipe.user.clone(),
        labels,
    };
    let name = format!("{}:latest", recipe.name);
    let id = write_oci_archive(&stage, &name, &spec, output)
        .with_context(|| format!("writing {}", output.display()))?;
    println!("{name} {id} {}", output.display());
    Ok(())
}
