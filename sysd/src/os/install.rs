//! `corral install`: Corral written onto a disk, from the medium the
//! running system booted from.
//!
//! [`plan`] checks everything before a byte is written and refuses, with
//! the reason, a device that is not a whole disk, is in use, is the one
//! this system booted from, is too small, or holds partitions or data
//! (unless forced); and a config that does not parse or with which nobody
//! could log in. [`Plan::write`] then writes in an order that keeps an
//! interrupted install from ever looking like a working one:
//!
//! 1. the old tables go, and LBA 0 gets a stub that prints on BIOS that
//!    the install did not finish (and that a rerun recognises);
//! 2. the new GPT, then the state partition and its config;
//! 3. slot A, the BIOS core image, the ESP with the UEFI loader last;
//! 4. everything read back from the disk and compared;
//! 5. GRUB's boot code in LBA 0: only now does the disk boot.
//!
//! Until step 5 a BIOS machine prints the stub's message, and a UEFI one
//! finds no loader until the ESP is complete (after the slot).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_config::layers::{self, Layer, LayerKind};
use corral_config::{fsutil, DEFAULT_PATH, PERSISTED_PATH};
use corral_disk::bios;
use corral_disk::grubenv::Env;
use corral_disk::image::{self, Loaders};
use corral_disk::{files, sysfs, table, Slot, INSTALL_MIN, MIB, SECTOR, STATE};
use serde::Deserialize;

use super::boot::BootInfo;
use super::medium::{self, Source};
use super::{OsError, LOADERS_DIR, SYS_BLOCK};

const MKFS: &str = "/sbin/mke2fs";
const STATE_MOUNT: &str = "/run/corral-install";

/// What the CLI sends: the device, the config (a file's content, or none
/// for the running system's saved config) and whether to erase data.
#[derive(Debug, Clone, Deserialize)]
pub struct Request {
    pub device: String,
    #[serde(default)]
    pub config: Option<String>,
    /// Where `config` came from, for messages ("/tmp/config.toml").
    #[serde(default)]
    pub config_origin: Option<String>,
    #[serde(default)]
    pub force: bool,
}

/// A checked install, ready to write.
pub struct Plan {
    pub device: String,
    name: String,
    size: u64,
    pub summary: String,
    source: Source,
    config: String,
    config_origin: String,
    loaders: Loaders,
    interrupted: bool,
}

