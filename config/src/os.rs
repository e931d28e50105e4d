//! `[os]`: upgrades of the operating system itself (`corral os upgrade`)
//! and the trial boot that decides whether an upgrade stays.

use serde::{Deserialize, Serialize};

use crate::types::{Command, Duration};

/// `[os]`: who may sign an upgrade and what an upgraded system must show
/// on its trial boot before it becomes the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct OsConfig {
    /// The minisign public keys (the base64 line of a `.pub` file,
    /// `RW...`) whose signatures an upgrade bundle may carry. Empty: the
    /// key of the build this system runs (`RELEASE_KEY_PATH`).
    pub trusted_keys: Vec<String>,
    /// How long a trial boot has, from the kernel's start, to become
    /// healthy; after it the machine reboots into the previous slot.
    pub trial_deadline: Duration,
    /// A command that must exit 0 on the trial boot, after everything
    /// else is healthy, for the upgrade to stay (run on the host by the
    /// system engine, retried until the deadline).
    pub health_check: Option<Command>,
}

/// The public key of the build's own release key, in the initramfs
/// (`make release` signs with its secret half).
pub const RELEASE_KEY_PATH: &str = "/usr/share/corral/release.pub";

/// Where the system engine records that a trial boot is decided
/// ("promoted", or why not): init arms the hardware watchdog during a
/// trial boot until this file appears.
pub const TRIAL_VERDICT_PATH: &str = "/run/corral/trial-verdict";

/// The shortest trial deadline: a boot to healthy takes tens of seconds
/// even on fast machines, and a deadline below it would roll back every
/// upgrade.
const MIN_TRIAL_DEADLINE: u64 = 30;

impl Default for OsConfig {
    fn default() -> Self {
        Self {
            trusted_keys: Vec::new(),
            trial_deadline: Duration::from_secs(300),
            health_check: None,
        }
    }
}

impl OsConfig {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        for (i, key) in self.trusted_keys.iter().enumerate() {
            if let Err(e) = minisign_verify::PublicKey::from_base64(key.trim()) {
                return Err((
                    format!("os.trusted-keys[{i}]"),
                    format!(
                        "{key:?} is not a minisign public key ({e}): give the base64 line of a \
                         .pub file, which starts with RW"
                    ),
                ));
            }
        }
        if self.trial_deadline.get() < std::time::Duration::from_secs(MIN_TRIAL_DEADLINE) {
            return Err((
                "os.trial-deadline".into(),
                format!(
                    "{} is too short for a boot to become healthy: give at least {MIN_TRIAL_DEADLINE}s",
                    self.trial_deadline
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_deadlines_are_checked() {
        let ok = OsConfig {
            trusted_keys: vec!["RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3".into()],
            ..OsConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let bad = OsConfig {
            trusted_keys: vec!["ssh-ed25519 AAAA".into()],
            ..OsConfig::default()
        };
        let (key, msg) = bad.validate().unwrap_err();
        assert_eq!(key, "os.trusted-keys[0]");
        assert!(msg.contains("minisign public key"), "{msg}");
        let short = OsConfig {
            trial_deadline: Duration::from_secs(5),
            ..OsConfig::default()
        };
        assert_eq!(short.validate().unwrap_err().0, "os.trial-deadline");
    }

    #[test]
    fn parses_from_the_config() {
        let c = crate::Config::parse(
            "[os]\ntrial-deadline = \"2m\"\nhealth-check = [\"/bin/true\"]\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.os.trial_deadline, Duration::from_secs(120));
        assert_eq!(c.os.health_check.unwrap().program(), "/bin/true");
        let e = crate::Config::parse("[os]\ntrusted-keys = [\"nope\"]\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml:2") && e.contains("os.trusted-keys"),
            "{e}"
        );
    }
}
