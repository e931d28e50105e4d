//! Writes Corral's bootable disk image (`make disk`): the GPT layout of
//! corral-disk with GRUB for BIOS and UEFI, slot A holding the kernel and
//! initramfs, slot B empty. No root, no loop devices, no mounts; the same
//! inputs give the same bytes.

use std::fs::OpenOptions;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use corral_disk::image::{self, Loaders, Payload};
use corral_disk::{Ids, IMAGE_SIZE};

#[derive(Debug, Parser)]
#[command(about = "Write Corral's bootable disk image (GPT, BIOS and UEFI, A/B slots)")]
struct Args {
    /// Directory with boot.img, core.img, BOOTX64.EFI and grub.cfg (metal/grub.sh)
    #[arg(long)]
    loaders: PathBuf,
    #[arg(long)]
    kernel: PathBuf,
    #[arg(long)]
    initrd: PathBuf,
    /// The release file (os-release) the slot carries
    #[arg(long)]
    release: PathBuf,
    /// Seed of the disk's and partitions' GUIDs (fixed: reproducible images)
    #[arg(long, default_value = "corral-disk-image")]
    seed: String,
    #[arg(short, long)]
    output: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let loaders = Loaders::read(&args.loaders)?;
    let payload = Payload {
        kernel: read(&args.kernel)?,
        initrd: read(&args.initrd)?,
        release: read(&args.release)?,
    };
    // Written beside the output and renamed: an interrupted build leaves
    // no image that looks finished.
    let tmp = args.output.with_extension("img.tmp");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.set_len(IMAGE_SIZE)?;
    image::write_image(
        &mut file,
        &loaders,
        &payload,
        &Ids::derive(args.seed.as_bytes()),
    )
    .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()?;
    std::fs::rename(&tmp, &args.output)?;
    Ok(())
}
