//! The state disk: found by its label (or `state.device`), formatted ext4
//! when it is blank and `state.autoformat` allows, checked with e2fsck and
//! mounted on /var/lib/corral. Without one Corral runs from RAM and says
//! so. A disk with data on it is never formatted.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::os::unix::fs::DirBuilderExt;

use corral_config::{StateConfig, STATE_STATUS_PATH as STATUS_FILE};
use log::{error, info, warn};

/// Where the state filesystem is mounted.
pub const MOUNTPOINT: &str = "/var/lib/corral";
/// Directories the services bind from the state filesystem, with modes.
pub const DIRS: &[(&str, u32)] = &[("log", 0o755), ("ssh", 0o700), ("home", 0o755)];

const MKFS: &str = "/sbin/mke2fs";
const FSCK: &str = "/sbin/e2fsck";
/// A disk counts as blank when this much of its start is all zero.
const BLANK_BYTES: usize = 1 << 20;

/// What the first 2 KiB of a device say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// An ext2/3/4 superblock, with its label.
    Ext {
        label: String,
    },
    Blank,
    /// Something else: a partition table, another filesystem, data.
    Other,
}

/// Reads the ext superblock (at 1024: magic 0xEF53 at +56, the volume
/// name at +120) from the start of a device.
pub fn identify(head: &[u8], blank: bool) -> Content {
    if head.get(1024 + 56..1024 + 58) == Some(&[0x53, 0xEF][..]) {
        if let Some(name) = head.get(1024 + 120..1024 + 136) {
            let label: Vec<u8> = name.iter().take_while(|b| **b != 0).copied().collect();
            return Content::Ext {
                label: String::from_utf8_lossy(&label).into_owned(),
            };
        }
    }
    if blank {
        Content::Blank
    } else {
        Content::Other
    }
}

fn read_content(dev: &Path) -> std::io::Result<Content> {
    // The superblock is in the first 2 KiB; the rest of the blank check
    // is read only for a device whose start is all zero.
    let mut file = File::open(dev)?;
    let mut buf = Vec::with_capacity(4096);
    (&mut file).take(4096).read_to_end(&mut buf)?;
    let zero = |b: &[u8]| b.iter().all(|x| *x == 0);
    let mut blank = !buf.is_empty() && zero(&buf);
    if blank {
        let mut rest = Vec::with_capacity(BLANK_BYTES);
        file.take((BLANK_BYTES - buf.len()) as u64)
            .read_to_end(&mut rest)?;
        blank = zero(&rest);
    }
    Ok(identify(&buf, blank))
}

/// Block devices with a size, by name, each with whether it is a whole
/// disk; not loop or RAM devices, and optical drives only when asked (the
/// state never lives on one; a config drive may be a CD-ROM image).
pub fn block_devices(optical: bool) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/block") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let skip: &[&str] = if optical {
            &["loop", "ram", "zram", "fd"]
        } else {
            &["loop", "ram", "zram", "sr", "fd"]
        };
        if skip.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let size = std::fs::read_to_string(e.path().join("size"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if size == 0 {
            continue;
        }
        let whole = !e.path().join("partition").exists();
        out.push((name, whole));
    }
    out.sort();
    out
}

/// Whether a whole disk has partitions (then it is not blank to us, even
/// if its first MiB happens to be zero).
fn has_partitions(name: &str) -> bool {
    std::fs::read_dir(format!("/sys/class/block/{name}"))
        .map(|d| d.flatten().any(|e| e.path().join("partition").exists()))
        .unwrap_or(false)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Mounted {
        device: PathBuf,
        label: String,
        formatted: bool,
    },
    Ram(String),
}

impl Outcome {
    pub fn report(&self) -> String {
        match self {
            Outcome::Mounted {
                device,
                label,
                formatted,
            } => format!(
                "state disk {} (label {label}) on {MOUNTPOINT}{}",
                device.display(),
                if *formatted {
                    ", formatted at this boot"
                } else {
                    ""
                }
            ),
            Outcome::Ram(why) => {
                format!("no state disk: running from RAM, nothing is kept across reboots ({why})")
            }
        }
    }
}

/// Finds, formats if allowed, checks and mounts the state disk.
pub fn setup(config: &StateConfig) -> Outcome {
    let outcome = match choose(config) {
        Ok((device, format)) => mount(&device, &config.label, format),
        Err(why) => Outcome::Ram(why),
    };
    for (dir, mode) in DIRS {
        let path = Path::new(MOUNTPOINT).join(dir);
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(*mode)
            .create(&path)
        {
            error!("cannot create {}: {e}", path.display());
        }
    }
    let report = outcome.report();
    match &outcome {
        Outcome::Mounted { .. } => info!("{report}"),
        Outcome::Ram(_) => warn!("{report}"),
    }
    let _ = std::fs::create_dir_all("/run/corral");
    if let Err(e) = std::fs::write(STATUS_FILE, format!("{report}\n")) {
        error!("cannot write {STATUS_FILE}: {e}");
    }
    outcome
}

