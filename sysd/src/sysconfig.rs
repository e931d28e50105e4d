//! Changing the system config while the machine runs (`corral config set`,
//! `unset`, `edit`): the system engine is the one writer. It edits the
//! state disk's layer, checks the whole stack of layers, writes the file
//! atomically (keeping the previous version), republishes
//! /run/corral/config, and applies what can be applied live.
//!
//! Live: the hostname, sysctls, SSH keys (read at every login), enabling,
//! disabling or redefining services, and the settings the network, syslog
//! and console services read at start (those services are restarted).
//! Everything else — `[init]`, unsetting the hostname or a sysctl,
//! network settings a restart does not undo — is reported as taking effect
//! at the next boot. `[state]` is refused: the state disk is found before
//! its own config is read.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use corral_config::layers::{self, Layer, LayerKind};
use corral_config::service::{self, ServiceName};
use corral_config::{fsutil, Config, ConfigError, EFFECTIVE_PATH, PERSISTED_PATH, RUN_DIR};
use log::{info, warn};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;

/// One change, as the CLI sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    Set {
        key: String,
        value: String,
    },
    Unset {
        key: String,
    },
    /// The whole state layer (`corral config edit`), refused if the file
    /// is no longer `expect` (someone else changed it meanwhile).
    Replace {
        text: String,
        expect: String,
    },
}

/// What a change did, for the CLI to print.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub unchanged: bool,
    pub applied: Vec<String>,
    pub next_boot: Vec<String>,
    /// Keys a higher layer (config drive, kernel command line) overrides.
    pub overridden: Vec<String>,
    /// Warnings about the result (nobody can log in).
    pub notes: Vec<String>,
    pub errors: Vec<String>,
    /// The file is on the state disk (not RAM).
    pub persistent: bool,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Io(String),
}

pub struct Manager {
    engine: Arc<Engine>,
    /// One change at a time, start to finish (file and live state).
    lock: tokio::sync::Mutex<()>,
}

static MANAGER: OnceLock<Manager> = OnceLock::new();

/// Makes the config API available (system role only).
pub fn install(engine: Arc<Engine>) {
    let _ = MANAGER.set(Manager {
        engine,
        lock: tokio::sync::Mutex::new(()),
    });
}

pub fn manager() -> Option<&'static Manager> {
    MANAGER.get()
}

/// The saved config as it is on disk now.
pub fn saved_text() -> Result<String, ChangeError> {
    match std::fs::read_to_string(PERSISTED_PATH) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ChangeError::Io(format!(
            "cannot read {PERSISTED_PATH}: {e}"
        ))),
    }
}

/// The layers as init published them, with the state layer read from
/// the disk. Returns the stack and the index of the state layer.
fn stack(saved: &str) -> Result<(Vec<Layer>, usize), ChangeError> {
    let state = Layer::parse(LayerKind::State, PERSISTED_PATH, saved).map_err(|e| {
        ChangeError::Conflict(format!(
            "the saved config does not parse ({e}); repair it with `corral config edit`"
        ))
    })?;
    let (stack, errors) = layers::published(Path::new(RUN_DIR), Some(state));
    for e in errors {
        warn!("{e}; leaving that layer out");
    }
    let index = stack
        .iter()
        .position(|l| l.kind == LayerKind::State)
        .unwrap_or_default();
    Ok((stack, index))
}

