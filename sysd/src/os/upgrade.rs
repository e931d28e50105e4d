//! `corral os upgrade` and `corral os rollback`.
//!
//! An upgrade is checked completely before a byte is written: the system
//! must run from an installed disk and not be on an undecided trial, and
//! the bundle must be signed by a trusted key and match its signed
//! manifest ([`corral_disk::bundle::open`]). Then the inactive slot is
//! written, read back past the page cache and compared, and only then
//! does grubenv name it as the one-time trial. An interruption before
//! that last write leaves the machine booting what it booted before.

use corral_config::{Config, OsConfig, RELEASE_KEY_PATH};
use corral_disk::bundle::{self, TrustedKey, Verified};
use corral_disk::{bundle::version_id, image, Slot};

use super::boot::BootInfo;
use super::slots::{self, BootDisk};
use super::OsError;

/// The keys upgrades may be signed with: `[os] trusted-keys`, or the key
/// of the build this system runs.
pub fn trusted_keys(os: &OsConfig) -> Result<Vec<TrustedKey>, OsError> {
    if !os.trusted_keys.is_empty() {
        return os
            .trusted_keys
            .iter()
            .map(|k| TrustedKey::parse(k).map_err(OsError::Failed))
            .collect();
    }
    let text = std::fs::read_to_string(RELEASE_KEY_PATH).map_err(|e| {
        OsError::Refused(format!(
            "no key to check upgrades with: [os] trusted-keys is empty and the build's key \
             {RELEASE_KEY_PATH} cannot be read ({e})"
        ))
    })?;
    // A minisign .pub file: a comment line, then the key.
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with("untrusted comment:"))
        .unwrap_or_default();
    Ok(vec![TrustedKey::parse(line).map_err(|e| {
        OsError::Failed(format!("{RELEASE_KEY_PATH}: {e}"))
    })?])
}

fn os_config() -> OsConfig {
    match Config::load(corral_config::effective_path()) {
        Ok(c) => c.os,
        Err(e) => {
            log::warn!("{e}; checking upgrades with the default [os] settings");
            OsConfig::default()
        }
    }
}

/// The running system's `VERSION_ID`.
pub fn running_version() -> String {
    version_id(&slots::running_release()).unwrap_or_else(|| "unknown".into())
}

/// A checked upgrade, ready to write.
pub struct Upgrade {
    disk: BootDisk,
    target: Slot,
    verified: Verified,
    from: String,
    pub summary: String,
}

/// Whether this system can be upgraded at all (an installed disk, not on
/// an undecided trial): checked before a bundle is downloaded.
pub fn preflight() -> Result<BootDisk, OsError> {
    let boot = BootInfo::current();
    let disk = BootDisk::find(&boot)?;
    let env = disk.env()?;
    if boot.trial && env.get(slots::TRIAL) == Some(disk.current.letter()) {
        return Err(OsError::Refused(format!(
            "this boot is the trial of slot {} and is not decided yet: wait until it is \
             promoted (corral os version) or roll it back (corral os rollback)",
            disk.current
        )));
    }
    Ok(disk)
}

/// The registry settings an upgrade image is pulled with: the user
/// engine's (`[user-engine]` insecure registries, mirrors, CAs and
/// logins), so one set of registry settings serves the machine.
pub fn registry_settings() -> crate::registry::Settings {
    let c = match Config::load(corral_config::effective_path()) {
        Ok(c) => c.user_engine,
        Err(e) => {
            log::warn!("{e}; pulling the upgrade with the default registry settings");
            Default::default()
        }
    };
    crate::registry::Settings::from_config(&c)
}

/// Where an upgrade image carries its bundle.
pub const IMAGE_BUNDLE_PATH: &str = "corral.bundle";