fn refuse(msg: impl Into<String>) -> OsError {
    OsError::Refused(msg.into())
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Checks the request against the machine; nothing is written.
pub fn plan(req: &Request) -> Result<Plan, OsError> {
    let sys = Path::new(SYS_BLOCK);
    let name = req
        .device
        .strip_prefix("/dev/")
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| {
            refuse(format!(
                "{}: give a disk's device path, like /dev/sdb",
                req.device
            ))
        })?
        .to_owned();
    if !sys.join(&name).exists() {
        return Err(refuse(format!("{}: no such disk", req.device)));
    }
    if sysfs::is_partition(sys, &name) {
        let disk = std::fs::canonicalize(sys.join(&name))
            .ok()
            .and_then(|p| Some(p.parent()?.file_name()?.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "the disk".into());
        return Err(refuse(format!(
            "{} is a partition: Corral takes a whole disk (/dev/{disk})",
            req.device
        )));
    }
    if ["sr", "loop", "ram", "zram", "fd"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Err(refuse(format!(
            "{} is not a disk Corral can be installed on",
            req.device
        )));
    }

    let boot = BootInfo::current();
    let source = medium::find(&boot)?;
    if source.disk.as_deref() == Some(name.as_str()) {
        return Err(refuse(format!(
            "{} is what this system booted from ({}): install onto another disk",
            req.device, source.from
        )));
    }
    let size = sysfs::size(sys, &name).unwrap_or(0);
    if size < INSTALL_MIN {
        return Err(refuse(format!(
            "{} is {} MiB: Corral needs at least {} MiB ({} MiB of boot partitions and {} MiB of state)",
            req.device,
            size >> 20,
            INSTALL_MIN >> 20,
            STATE.start >> 20,
            (INSTALL_MIN - STATE.start) >> 20
        )));
    }
    let parts = sysfs::partitions(sys, &name);
    if let Some((dev, on)) = mounted(&name, &parts) {
        return Err(refuse(format!(
            "{} is in use: /dev/{dev} is mounted on {on}",
            req.device
        )));
    }

    let mut head = vec![0u8; MIB as usize];
    File::open(&req.device)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| OsError::Failed(format!("reading {}: {e}", req.device)))?;
    let interrupted = bios::is_incomplete(&head);
    let blank = parts.is_empty() && head.iter().all(|b| *b == 0);
    if !blank && !interrupted && !req.force {
        let what = if parts.is_empty() {
            "data in its first MiB (a filesystem or a partition table)".to_owned()
        } else {
            format!(
                "{} partition{} ({})",
                parts.len(),
                if parts.len() == 1 { "" } else { "s" },
                parts.join(", ")
            )
        };
        return Err(refuse(format!(
            "{} holds {what}: nothing was written; add --force to erase it",
            req.device
        )));
    }

    let (config, config_origin) = match &req.config {
        Some(text) => (
            text.clone(),
            req.config_origin
                .clone()
                .unwrap_or_else(|| "the given config".into()),
        ),
        None => (
            std::fs::read_to_string(PERSISTED_PATH).unwrap_or_default(),
            format!("this system's saved config ({PERSISTED_PATH})"),
        ),
    };
    check_config(&config, &config_origin)?;
    let loaders = Loaders::read(Path::new(LOADERS_DIR)).map_err(|e| {
        OsError::Failed(format!(
            "GRUB's loaders are missing from this system ({e}): this initramfs was built without them"
        ))
    })?;

    let model = std::fs::read_to_string(sys.join(&name).join("device/model"))
        .map(|m| m.trim().to_owned())
        .unwrap_or_default();
    let mut summary = format!(
        "This erases {} ({}{}",
        req.device,
        if model.is_empty() {
            String::new()
        } else {
            format!("{model}, ")
        },
        gib(size)
    );
    summary.push_str(&if interrupted {
        "), which holds an interrupted Corral install, to complete it".to_owned()
    } else if blank {
        ", blank)".to_owned()
    } else if parts.is_empty() {
        ", and the data on it)".to_owned()
    } else {
        format!(", and its partitions {})", parts.join(", "))
    });
    summary.push_str(&format!(
        ", and installs {} from {} with {config_origin}.",
        version(&source.payload.release),
        source.from
    ));
    Ok(Plan {
        device: req.device.clone(),
        name,
        size,
        summary,
        source,
        config,
        config_origin,
        loaders,
        interrupted,
    })
}

/// `PRETTY_NAME`, or `VERSION_ID`, from a release file.
pub fn version(release: &[u8]) -> String {
    let text = String::from_utf8_lossy(release);
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
    };
    get("PRETTY_NAME")
        .or_else(|| get("VERSION_ID").map(|v| format!("Corral {v}")))
        .unwrap_or_else(|| "Corral (unknown version)".into())
}

/// The config the installed system will boot with: it must parse, merge
/// with the defaults, and let someone log in.
fn check_config(text: &str, origin: &str) -> Result<(), OsError> {
    let layer = Layer::parse(LayerKind::State, origin, text)
        .map_err(|e| refuse(format!("the config does not parse: {e}")))?;
    let defaults_text = std::fs::read_to_string(DEFAULT_PATH).unwrap_or_default();
    let defaults = Layer::parse(LayerKind::Defaults, DEFAULT_PATH, &defaults_text)
        .map_err(|e| OsError::Failed(format!("this system's defaults do not parse: {e}")))?;
    let merged = layers::merge(&[defaults, layer])
        .map_err(|e| refuse(format!("the config is not valid: {e}")))?;
    if let Some(why) = crate::sysconfig::locked_out(&merged.config) {
        return Err(refuse(format!(
            "{origin}: {why}; give a config with an SSH key (--config FILE with [ssh] authorized-keys)"
        )));
    }
    Ok(())
}

