//! init's logger: the shared sink (`corral-log`) under the `corral-init`
//! prefix. Every line reaches the console and one log: the syslog service
//! through /dev/log once it is up, /dev/kmsg before (read with `dmesg`,
//! and by the syslog service). Before /dev is mounted there is no
//! /dev/kmsg and everything goes to the console only.

use std::path::Path;

use corral_log::Sink;
use log::LevelFilter;

pub const PREFIX: &str = "corral-init";

static LOGGER: Sink = Sink::new(PREFIX, "/dev/log");

/// Installs the logger (console only until [`open_kmsg`]). Safe to call
/// more than once.
pub fn install(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Starts writing to /dev/kmsg, once devtmpfs is mounted. Also lifts the
/// kernel's rate limit on userspace kmsg writes (10 lines per 5 s by
/// default), which would otherwise drop init's (and sysd's) lines during
/// a busy boot.
pub fn open_kmsg() {
    let _ = crate::sys::write_knob(Path::new("/proc/sys/kernel/printk_devkmsg"), "on\n");
    LOGGER.open_kmsg();
}
