//! Writes an uncompressed initramfs (cpio newc) from a staging directory
//! plus device nodes, reproducibly and without root.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Parser;
use corral_tools::initramfs::Archive;

#[derive(Debug, Parser)]
#[command(about = "Write a reproducible initramfs cpio archive")]
struct Args {
    /// Directory whose contents become the archive's root.
    #[arg(long)]
    root: PathBuf,
    /// A character device node to add: PATH:MAJOR:MINOR:MODE, e.g.
    /// /dev/console:5:1:600 (mode in octal).
    #[arg(long = "char-device", value_name = "SPEC")]
    char_devices: Vec<String>,
    /// Modification time of every entry, in seconds since the epoch.
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    mtime: u32,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
}

fn parse_device(spec: &str) -> Result<(String, u32, u32, u32)> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [path, major, minor, mode] = parts.as_slice() else {
        bail!("--char-device {spec:?}: expected PATH:MAJOR:MINOR:MODE");
    };
    Ok((
        (*path).to_owned(),
        major
            .parse()
            .with_context(|| format!("--char-device {spec:?}: major"))?,
        minor
            .parse()
            .with_context(|| format!("--char-device {spec:?}: minor"))?,
        u32::from_str_radix(mode, 8).with_context(|| format!("--char-device {spec:?}: mode"))?,
    ))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let devices = args
        .char_devices
        .iter()
        .map(|s| parse_device(s))
        .collect::<Result<Vec<_>>>()?;
    // Write next to the output and rename, so a failed build never leaves a
    // truncated archive where the boot expects a good one.
    let tmp = args.output.with_extension("tmp");
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut archive = Archive::new(BufWriter::new(file), args.mtime);
    archive.tree(&args.root)?;
    for (path, major, minor, mode) in devices {
        archive.char_device(&path, mode, major, minor)?;
    }
    let mut out = archive.finish()?;
    out.flush()?;
    out.into_inner()?.sync_all()?;
    std::fs::rename(&tmp, &args.output)
        .with_context(|| format!("renaming {} to {}", tmp.display(), args.output.display()))?;
    Ok(())
}
