//! The trial boot after an upgrade, and the report after a rollback.
//!
//! On a trial boot (`corral.trial` from GRUB) the system engine, once it
//! has started the services, checks every 2 s that the system is
//! healthy:
//! - init has mounted the state disk;
//! - every enabled service is running, every onboot entry has exited 0;
//! - the network service has configured every interface;
//! - `[os] health-check`, if set, exits 0.
//!
//! Healthy before `[os] trial-deadline` (counted from the kernel's start):
//! the slot becomes the default. Not healthy by then: the reasons go to
//! grubenv and the machine reboots; GRUB, finding the trial not promoted,
//! boots the previous slot. A panic or a hang (init arms the hardware
//! watchdog for the trial, `init/src/watchdog.rs`) ends in the same
//! reset. The previous slot's engine then reports what happened
//! ([`report_rollback`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use corral_config::service::{Kind, ServiceDef, ServiceName};
use corral_config::{OsConfig, TRIAL_VERDICT_PATH};
use corral_disk::bundle::version_id;
use log::{error, info, warn};

use super::boot::BootInfo;
use super::slots::{self, BootDisk};
use crate::engine::Engine;
use crate::state::Status;

const STEP: Duration = Duration::from_secs(2);
/// How long one run of the user's health check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
const STATE_MOUNT: &str = "/var/lib/corral";

/// Tells init the trial is decided (it disarms the watchdog).
pub fn record_verdict(verdict: &str) {
    if let Err(e) = corral_config::fsutil::write_atomic(
        std::path::Path::new(TRIAL_VERDICT_PATH),
        format!("{verdict}\n").as_bytes(),
        0o644,
        false,
    ) {
        error!("writing {TRIAL_VERDICT_PATH}: {e}");
    }
}

fn uptime() -> Duration {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or_default()
}

/// Runs the trial of this boot, if it is one; returns when it is decided
/// (a failed trial ends in a reboot).
pub async fn watch(engine: Arc<Engine>, defs: BTreeMap<ServiceName, ServiceDef>, os: OsConfig) {
    let boot = BootInfo::current();
    if !boot.trial {
        return;
    }
    let disk = match BootDisk::find(&boot) {
        Ok(d) => d,
        Err(e) => {
            error!("trial boot: {e}; the watchdog will reset the machine to the previous slot");
            return;
        }
    };
    let slot = disk.current;
    match disk.env() {
        Ok(env) if env.get(slots::TRIAL) != Some(slot.letter()) => {
            // Decided already in this boot (the engine restarted since).
            info!("trial of slot {slot}: decided already");
            record_verdict("decided earlier in this boot");
            return;
        }
        Ok(_) => {}
        Err(e) => warn!("trial boot: reading grubenv: {e}"),
    }
    let version = version_id(&slots::running_release()).unwrap_or_else(|| "?".into());
    let deadline = os.trial_deadline.get();
    info!(
        "trial boot of Corral {version} in slot {slot}: it stays if healthy within {} of boot",
        os.trial_deadline
    );
    let mut last = Vec::new();
    loop {
        let problems = problems(&engine, &defs, &os).await;
        if problems.is_empty() {
            promote(&disk, &version).await;
            return;
        }
        if problems != last {
            info!("trial boot: not healthy yet: {}", problems.join("; "));
            last = problems.clone();
        }
        if uptime() >= deadline {
            fail(&disk, &version, &problems, os.trial_deadline.to_string()).await;
            return;
        }
        tokio::time::sleep(STEP).await;
    }
}

async fn promote(disk: &BootDisk, version: &str) {
    let slot = disk.current;
    let secs = uptime().as_secs();
    let d = disk.clone();
    let outcome = format!("promoted at {} (healthy {secs} s after boot)", slots::now());
    let written = tokio::task::spawn_blocking(move || {
        d.update_env(|env| {
            env.set(slots::DEFAULT, slot.letter());
            env.set(slots::TRIAL, "");
            env.set(slots::TRIES, "");
            env.set(slots::OUTCOME, outcome);
        })
    })
    .await;
    match written {
        Ok(Ok(_)) => {
            info!("trial boot: healthy after {secs} s: Corral {version} in slot {slot} is now the default");
            record_verdict("promoted");
        }
        Ok(Err(e)) => error!(
            "trial boot: healthy, but making slot {slot} the default failed: {e}; \
             the next boot falls back to the previous slot"
        ),
        Err(e) => error!("trial boot: {e}"),
    }
}