impl Manager {
    pub async fn change(&self, change: Change) -> Result<Report, ChangeError> {
        // One at a time; a second change is told rather than queued (it
        // would wait behind a change that may be starting services).
        let _guard = self.lock.try_lock().map_err(|_| {
            ChangeError::Conflict(
                "another config change is still being applied; try again when it is done".into(),
            )
        })?;
        let saved = saved_text()?;
        let mut unparsable = false;
        let (stack, index) = match (&change, stack(&saved)) {
            // An edit may repair a file that no longer parses.
            (Change::Replace { .. }, Err(ChangeError::Conflict(_))) => {
                unparsable = true;
                let (mut s, i) = stack("")?;
                if let Some(slot) = s.get_mut(i) {
                    *slot = Layer::empty(LayerKind::State, PERSISTED_PATH);
                }
                (s, i)
            }
            (_, r) => r?,
        };
        let old_layer = stack
            .get(index)
            .cloned()
            .unwrap_or_else(|| Layer::empty(LayerKind::State, PERSISTED_PATH));
        // What runs now. A saved file that breaks a rule (edited by hand
        // since the boot) must not block the edit that repairs it.
        let merged_now = if unparsable {
            // What runs is what was published, not the stack without the
            // saved layer.
            Err(ChangeError::Conflict(
                "the saved config does not parse".into(),
            ))
        } else {
            layers::merge(&stack).map_err(ChangeError::from)
        };
        let old = match merged_now {
            Ok(m) => m.config,
            Err(e) => match (&change, Config::load(Path::new(EFFECTIVE_PATH))) {
                (Change::Replace { .. }, Ok(running)) => running,
                _ => {
                    return Err(ChangeError::Conflict(format!(
                        "the saved config breaks a rule ({e}); repair it with `corral config edit`"
                    )))
                }
            },
        };
        let (new_layer, keys) = match &change {
            Change::Set { key, value } => (
                layers::set_in_stack(&stack, index, key, value)?,
                vec![key.clone()],
            ),
            Change::Unset { key } => (
                layers::unset_in_stack(&stack, index, key)?,
                vec![key.clone()],
            ),
            Change::Replace { text, expect } => {
                if *expect != saved {
                    return Err(ChangeError::Conflict(format!(
                        "{PERSISTED_PATH} changed while you were editing it; nothing was saved"
                    )));
                }
                let layer = Layer::parse(LayerKind::State, PERSISTED_PATH, text)?;
                let mut trial = stack.clone();
                if let Some(slot) = trial.get_mut(index) {
                    *slot = layer.clone();
                }
                layers::merge(&trial)?;
                let before = layers::flatten(old_layer.table());
                let after = layers::flatten(layer.table());
                let changed: Vec<String> = before
                    .keys()
                    .chain(after.keys().filter(|k| !before.contains_key(*k)))
                    .filter(|k| before.get(*k) != after.get(*k))
                    .cloned()
                    .collect();
                (layer, changed)
            }
        };
        let mut report = Report {
            persistent: std::fs::read_to_string(corral_config::STATE_STATUS_PATH)
                .is_ok_and(|s| s.starts_with("state disk")),
            ..Default::default()
        };
        if new_layer.table() == old_layer.table() && !matches!(change, Change::Replace { .. }) {
            report.unchanged = true;
            return Ok(report);
        }
        let new_state = new_layer.table().get("state");
        if new_state.is_some() && new_state != old_layer.table().get("state") {
            return Err(invalid(
                "state",
                "the state disk is found before its own config is read, so [state] saved on it \
                 never applies: set it on the config drive or the kernel command line \
                 (corral.state.device=/dev/vdb)"
                    .into(),
            ));
        }
        let mut new_stack = stack.clone();
        if let Some(slot) = new_stack.get_mut(index) {
            *slot = new_layer.clone();
        }
        let merged = layers::merge(&new_stack)?;
        if let (None, Some(why)) = (locked_out(&old), locked_out(&merged.config)) {
            return Err(ChangeError::Conflict(format!(
                "refused: {why}. Give another way in first (ssh.authorized-keys, or \
                 console.autologin = true); a config drive or the kernel command line \
                 can lock the console deliberately"
            )));
        }
        // Kernel parameters first, before anything is saved: one the
        // kernel refuses (no such parameter, a bad value, read-only) would
        // fail at every boot, so the change is refused while the user is
        // looking, and the ones already written are put back.
        let sysctls = write_sysctls(&old, &merged.config)?;
        if let Err(e) = fsutil::write_atomic(
            Path::new(PERSISTED_PATH),
            new_layer.text.as_bytes(),
            0o600,
            true,
        ) {
            // The rename may have happened with only the directory's fsync
            // failing: then the change is saved (if perhaps not durable)
            // and must be applied like any other.
            let now = std::fs::read_to_string(PERSISTED_PATH).ok();
            if now.as_deref() != Some(new_layer.text.as_str()) {
                undo_sysctls(&sysctls);
                return Err(ChangeError::Io(format!(
                    "cannot write {PERSISTED_PATH}: {e}"
                )));
            }
            report.errors.push(format!(
                "{PERSISTED_PATH} was replaced, but syncing it to the disk failed ({e}): \
                 a power cut now could lose this change"
            ));
        }
        info!("config: {PERSISTED_PATH} changed ({})", keys.join(", "));
        report.applied.extend(
            sysctls
                .iter()
                .map(|(key, _, value)| format!("sysctl {key} = {value}")),
        );
        report.errors.extend(layers::publish(
            Path::new(RUN_DIR),
            &new_stack,
            &merged.text,
        ));
        for key in &keys {
            let Ok(path) = layers::parse_key(key) else {
                continue;
            };
            for higher in new_stack.iter().skip(index + 1) {
                if layers::get(higher.table(), &path).is_some() {
                    report.overridden.push(format!(
                        "{key} is also set by the {} layer ({}), which wins",
                        higher.kind, higher.origin
                    ));
                }
            }
        }
        apply(&self.engine, &old, &merged.config, &mut report).await;
        Ok(report)
    }
}

