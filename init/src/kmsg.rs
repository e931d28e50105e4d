//! init's logger: every line goes to the kernel log (`/dev/kmsg`, read with
//! `dmesg`) with a `corral-init:` prefix, and is guaranteed to reach the
//! console too.
//!
//! The kernel echoes a kmsg record to the console only when its level is
//! below the console log level (with `quiet`, only errors). init's progress
//! lines, and the ready marker tests wait for, must be visible either way,
//! so the logger writes to the console itself whenever the kernel will not.
//! Before /dev is mounted there is no /dev/kmsg and everything goes to the
//! console.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

pub const PREFIX: &str = "corral-init";

pub struct KmsgLogger {
    kmsg: Mutex<Option<File>>,
}

static LOGGER: KmsgLogger = KmsgLogger {
    kmsg: Mutex::new(None),
};

/// Installs the logger (console only until [`open_kmsg`]). Safe to call
/// more than once.
pub fn install(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Starts writing to /dev/kmsg, once devtmpfs is mounted. Also lifts the
/// kernel's rate limit on userspace kmsg writes (10 lines per 5 s by
/// default), which would otherwise drop init's lines during a busy boot.
pub fn open_kmsg() {
    let _ = crate::sys::write_knob(Path::new("/proc/sys/kernel/printk_devkmsg"), "on\n");
    if let Ok(f) = OpenOptions::new().write(true).open("/dev/kmsg") {
        if let Ok(mut slot) = LOGGER.kmsg.lock() {
            *slot = Some(f);
        }
    }
}

/// syslog(3) priority for a log level.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

fn label(level: Level) -> &'static str {
    match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug | Level::Trace => "debug: ",
    }
}

/// The console log level: records with a priority below it are printed on
/// the console by the kernel (the first field of /proc/sys/kernel/printk).
fn console_loglevel() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/printk")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Formats one record as the line written to the console.
pub fn format_line(level: Level, message: &str) -> String {
    format!("{PREFIX}: {}{message}\n", label(level))
}

impl Log for KmsgLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(record.level(), &record.args().to_string());
        let prio = priority(record.level());
        let mut echoed_by_kernel = false;
        if let Ok(mut slot) = self.kmsg.lock() {
            if let Some(kmsg) = slot.as_mut() {
                // One write per record: kmsg turns each write into one entry.
                let written = kmsg.write_all(format!("<{prio}>{line}").as_bytes()).is_ok();
                echoed_by_kernel = written && console_loglevel().is_some_and(|l| prio < l);
            }
        }
        if !echoed_by_kernel {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_prefix_and_the_level() {
        assert_eq!(format_line(Level::Info, "ready"), "corral-init: ready\n");
        assert_eq!(
            format_line(Level::Warn, "unknown parameter"),
            "corral-init: warning: unknown parameter\n"
        );
        assert_eq!(
            format_line(Level::Error, "boom"),
            "corral-init: error: boom\n"
        );
    }

    #[test]
    fn priorities_are_syslog_levels() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Debug), 7);
    }
}