async fn fail(disk: &BootDisk, version: &str, problems: &[String], deadline: String) {
    let slot = disk.current;
    let why = format!(
        "the trial boot of Corral {version} (slot {slot}) was not healthy {deadline} after boot: {}",
        problems.join("; ")
    );
    error!("{why}; rebooting into the previous slot");
    let d = disk.clone();
    let record = why.clone();
    match tokio::task::spawn_blocking(move || {
        d.update_env(|env| env.set(slots::OUTCOME, slots::short(&format!("failed: {record}"))))
    })
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => error!("recording the failed trial in grubenv: {e}"),
        Err(e) => error!("recording the failed trial: {e}"),
    }
    record_verdict("failed");
    // GRUB already counted this boot (corral_tries=0): whatever reboots
    // now comes back on the previous slot.
    if let Err(e) = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(1),
        nix::sys::signal::Signal::SIGTERM,
    ) {
        error!("asking init to reboot: {e}");
    }
}

/// What keeps this boot from being healthy; empty when it is.
async fn problems(
    engine: &Engine,
    defs: &BTreeMap<ServiceName, ServiceDef>,
    os: &OsConfig,
) -> Vec<String> {
    let mut p = Vec::new();
    if !state_mounted() {
        let status = std::fs::read_to_string(corral_config::STATE_STATUS_PATH).unwrap_or_default();
        p.push(format!(
            "the state disk is not mounted on {STATE_MOUNT} ({})",
            status.trim()
        ));
    }
    for (name, def) in defs {
        if !def.is_enabled() {
            continue;
        }
        let onboot = def.kind() == Kind::Onboot;
        match engine.by_name(name.as_str()) {
            None => p.push(format!("{name} was not created")),
            Some((_, running, _, status, code)) => {
                if onboot {
                    match (status, code) {
                        (Status::Exited, Some(0)) => {}
                        (Status::Exited, c) => p.push(format!(
                            "onboot {name} exited with {}",
                            c.map_or("no status".into(), |c| c.to_string())
                        )),
                        _ => p.push(format!("onboot {name} has not finished")),
                    }
                } else if !running {
                    p.push(match code {
                        Some(c) => format!("service {name} is not running (exited with {c})"),
                        None => format!("service {name} is not running"),
                    });
                }
            }
        }
    }
    let network = defs
        .iter()
        .any(|(n, d)| n.as_str() == "network" && d.is_enabled());
    if network && !std::path::Path::new(corral_config::NET_CONFIGURED_PATH).exists() {
        p.push("the network service has not configured every interface".into());
    }
    if p.is_empty() {
        if let Some(cmd) = &os.health_check {
            if let Err(e) = run_check(cmd).await {
                p.push(e);
            }
        }
    }
    p
}

fn state_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(STATE_MOUNT))
}

async fn run_check(cmd: &corral_config::Command) -> Result<(), String> {
    let run = tokio::process::Command::new(cmd.program())
        .args(cmd.args())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(CHECK_TIMEOUT, run).await {
        Err(_) => Err(format!(
            "the health check `{cmd}` did not finish within {} s",
            CHECK_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("the health check `{cmd}` could not run: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or("").trim();
            Err(format!(
                "the health check `{cmd}` failed ({}){}",
                out.status,
                if last.is_empty() {
                    String::new()
                } else {
                    format!(": {last}")
                }
            ))
        }
    }
}

/// On a normal boot from a slot: reports (once) a trial that GRUB rolled
/// back, and records why in grubenv for `corral os version`.
pub fn report_rollback() {
    let boot = BootInfo::current();
    if boot.trial || boot.slot.is_none() {
        return;
    }
    let Ok(disk) = BootDisk::find(&boot) else {
        return;
    };
    let env = match disk.env() {
        Ok(e) => e,
        Err(e) => {
            warn!("reading grubenv: {e}");
            return;
        }
    };
    let Some(failed) = env.get(slots::FAILED).map(str::to_owned) else {
        return;
    };
    let upgrade = env.get(slots::UPGRADE).unwrap_or("an upgrade").to_owned();
    let why = match env
        .get(slots::OUTCOME)
        .and_then(|o| o.strip_prefix("failed: "))
    {
        Some(reason) => reason.to_owned(),
        None => format!(
            "the trial boot of slot {failed} did not become healthy: it did not get as far as \
             the health check's verdict (a kernel panic, a broken initramfs, a hang the \
             watchdog reset, or a power loss)"
        ),
    };
    let outcome = format!("rolled back at {}: {why}", slots::now());
    error!(
        "UPGRADE ROLLED BACK: {upgrade}: {why}; running slot {} ({}) again",
        disk.current,
        version_id(&slots::running_release()).unwrap_or_else(|| "?".into())
    );
    if let Err(e) = disk.update_env(|env| {
        env.set(slots::FAILED, "");
        env.set(slots::OUTCOME, slots::short(&outcome));
    }) {
        error!("recording the rollback in grubenv: {e}");
    }
}
