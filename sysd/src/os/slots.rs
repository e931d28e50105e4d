//! The installed disk this system booted from: its two slots and the
//! boot state in the ESP's grubenv, which GRUB reads before every boot
//! (`metal/grub-disk.cfg`).
//!
//! The variables, and who writes them:
//! - `corral_default`: the slot that boots (install, promotion, rollback);
//! - `corral_trial`, `corral_tries`: a slot to boot once, set by an
//!   upgrade; GRUB sets `corral_tries=0` as it boots the trial, and on
//!   the next boot, finding the trial still there, falls back and sets
//!   `corral_failed`;
//! - `corral_upgrade`: what the last upgrade was ("0.1 -> 0.2 in slot B
//!   at ..."), `corral_outcome`: what became of it ("on trial",
//!   "promoted ...", "rolled back: why").

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use corral_disk::grubenv::Env;
use corral_disk::{image, sysfs, Slot};

use super::boot::BootInfo;
use super::medium::ReadOnly;
use super::{OsError, SYS_BLOCK};

pub const DEFAULT: &str = "corral_default";
pub const TRIAL: &str = "corral_trial";
pub const TRIES: &str = "corral_tries";
pub const FAILED: &str = "corral_failed";
pub const UPGRADE: &str = "corral_upgrade";
pub const OUTCOME: &str = "corral_outcome";

/// The disk of the running slot.
#[derive(Debug, Clone)]
pub struct BootDisk {
    /// `/dev/vda`
    pub dev: String,
    pub current: Slot,
}

impl BootDisk {
    /// The disk this system booted from, refused when it did not boot
    /// from an installed disk (the ISO, or QEMU's -kernel).
    pub fn find(boot: &BootInfo) -> Result<Self, OsError> {
        let Some(current) = boot.slot else {
            return Err(OsError::Refused(if boot.live {
                "this system runs live from the ISO: upgrades are for installed disks \
                 (corral install --device ...); for the live system, write the new ISO"
                    .into()
            } else {
                "this system was not booted from an installed disk (QEMU's -kernel?): \
                 there are no boot slots to upgrade"
                    .into()
            }));
        };
        let name = current.partition().name;
        let disk = sysfs::disk_of(Path::new(SYS_BLOCK), name).ok_or_else(|| {
            OsError::Failed(format!(
                "booted from slot {current}, but no partition is named {name}"
            ))
        })?;
        Ok(Self {
            dev: format!("/dev/{disk}"),
            current,
        })
    }

    fn fail(&self, what: &str) -> impl Fn(std::io::Error) -> OsError + '_ {
        let what = what.to_owned();
        move |e| OsError::Failed(format!("{}: {what}: {e}", self.dev))
    }

    fn read_only(&self) -> Result<ReadOnly, OsError> {
        File::open(&self.dev)
            .map(ReadOnly)
            .map_err(self.fail("opening"))
    }

    /// For writing a slot and grubenv. Not exclusive: the state partition
    /// on the same disk is mounted, and the regions written here are no
    /// filesystem's.
    pub fn open_rw(&self) -> Result<File, OsError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.dev)
            .map_err(self.fail("opening for writing"))
    }

    pub fn env(&self) -> Result<Env, OsError> {
        Ok(image::read_env(&mut self.read_only()?)?)
    }

    /// Changes grubenv in place, syncs, and reads it back past the page
    /// cache: GRUB reads the disk, not this kernel's memory.
    pub fn update_env(&self, change: impl FnOnce(&mut Env)) -> Result<Env, OsError> {
        let mut dev = self.open_rw()?;
        let mut env = image::read_env(&mut dev)?;
        change(&mut env);
        image::write_env(&mut dev, &env)?;
        dev.flush().map_err(self.fail("flushing"))?;
        dev.sync_all().map_err(self.fail("syncing"))?;
        drop_cache(&dev);
        let back = image::read_env(&mut dev)?;
        if back != env {
            return Err(OsError::Failed(format!(
                "{}: grubenv does not read back as written",
                self.dev
            )));
        }
        Ok(env)
    }

    /// A slot's release file, `None` when the slot is empty or was left
    /// half-written.
    pub fn release(&self, slot: Slot) -> Result<Option<Vec<u8>>, OsError> {
        Ok(image::read_release(&mut self.read_only()?, slot)?)
    }
}

/// Drops the device's cached pages, so the next reads come from the disk.
pub fn drop_cache(dev: &File) {
    let _ = nix::fcntl::posix_fadvise(
        dev,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

/// The running system's release file.
pub fn running_release() -> String {
    std::fs::read_to_string("/etc/os-release").unwrap_or_default()
}

/// Now, for the record in grubenv (UTC, to the second).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Reads a slot back past the page cache and compares it with what was
/// written.
pub fn verify_slot(dev: &mut File, slot: Slot, p: &image::Payload) -> Result<(), OsError> {
    drop_cache(dev);
    let at = slot.partition().extent();
    for (name, want) in [
        (corral_disk::files::KERNEL, &p.kernel),
        (corral_disk::files::INITRD, &p.initrd),
        (corral_disk::files::RELEASE, &p.release),
    ] {
        let got = corral_disk::fat::read_file(dev, at, name)
            .map_err(|e| OsError::Failed(format!("reading back slot {slot}'s {name}: {e}")))?;
        if got.as_ref() != Some(want) {
            return Err(OsError::Failed(format!(
                "slot {slot}'s {name} does not read back as written: the disk is faulty"
            )));
        }
    }
    Ok(())
}

/// Fresh GUIDs and volume ids.
pub fn random_ids() -> Result<corral_disk::Ids, OsError> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| OsError::Failed(format!("/dev/urandom: {e}")))?;
    Ok(corral_disk::Ids::derive(&seed))
}

/// A value short enough for grubenv's 1024-byte block beside the others.
pub fn short(s: &str) -> String {
    const MAX: usize = 360;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
