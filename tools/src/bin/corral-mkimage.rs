//! `corral-mkimage`: writes a directory as a one-layer OCI image archive
//! (`oci-archive`), reproducibly: sorted entries, fixed times and owners,
//! so the same tree gives the same bytes and the same image id.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use corral_image::build::{write_oci_archive, ImageConfigSpec};

#[derive(Debug, Parser)]
#[command(
    name = "corral-mkimage",
    about = "Write a directory as an OCI image archive"
)]
struct Args {
    /// The image's root filesystem.
    #[arg(long)]
    rootfs: PathBuf,
    /// Name and tag, e.g. busybox:latest.
    #[arg(long)]
    name: String,
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
    /// The archive to write.
    #[arg(long, short)]
    output: PathBuf,
}

fn main() -> Result<()> {
    let a = Args::parse();
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
    let id = write_oci_archive(&a.rootfs, &a.name, &spec, &a.output)
        .with_context(|| format!("writing {}", a.output.display()))?;
    println!("{} {id} {}", a.name, a.output.display());
    Ok(())
}