/// The device to use and whether it must be formatted first.
fn choose(config: &StateConfig) -> Result<(PathBuf, bool), String> {
    if let Some(dev) = &config.device {
        let path = PathBuf::from(dev);
        return match read_content(&path) {
            Err(e) => Err(format!("state.device {dev}: {e}")),
            Ok(Content::Ext { .. }) => Ok((path, false)),
            Ok(Content::Blank) if config.autoformat => Ok((path, true)),
            Ok(Content::Blank) => Err(format!(
                "state.device {dev} is blank and state.autoformat is off"
            )),
            Ok(Content::Other) => Err(format!(
                "state.device {dev} has data but no ext4 filesystem; it is not formatted (wipe its first MiB to let Corral format it)"
            )),
        };
    }
    let devices = block_devices(false);
    let mut blank = None;
    let mut named = None;
    let sys_block = Path::new("/sys/class/block");
    for (name, whole) in &devices {
        let path = PathBuf::from(format!("/dev/{name}"));
        match read_content(&path) {
            Ok(Content::Ext { label }) if label == config.label => return Ok((path, false)),
            // The state partition of an installed disk, made at this boot
            // (crate::statepart) or left blank by an interrupted install.
            Ok(Content::Blank)
                if !*whole
                    && named.is_none()
                    && corral_disk::sysfs::partname(sys_block, name).as_deref()
                        == Some(config.label.as_str()) =>
            {
                named = Some(path)
            }
            Ok(Content::Blank) if *whole && blank.is_none() && !has_partitions(name) => {
                blank = Some(path)
            }
            Ok(_) => {}
            Err(e) => warn!("state disk search: {}: {e}", path.display()),
        }
    }
    match named.or(blank) {
        Some(path) if config.autoformat => Ok((path, true)),
        Some(path) => Err(format!(
            "no filesystem labelled {}; {} is blank but state.autoformat is off",
            config.label,
            path.display()
        )),
        None if devices.is_empty() => Err("no disks".into()),
        None => Err(format!(
            "no filesystem labelled {} and no blank disk among {}",
            config.label,
            devices
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn run(program: &str, args: &[&str]) -> Result<i32, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stderr);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        info!("{program}: {line}");
    }
    Ok(out.status.code().unwrap_or(-1))
}

fn mount(device: &Path, label: &str, format: bool) -> Outcome {
    let dev = device.to_string_lossy().into_owned();
    if format {
        info!("formatting blank disk {dev} as ext4, label {label}");
        match run(MKFS, &["-q", "-F", "-t", "ext4", "-L", label, &dev]) {
            Ok(0) => {}
            Ok(code) => {
                return Outcome::Ram(format!("formatting {dev} failed (mke2fs exit {code})"))
            }
            Err(e) => return Outcome::Ram(format!("cannot format {dev}: {e}")),
        }
    } else {
        // -p: fix what is safe to fix without asking. 1 and 2 mean
        // errors were corrected; 4 and up that some were left.
        match run(FSCK, &["-p", &dev]) {
            Ok(0) => {}
            Ok(c @ (1 | 2)) => warn!("e2fsck corrected errors on {dev} (exit {c})"),
            Ok(c) => {
                error!("e2fsck found errors on {dev} it could not fix (exit {c}); mounting anyway")
            }
            Err(e) => error!("cannot check {dev}: {e}"),
        }
    }
    let _ = std::fs::create_dir_all(MOUNTPOINT);
    match nix::mount::mount(
        Some(device),
        MOUNTPOINT,
        Some("ext4"),
        nix::mount::MsFlags::MS_NOATIME,
        None::<&str>,
    ) {
        Ok(()) => Outcome::Mounted {
            device: device.to_owned(),
            label: label.to_owned(),
            formatted: format,
        },
        Err(e) => Outcome::Ram(format!("mounting {dev} on {MOUNTPOINT}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(label: &str) -> Vec<u8> {
        let mut b = vec![0u8; 2048];
        b[1024 + 56] = 0x53;
        b[1024 + 57] = 0xEF;
        b[1024 + 120..1024 + 120 + label.len()].copy_from_slice(label.as_bytes());
        b
    }

    #[test]
    fn reads_ext_labels() {
        assert_eq!(
            identify(&ext("CORRAL_STATE"), false),
            Content::Ext {
                label: "CORRAL_STATE".into()
            }
        );
        assert_eq!(
            identify(&ext("sixteen-chars-xx"), false),
            Content::Ext {
                label: "sixteen-chars-xx".into()
            }
        );
    }

    #[test]
    fn blank_and_other() {
        assert_eq!(identify(&[0u8; 4096], true), Content::Blank);
        let mut mbr = vec![0u8; 4096];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        assert_eq!(identify(&mbr, false), Content::Other);
    }

    #[test]
    fn reports_say_where_state_lives() {
        let m = Outcome::Mounted {
            device: "/dev/vda".into(),
            label: "CORRAL_STATE".into(),
            formatted: true,
        };
        assert_eq!(
            m.report(),
            "state disk /dev/vda (label CORRAL_STATE) on /var/lib/corral, formatted at this boot"
        );
        assert!(Outcome::Ram("no disks".into())
            .report()
            .starts_with("no state disk: running from RAM"));
    }
}