fn invalid(key: &str, message: String) -> ChangeError {
    ChangeError::Invalid(corral_config::Diagnostic::keyed(PERSISTED_PATH, key, message).into())
}

/// A sysctl written live: its name, the value it had, the new value.
type Written = (corral_config::SysctlKey, String, corral_config::SysctlValue);

/// Writes the kernel parameters that changed; on the first refusal puts
/// back the ones written and returns why.
fn write_sysctls(old: &Config, new: &Config) -> Result<Vec<Written>, ChangeError> {
    let mut written: Vec<Written> = Vec::new();
    for (key, value) in &new.sysctl {
        if old.sysctl.get(key) == Some(value) {
            continue;
        }
        let path = key.proc_path();
        let refused = if !path.is_file() {
            Some(format!(
                "this kernel has no such parameter ({} is not a file)",
                path.display()
            ))
        } else {
            // Read first, so a refusal later can put it back.
            match std::fs::read_to_string(&path) {
                Err(e) => Some(format!("cannot read its current value: {e}")),
                Ok(before) => match corral_config::system::write_sysctl(key, value) {
                    Ok(()) => {
                        written.push((key.clone(), before.trim_end().to_owned(), value.clone()));
                        None
                    }
                    Err(e) => Some(format!("the kernel refused {value:?}: {e}")),
                },
            }
        };
        if let Some(message) = refused {
            undo_sysctls(&written);
            return Err(invalid(&format!("sysctl.{key}"), message));
        }
    }
    Ok(written)
}

fn undo_sysctls(written: &[Written]) {
    for (key, before, _) in written.iter().rev() {
        if let Err(e) = std::fs::write(key.proc_path(), before) {
            warn!("putting back sysctl {key} = {before}: {e}");
        }
    }
}

/// Why the config leaves no way in, if it does: the console is off or
/// asks for a login (no account has a password), and SSH is off or has
/// no key.
pub(crate) fn locked_out(c: &Config) -> Option<String> {
    let all = service::merged(&c.services);
    let enabled = |n: &str| {
        all.iter()
            .any(|(name, d)| name.as_str() == n && d.is_enabled())
    };
    let console = enabled("console") && c.console.autologin;
    let ssh = enabled("ssh") && !c.ssh.authorized_keys.is_empty();
    if console || ssh {
        return None;
    }
    Some(
        "with it nobody could log in: the console is disabled or asks for a login \
         (no account has a password), and SSH is disabled or has no key"
            .into(),
    )
}

