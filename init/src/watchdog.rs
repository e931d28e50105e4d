//! The hardware watchdog during the trial boot of an upgrade.
//!
//! A trial boot that hangs (the kernel stuck, init stuck, the machine
//! wedged) would otherwise sit there until someone presses reset. So on a
//! trial boot (`corral.trial` from GRUB) init opens `/dev/watchdog` as soon
//! as it has read the config (which sets the deadline), sets a short timeout and keeps it fed from a thread of its own
//! until the system engine records the trial's verdict
//! (`TRIAL_VERDICT_PATH`): then it disarms it (the "magic close", a `V`
//! before closing). If no verdict comes within the trial deadline and a
//! grace period, it stops feeding it and the watchdog resets the machine;
//! GRUB then boots the previous slot (`metal/grub-disk.cfg`). Outside a
//! trial boot the watchdog is left alone.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use corral_config::TRIAL_VERDICT_PATH;
use log::{error, info, warn};

const DEVICE: &str = "/dev/watchdog";
/// The reset comes this long after the last feed.
const TIMEOUT_SECS: i32 = 30;
const FEED_EVERY: Duration = Duration::from_secs(5);
/// Past the deadline, how long the system engine still gets to decide
/// (it checks at the deadline, then reboots cleanly itself).
const GRACE: Duration = Duration::from_secs(60);

/// Arms the watchdog for a trial boot with `deadline` from the kernel's
/// start (`booted_ago` ago).
pub fn arm(deadline: Duration, booted_ago: Duration) {
    let dev = match open() {
        Some(d) => d,
        None => return,
    };
    let spawned = std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || feed(dev, deadline, booted_ago));
    if let Err(e) = spawned {
        // Unfed, the device resets the machine: the trial fails safe.
        error!("cannot start the watchdog thread: {e}; the watchdog will reset the machine");
    }
}

fn open() -> Option<File> {
    // Built-in drivers have probed by the time init runs; a moment more
    // for a slow bus.
    for attempt in 0..5 {
        match OpenOptions::new().write(true).open(DEVICE) {
            Ok(dev) => {
                match crate::sys::set_watchdog_timeout(&dev, TIMEOUT_SECS) {
                    Ok(t) => info!("trial boot: hardware watchdog armed ({t} s)"),
                    Err(e) => warn!("trial boot: watchdog armed, with its own timeout ({e})"),
                }
                return Some(dev);
            }
            Err(e) if attempt == 4 => {
                warn!(
                    "trial boot: no hardware watchdog ({DEVICE}: {e}): a hang of this boot \
                     needs a manual reset to go back to the previous slot"
                );
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
    None
}

fn feed(mut dev: File, deadline: Duration, booted_ago: Duration) {
    let start = Instant::now();
    let give_up = deadline + GRACE;
    loop {
        if let Ok(verdict) = std::fs::read_to_string(Path::new(TRIAL_VERDICT_PATH)) {
            // The magic close: the driver stops the timer.
            let closed = dev.write_all(b"V").and_then(|()| dev.flush());
            drop(dev);
            match closed {
                Ok(()) => info!("trial boot decided ({}): watchdog disarmed", verdict.trim()),
                Err(e) => warn!("trial boot decided; disarming the watchdog: {e}"),
            }
            return;
        }
        if booted_ago + start.elapsed() >= give_up {
            error!(
                "trial boot: undecided {} s after boot: no longer feeding the watchdog, \
                 which resets the machine into the previous slot",
                give_up.as_secs()
            );
            // Keep the device open: closing it without the magic `V`
            // leaves it running too, but an open, unfed device is the
            // plainest way to say so.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        if let Err(e) = dev.write_all(b"\0") {
            warn!("feeding the watchdog: {e}");
        }
        std::thread::sleep(FEED_EVERY);
    }
}