/// Checks an upgrade; nothing is written.
pub fn check(bytes: &[u8]) -> Result<Upgrade, OsError> {
    let disk = preflight()?;
    let keys = trusted_keys(&os_config())?;
    let verified = bundle::open(bytes, &keys)
        .map_err(|e| OsError::Refused(format!("{e}; nothing was written")))?;
    let target = disk.current.other();
    let from = running_version();
    let summary = format!(
        "verified Corral {} (signed by key {}); writing it into slot {target} of {} \
         (this system, {from}, runs from slot {})",
        verified.manifest.version, verified.signed_by, disk.dev, disk.current
    );
    Ok(Upgrade {
        disk,
        target,
        verified,
        from,
        summary,
    })
}

impl Upgrade {
    pub fn version(&self) -> &str {
        &self.verified.manifest.version
    }

    /// Writes the slot, checks it, and makes it the next boot's trial.
    pub fn write(self, say: &mut dyn FnMut(String)) -> Result<(), OsError> {
        let Upgrade {
            disk,
            target,
            verified,
            from,
            ..
        } = self;
        let p = &verified.payload;
        let ids = slots::random_ids()?;
        let mut dev = disk.open_rw()?;
        // A half-written slot has no release file (written last), so it
        // is never taken for a complete one.
        image::write_slot(&mut dev, target, Some(p), &ids)?;
        dev.sync_all()
            .map_err(|e| OsError::Failed(format!("{}: syncing: {e}", disk.dev)))?;
        slots::verify_slot(&mut dev, target, p)?;
        say(format!(
            "slot {target} written and read back (kernel {:.1} MB, initramfs {:.1} MB)",
            p.kernel.len() as f64 / 1e6,
            p.initrd.len() as f64 / 1e6
        ));
        drop(dev);
        let to = verified.manifest.version.clone();
        let current = disk.current;
        disk.update_env(|env| {
            // The running slot is the one known to work: the fallback.
            env.set(slots::DEFAULT, current.letter());
            env.set(slots::TRIAL, target.letter());
            env.set(slots::TRIES, "1");
            env.set(slots::FAILED, "");
            env.set(
                slots::UPGRADE,
                format!("{from} -> {to} in slot {target} at {}", slots::now()),
            );
            env.set(slots::OUTCOME, "waiting for its trial boot");
        })?;
        say(format!(
            "the next boot tries Corral {to} from slot {target} once; it stays only if it \
             becomes healthy, otherwise slot {current} ({from}) boots again"
        ));
        Ok(())
    }
}

/// Makes the other slot the default, now, by hand; refused when it holds
/// no complete system.
pub fn rollback() -> Result<String, OsError> {
    let boot = BootInfo::current();
    let disk = BootDisk::find(&boot)?;
    let other = disk.current.other();
    let release = disk.release(other)?.ok_or_else(|| {
        OsError::Refused(format!(
            "slot {other} holds no complete system (empty, or its write did not finish): \
             there is nothing to roll back to"
        ))
    })?;
    let version = version_id(&String::from_utf8_lossy(&release)).unwrap_or_else(|| "?".into());
    let from = running_version();
    disk.update_env(|env| {
        env.set(slots::DEFAULT, other.letter());
        env.set(slots::TRIAL, "");
        env.set(slots::TRIES, "");
        env.set(
            slots::OUTCOME,
            format!(
                "rolled back by hand at {} from {from} (slot {}) to {version} (slot {other})",
                slots::now(),
                disk.current
            ),
        );
    })?;
    // A trial running now is decided too: init stops arming the watchdog.
    super::trial::record_verdict("rolled back by hand");
    Ok(format!(
        "slot {other} ({version}) boots from now on, instead of slot {} ({from})",
        disk.current
    ))
}

/// Whether a path is the bundle size limit's business: bigger files are
/// refused before they are read.
pub fn too_big(len: u64) -> Option<String> {
    (len > bundle::MAX_SIZE).then(|| {
        format!(
            "{} MiB is more than a boot slot holds ({} MiB): not a Corral upgrade bundle",
            len >> 20,
            bundle::MAX_SIZE >> 20
        )
    })
}