/// The service that reads each table at start, restarted when it changes.
const READERS: &[(&str, &str)] = &[
    ("network", "network"),
    ("syslog", "syslog"),
    ("console", "console"),
    // Its containers outlive the restart (and keep their addresses until
    // they are started again on a new subnet).
    ("user-engine", "user-engine"),
];

async fn apply(engine: &Arc<Engine>, old: &Config, new: &Config, report: &mut Report) {
    if old.hostname != new.hostname {
        // Unset means the default name, at once.
        use corral_config::hosts;
        let name = hosts::effective(new.hostname.as_ref());
        match nix::unistd::sethostname(name) {
            Ok(()) => {
                report.applied.push(format!("hostname: now {name}"));
                if let Err(e) = hosts::write(std::path::Path::new(hosts::HOSTS_PATH), name) {
                    report.errors.push(format!(
                        "hostname {name}: writing {}: {e}",
                        hosts::HOSTS_PATH
                    ));
                }
            }
            Err(e) => report.errors.push(format!("hostname {name}: {e}")),
        }
    }
    for key in old.sysctl.keys().filter(|k| !new.sysctl.contains_key(*k)) {
        report.next_boot.push(format!(
            "sysctl {key}: no longer set; its current value stays until the next boot"
        ));
    }
    if old.ssh != new.ssh {
        report
            .applied
            .push("ssh: the keys are read at every login".into());
    }
    if old.os != new.os {
        report
            .applied
            .push("os: read by every upgrade and trial boot from now on".into());
    }
    let mut recreated = Vec::new();
    if old.services != new.services {
        recreated = apply_services(engine, old, new, report).await;
    }
    for (table, service) in READERS {
        let changed = match *table {
            "network" => old.network != new.network,
            "syslog" => old.syslog != new.syslog,
            "user-engine" => old.user_engine != new.user_engine,
            _ => old.console != new.console,
        };
        if !changed || recreated.iter().any(|s| s.as_str() == *service) {
            continue;
        }
        match engine.by_name(service) {
            Some((id, true, ..)) => match engine.restart(&id, None).await {
                Ok(()) => report.applied.push(format!(
                    "{table}: the {service} service was restarted to read it"
                )),
                Err(e) => report.errors.push(format!("restarting {service}: {e}")),
            },
            _ => report.applied.push(format!(
                "{table}: saved; the {service} service is not running, it reads it when it starts"
            )),
        }
    }
    if old.init != new.init {
        report
            .next_boot
            .push("init: takes effect at the next boot".into());
    }
    if old.network != new.network {
        report.next_boot.extend(network_leftovers(old, new));
    }
}

/// What restarting the network service does not undo: it configures what
/// the config lists, and does not know what an earlier run set.
fn network_leftovers(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if old.network.interfaces.is_empty() && !new.network.interfaces.is_empty() {
        // Without a list every ethernet interface had DHCP; those not
        // listed now keep their lease.
        for name in ethernet_links() {
            if !new.network.interfaces.contains_key(name.as_str()) {
                out.push(format!(
                    "{name}: no longer configured; its DHCP address stays until the next boot"
                ));
            }
        }
    }
    for (name, before) in &old.network.interfaces {
        let key = format!("network.interfaces.{name}");
        let Some(now) = new.network.interfaces.get(name) else {
            out.push(format!(
                "{key}: no longer configured; the addresses and routes it was given stay until the next boot"
            ));
            continue;
        };
        for a in before.addresses.iter().filter(|a| a.addr.is_ipv6()) {
            if !now.addresses.contains(a) {
                out.push(format!("{key}: {a} is removed at the next boot"));
            }
        }
        if before.mtu.is_some() && now.mtu.is_none() {
            out.push(format!(
                "{key}.mtu: the current MTU stays until the next boot"
            ));
        }
        if before.gateway.is_some() && now.gateway.is_none() {
            out.push(format!(
                "{key}.gateway: the default route stays until the next boot"
            ));
        }
    }
    out
}