/// A partition of the disk (or the disk) that is mounted, and where.
fn mounted(disk: &str, parts: &[String]) -> Option<(String, String)> {
    let sys = Path::new(SYS_BLOCK);
    let numbers = |n: &str| {
        std::fs::read_to_string(sys.join(n).join("dev"))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let mine: Vec<(String, String)> = std::iter::once(disk.to_owned())
        .chain(parts.iter().cloned())
        .filter_map(|n| Some((numbers(&n)?, n)))
        .collect();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in info.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(dev), Some(on)) = (fields.get(2), fields.get(4)) else {
            continue;
        };
        if let Some((_, n)) = mine.iter().find(|(d, _)| d == dev) {
            return Some((n.clone(), (*on).to_owned()));
        }
    }
    None
}

impl Plan {
    fn open(&self) -> Result<File, OsError> {
        // O_EXCL on a block device: refused while it is mounted or held.
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_EXCL)
            .open(&self.device)
            .map_err(|e| OsError::Failed(format!("opening {}: {e}", self.device)))
    }

    /// Writes the install, saying each step.
    pub fn write(self, say: &mut dyn FnMut(String)) -> Result<(), OsError> {
        let fail = |what: &str| {
            let dev = self.device.clone();
            let what = what.to_owned();
            move |e: std::io::Error| OsError::Failed(format!("{dev}: {what}: {e}"))
        };
        let ids = super::slots::random_ids()?;

        say(format!("writing the partition table on {}", self.device));
        let mut dev = self.open()?;
        let stub = bios::incomplete_boot_code();
        wipe_tables(&mut dev, self.size).map_err(fail("erasing the old tables"))?;
        dev.seek(SeekFrom::Start(0)).map_err(fail("seeking"))?;
        table::create(&mut dev, &ids, true, &stub)?;
        dev.sync_all().map_err(fail("syncing"))?;
        corral_disk::sys::reread_partitions(&dev)
            .map_err(fail("re-reading the partition table"))?;
        drop(dev);

        let state_dev = format!("/dev/{}", sysfs::partition_name(&self.name, STATE.number));
        wait_for(&state_dev, Duration::from_secs(10))?;
        say(format!(
            "formatting the state partition {state_dev} (ext4, label {})",
            STATE.name
        ));
        self.write_state(&state_dev)?;

        let mut dev = self.open()?;
        let p = &self.source.payload;
        say(format!(
            "writing slot A: {} (kernel {:.1} MB, initramfs {:.1} MB)",
            version(&p.release),
            p.kernel.len() as f64 / 1e6,
            p.initrd.len() as f64 / 1e6
        ));
        image::write_slot(&mut dev, Slot::A, Some(p), &ids)?;
        image::write_slot(&mut dev, Slot::B, None, &ids)?;
        say("writing the boot loaders (BIOS and UEFI)".into());
        image::write_core(&mut dev, &self.loaders)?;
        let mut env = Env::default();
        env.set("corral_default", Slot::A.letter());
        image::write_esp(&mut dev, &self.loaders, &env, &ids)?;
        dev.sync_all().map_err(fail("syncing"))?;

        self.verify(&mut dev)?;
        say("checked: slot A and the ESP read back from the disk as written".into());
        image::write_boot_code(&mut dev, &self.loaders.boot_code()?)?;
        dev.sync_all().map_err(fail("syncing"))?;
        say(format!(
            "done: {} boots {} on BIOS and UEFI{}; remove the install medium and reboot",
            self.device,
            version(&p.release),
            if self.interrupted {
                " (the interrupted install is complete)"
            } else {
                ""
            }
        ));
        Ok(())
    }

    /// Formats the state partition and writes the config into it, as
    /// `corral config set` would have saved it.
    fn write_state(&self, state_dev: &str) -> Result<(), OsError> {
        let out = std::process::Command::new(MKFS)
            .args(["-q", "-F", "-t", "ext4", "-L", STATE.name, state_dev])
            .output()
            .map_err(|e| OsError::Failed(format!("{MKFS}: {e}")))?;
        if !out.status.success() {
            return Err(OsError::Failed(format!(
                "formatting {state_dev} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        std::fs::create_dir_all(STATE_MOUNT)
            .map_err(|e| OsError::Failed(format!("{STATE_MOUNT}: {e}")))?;
        use nix::mount::MsFlags;
        nix::mount::mount(
            Some(state_dev),
            STATE_MOUNT,
            Some("ext4"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| OsError::Failed(format!("mounting {state_dev}: {e}")))?;
        let name = Path::new(PERSISTED_PATH)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config.toml"));
        let written = if self.config.trim().is_empty() {
            Ok(())
        } else {
            fsutil::write_atomic(
                &Path::new(STATE_MOUNT).join(name),
                self.config.as_bytes(),
                0o600,
                false,
            )
        };
        let unmounted = nix::mount::umount(STATE_MOUNT);
        written.map_err(|e| {
            OsError::Failed(format!(
                "writing {} to {state_dev}: {e}",
                self.config_origin
            ))
        })?;
        unmounted.map_err(|e| OsError::Failed(format!("unmounting {state_dev}: {e}")))?;
        Ok(())
    }

    /// Reads slot A and the ESP back past the page cache and compares them
    /// with what was written.
    fn verify(&self, dev: &mut File) -> Result<(), OsError> {
        super::slots::verify_slot(dev, Slot::A, &self.source.payload)?;
        let loader = corral_disk::fat::read_file(dev, corral_disk::ESP.extent(), files::EFI_LOADER)
            .map_err(|e| OsError::Failed(format!("reading back the UEFI loader: {e}")))?;
        if loader.as_ref() != Some(&self.loaders.efi) {
            return Err(OsError::Failed(
                "the UEFI loader does not read back as written: the disk is faulty".into(),
            ));
        }
        let env = image::read_env(dev)?;
        if env.get("corral_default") != Some(Slot::A.letter()) {
            return Err(OsError::Failed(
                "grubenv does not read back as written".into(),
            ));
        }
        Ok(())
    }
}

/// Zeroes the protective MBR and primary GPT (the first 34 sectors) and
/// the backup GPT (the last 33), so no old table survives next to the new
/// one.
fn wipe_tables(dev: &mut File, size: u64) -> std::io::Result<()> {
    let head = vec![0u8; (34 * SECTOR) as usize];
    dev.seek(SeekFrom::Start(0))?;
    dev.write_all(&head)?;
    let tail = 33 * SECTOR;
    dev.seek(SeekFrom::Start(size.saturating_sub(tail)))?;
    dev.write_all(&head[..tail as usize])?;
    Ok(())
}

fn wait_for(dev: &str, timeout: Duration) -> Result<(), OsError> {
    let deadline = Instant::now() + timeout;
    while !Path::new(dev).exists() {
        if Instant::now() >= deadline {
            return Err(OsError::Failed(format!(
                "{dev} did not appear after the partition table was re-read"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_release_file() {
        assert_eq!(
            version(b"NAME=\"Corral\"\nPRETTY_NAME=\"Corral 0.1\"\nVERSION_ID=0.1\n"),
            "Corral 0.1"
        );
        assert_eq!(version(b"VERSION_ID=0.2\n"), "Corral 0.2");
        assert_eq!(version(b""), "Corral (unknown version)");
    }

    #[test]
    fn refuses_what_is_not_a_disk_path() {
        for bad in [
            "sdb",
            "/dev/",
            "/dev/../etc/passwd",
            "/dev/no-such-disk-here",
        ] {
            let e = plan(&Request {
                device: bad.into(),
                config: None,
                config_origin: None,
                force: false,
            })
            .err()
            .unwrap();
            assert!(matches!(e, OsError::Refused(_)), "{bad}: {e}");
        }
    }
}
