//! Choosing between KVM and TCG.
//!
//! On the project's development and CI machines `/dev/kvm` exists but KVM
//! guests hang at boot, so KVM is only used after a probe boot (the trivial
//! floor init, which powers off at once) finishes in time. The answer is
//! cached in `out/.accel-probe` per host boot and kernel, so the probe's
//! cost is paid once, not per VM.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::machine::{Accel, Console, Machine, VmConfig};

/// Overrides the choice: `CORRAL_ACCEL=kvm` or `tcg`.
pub const ENV: &str = "CORRAL_ACCEL";

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// KVM or TCG for `requested`, probing when it is `Auto`.
pub fn resolve(requested: Accel, kernel: &Path) -> Accel {
    let requested = std::env::var(ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(requested);
    match requested {
        Accel::Auto => probe_cached(kernel),
        other => other,
    }
}

fn probe_cached(kernel: &Path) -> Accel {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Accel::Tcg;
    }
    let out = crate::out_dir();
    let floor = out.join("floor-initramfs.img");
    if !floor.exists() {
        return Accel::Tcg;
    }
    let key = cache_key(kernel);
    let cache = out.join(".accel-probe");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Some(answer) = text.strip_prefix(&format!("{key} ")) {
            if let Ok(a) = answer.trim().parse() {
                return a;
            }
        }
    }
    let answer = if probe_kvm(kernel, &floor) {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let _ = std::fs::write(&cache, format!("{key} {answer}\n"));
    answer
}

/// Host boot id plus the kernel's size and mtime: a new boot or a new
/// kernel probes again.
fn cache_key(kernel: &Path) -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let meta = std::fs::metadata(kernel).ok();
    let stamp = meta
        .map(|m| {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            format!("{}-{mtime}", m.len())
        })
        .unwrap_or_default();
    format!("{}:{stamp}", boot.trim())
}

/// Boots the floor initramfs under KVM; true if it powered off in time.
fn probe_kvm(kernel: &Path, floor: &Path) -> bool {
    let config = VmConfig {
        name: "kvm-probe".into(),
        kernel: kernel.to_owned(),
        initrd: floor.to_owned(),
        append: vec![],
        quiet: true,
        memory_mb: 128,
        ssh_port: 0,
        forwards: Vec::new(),
        drives: vec![],
        machine: Machine::Microvm,
        accel: Accel::Kvm,
        console: Console::Piped,
        boot: crate::machine::Boot::Kernel,
        reboot: false,
    };
    let mut args = config.qemu_args(Accel::Kvm, 0, floor);
    // No forwarding needed; port 0 is not valid for hostfwd.
    if let Some(i) = args.iter().position(|a| a.starts_with("user,id=net0")) {
        args[i] = "user,id=net0".to_owned();
    }
    let Ok(mut child) = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// The host TSC frequency for `tsc_early_khz`, with a plausible default if
/// /proc/cpuinfo does not say.
pub fn host_tsc_khz() -> u64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| crate::machine::tsc_khz(&c))
        .unwrap_or(2_000_000)
}