/// The ethernet interfaces (ARPHRD_ETHER, type 1) the kernel has.
fn ethernet_links() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out: Vec<String> = dir
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("type")).is_ok_and(|t| t.trim() == "1"))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Stops the services that are now disabled or gone, then starts or
/// recreates the rest (a service whose definition did not change is left
/// alone). Returns the services started or recreated.
async fn apply_services(
    engine: &Arc<Engine>,
    old: &Config,
    new: &Config,
    report: &mut Report,
) -> Vec<ServiceName> {
    let old_all = service::merged(&old.services);
    let new_all = service::merged(&new.services);
    for (name, def) in &old_all {
        let gone = new_all.get(name).is_none_or(|d| !d.is_enabled());
        if !def.is_enabled() || !gone {
            continue;
        }
        if let Some((id, ..)) = engine.by_name(name.as_str()) {
            match engine.remove(&id, true).await {
                Ok(()) => report.applied.push(format!("services.{name}: stopped")),
                Err(e) => report.errors.push(format!("stopping {name}: {e}")),
            }
        }
    }
    let mut plan = match crate::services::plan(engine, &new_all) {
        Ok(p) => p,
        Err(e) => {
            report.errors.push(format!("services: {e}"));
            return Vec::new();
        }
    };
    // Only what the change touched: a service stopped by hand, or an
    // onboot entry that failed, is not the config's business now.
    plan.order
        .retain(|name| old_all.get(name) != new_all.get(name));
    let before: Vec<(ServiceName, Option<String>)> = plan
        .order
        .iter()
        .map(|n| {
            (
                n.clone(),
                engine.by_name(n.as_str()).filter(|c| c.1).map(|c| c.0),
            )
        })
        .collect();
    // An onboot entry that never ends would hold the change (and every
    // later one) forever: what is still starting after this goes on
    // without the change waiting for it.
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);
    if tokio::time::timeout(LIMIT, crate::services::start(engine, &plan))
        .await
        .is_err()
    {
        report.errors.push(format!(
            "services: still starting after {} s; see corral system ps",
            LIMIT.as_secs()
        ));
    }
    let mut changed = Vec::new();
    for (name, old_id) in before {
        let now = engine.by_name(name.as_str()).filter(|c| c.1).map(|c| c.0);
        if now.is_some() && now != old_id {
            report.applied.push(format!(
                "services.{name}: {}",
                if old_id.is_some() {
                    "recreated with its new definition"
                } else {
                    "started"
                }
            ));
            changed.push(name);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_nobody_can_log_in_with_is_recognised() {
        let c = |text: &str| Config::parse(text, "t").unwrap();
        assert_eq!(
            locked_out(&Config::default()),
            None,
            "the console's root shell"
        );
        let key = "[ssh]\nauthorized-keys = [\"ssh-ed25519 AAAAC3Nza k\"]\n";
        assert_eq!(
            locked_out(&c(&format!("[console]\nautologin = false\n{key}"))),
            None
        );
        assert!(locked_out(&c("[console]\nautologin = false\n")).is_some());
        assert!(locked_out(&c(&format!(
            "[console]\nautologin = false\n[services.ssh]\nenabled = false\n{key}"
        )))
        .is_some());
        assert!(locked_out(&c("[services.console]\nenabled = false\n")).is_some());
    }

    #[test]
    fn changes_travel_as_tagged_json() {
        let c = Change::Set {
            key: "hostname".into(),
            value: "a".into(),
        };
        let j = serde_json::to_string(&c).unwrap();
        assert_eq!(j, r#"{"op":"set","key":"hostname","value":"a"}"#);
        assert_eq!(serde_json::from_str::<Change>(&j).unwrap(), c);
        let r: Change = serde_json::from_str(r#"{"op":"unset","key":"syslog.keep"}"#).unwrap();
        assert_eq!(
            r,
            Change::Unset {
                key: "syslog.keep".into()
            }
        );
    }
}
