//! The state partition of an installed disk, made at its first boot.
//!
//! `make disk` writes an image that ends after slot B, so that it can be
//! written to a disk of any size; `corral install` also leaves the state
//! for the first boot when asked to. When the boot menu says it booted a
//! slot (`corral.slot`), init finds the disk holding that slot's partition
//! and, if it has no `CORRAL_STATE` partition yet, adds one filling the
//! disk (moving the backup GPT to the disk's real end) and has the kernel
//! re-read the table. `state::setup` then formats the new, blank partition
//! as it formats a blank disk.
//!
//! The partition table code runs in a child process (init's own binary
//! called as `corral-state-part`): a table the GPT library cannot parse
//! must not be able to take PID 1 down with it.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use log::{error, info, warn};

/// The applet's name (argv[0]).
pub const APPLET: &str = "corral-state-part";

/// Runs the applet for the disk holding `slot`'s partition and logs what
/// it did. Never fails init: without a state partition Corral runs from
/// RAM and says why.
pub fn prepare(slot: char) {
    let want = format!("CORRAL_{}", slot.to_ascii_uppercase());
    let Some(disk) = corral_disk::sysfs::disk_of(Path::new("/sys/class/block"), &want) else {
        warn!("booted from slot {slot}, but no partition is named {want}");
        return;
    };
    let out = Command::new("/init")
        .arg0(APPLET)
        .arg(format!("/dev/{disk}"))
        .output();
    match out {
        Ok(o) => {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                info!("{line}");
            }
            for line in String::from_utf8_lossy(&o.stderr).lines() {
                error!("{line}");
            }
            if !o.status.success() {
                error!("{APPLET} /dev/{disk} failed ({})", o.status);
            }
        }
        Err(e) => error!("cannot run {APPLET}: {e}"),
    }
}

/// The applet: adds the state partition to DEVICE if it has none, then
/// has the kernel re-read the table. Prints what it did.
pub fn main(args: &[String]) -> std::process::ExitCode {
    let Some(dev) = args.get(1) else {
        eprintln!("usage: {APPLET} DEVICE");
        return std::process::ExitCode::from(2);
    };
    match run(dev) {
        Ok(msg) => {
            println!("{msg}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{dev}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(dev: &str) -> Result<String, String> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| format!("opening: {e}"))?;
    let before = corral_disk::table::read(&mut file)
        .map_err(|e| e.to_string())?
        .ok_or("no GPT")?;
    if let Some(p) = before.get(corral_disk::STATE.name) {
        return Ok(format!(
            "{dev}: state partition {} ({} MiB)",
            p.number,
            p.len >> 20
        ));
    }
    let mut random = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let guid = uuid::Builder::from_random_bytes(random).into_uuid();
    let (_, len) = corral_disk::table::add_state(&mut file, guid).map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| format!("syncing: {e}"))?;
    corral_disk::sys::reread_partitions(&file)
        .map_err(|e| format!("re-reading the partition table: {e}"))?;
    Ok(format!(
        "{dev}: added state partition {} ({} MiB) filling the disk",
        corral_disk::STATE.number,
        len >> 20
    ))
}
