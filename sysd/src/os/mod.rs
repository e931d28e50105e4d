//! The operating system itself, as the system engine manages it:
//! installing Corral onto a disk ([`install`]) from what it booted from
//! ([`medium`]), the A/B boot slots the boot menu chooses between
//! ([`boot`], [`slots`]), signed upgrades into the other slot
//! ([`upgrade`]) and the trial boot that keeps or rolls them back
//! ([`trial`]).

pub mod boot;
pub mod fetch;
pub mod install;
pub mod medium;
pub mod slots;
pub mod trial;
pub mod upgrade;

/// GRUB's loaders and the disk's boot menu, in the initramfs (from
/// `metal/grub.sh`).
pub const LOADERS_DIR: &str = "/usr/share/corral/boot";
pub const SYS_BLOCK: &str = "/sys/class/block";

/// What went wrong, for the API: `Refused` is the user's to fix (a
/// device in use, too small, not blank without --force; nothing was
/// written), `Failed` is an error while writing.
#[derive(Debug, thiserror::Error)]
pub enum OsError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl From<corral_disk::DiskError> for OsError {
    fn from(e: corral_disk::DiskError) -> Self {
        Self::Failed(e.to_string())
    }
}
