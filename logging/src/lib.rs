//! The log sink of init and sysd.
//!
//! Every record reaches the console (the process's stderr) and one log:
//! the syslog service through `/dev/log` (the `syslog` crate, RFC 3164,
//! facility daemon) once it is up, the kernel log (`/dev/kmsg`) before
//! and whenever syslog cannot take it. rsyslog reads /dev/kmsg too, so
//! lines from before it started still end up in /var/log/messages, once.
//!
//! Nothing here may block or panic: init is PID 1. The syslog socket is
//! non-blocking (a full queue sends the line to kmsg instead), and a lost
//! connection is retried at most once a second.
//!
//! The kernel echoes a kmsg record to the console only when its level is
//! below the console log level (with `quiet`, only errors); the sink
//! writes to the console itself whenever the kernel will not.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::{Level, Log, Metadata, Record};
use syslog::{Facility, Formatter3164, LoggerBackend};

/// How often a missing or broken syslog connection is retried.
const RETRY: Duration = Duration::from_secs(1);

type Syslog = syslog::Logger<LoggerBackend, Formatter3164>;

struct State {
    kmsg: Option<File>,
    syslog: Option<Syslog>,
    next_try: Option<Instant>,
}

pub struct Sink {
    prefix: &'static str,
    socket: &'static str,
    state: Mutex<State>,
}

/// syslog(3) priority for a log level.
pub fn priority(level: Level) -> u8 {
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

/// One record as the line written to the console and kmsg.
pub fn format_line(prefix: &str, level: Level, message: &str) -> String {
    format!("{prefix}: {}{message}\n", label(level))
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

impl Sink {
    /// `prefix` names the program on the console and in the logs;
    /// `socket` is the syslog socket (`/dev/log`).
    pub const fn new(prefix: &'static str, socket: &'static str) -> Self {
        Self {
            prefix,
            socket,
            state: Mutex::new(State {
                kmsg: None,
                syslog: None,
                next_try: None,
            }),
        }
    }

    /// Starts writing to /dev/kmsg (once devtmpfs is mounted). Returns
    /// whether it could be opened.
    pub fn open_kmsg(&self) -> bool {
        let Ok(f) = OpenOptions::new().write(true).open("/dev/kmsg") else {
            return false;
        };
        if let Ok(mut st) = self.state.lock() {
            st.kmsg = Some(f);
            return true;
        }
        false
    }

    fn connect(&self, st: &mut State) {
        let now = Instant::now();
        if st.syslog.is_some() || st.next_try.is_some_and(|t| now < t) {
            return;
        }
        st.next_try = Some(now + RETRY);
        let formatter = Formatter3164 {
            facility: Facility::LOG_DAEMON,
            hostname: None,
            process: self.prefix.to_owned(),
            pid: std::process::id(),
        };
        if let Ok(logger) = syslog::unix_custom(formatter, self.socket) {
            let nonblocking = match &logger.backend {
                LoggerBackend::Unix(s) => s.set_nonblocking(true).is_ok(),
                // A stream socket could block PID 1: not used.
                _ => false,
            };
            if nonblocking {
                st.syslog = Some(logger);
            }
        }
    }

    /// Sends to syslog; false if it is not there or refused the line.
    fn to_syslog(&self, st: &mut State, level: Level, message: &str) -> bool {
        self.connect(st);
        let Some(logger) = st.syslog.as_mut() else {
            return false;
        };
        let sent = match level {
            Level::Error => logger.err(message),
            Level::Warn => logger.warning(message),
            Level::Info => logger.info(message),
            Level::Debug | Level::Trace => logger.debug(message),
        };
        if sent.is_err() {
            // The daemon went away (restart) or its queue is full: kmsg
            // for now, a new connection later.
            st.syslog = None;
            return false;
        }
        true
    }

    /// Logs one record: syslog or kmsg, and the console unless the kernel
    /// echoes the kmsg record there itself.
    pub fn write(&self, level: Level, message: &str) {
        let line = format_line(self.prefix, level, message);
        let prio = priority(level);
        let mut echoed_by_kernel = false;
        if let Ok(mut st) = self.state.lock() {
            if !self.to_syslog(&mut st, level, message) {
                if let Some(kmsg) = st.kmsg.as_mut() {
                    // One write per record: kmsg makes each write one entry.
                    let written = kmsg.write_all(format!("<{prio}>{line}").as_bytes()).is_ok();
                    echoed_by_kernel = written && console_loglevel().is_some_and(|l| prio < l);
                }
            }
        }
        if !echoed_by_kernel {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

impl Log for Sink {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.write(record.level(), &record.args().to_string());
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn lines_carry_the_prefix_and_the_level() {
        assert_eq!(
            format_line("corral-init", Level::Info, "ready"),
            "corral-init: ready\n"
        );
        assert_eq!(
            format_line("sysd", Level::Warn, "unknown parameter"),
            "sysd: warning: unknown parameter\n"
        );
        assert_eq!(
            format_line("corral-init", Level::Error, "boom"),
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

    #[test]
    fn goes_to_syslog_once_it_listens_and_survives_its_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let socket: &'static str = Box::leak(path.to_string_lossy().into_owned().into_boxed_str());
        let sink = Sink::new("corral-test", socket);

        // Not listening yet: nothing to send to.
        let mut st = sink.state.lock().unwrap();
        assert!(!sink.to_syslog(&mut st, Level::Info, "early"));
        drop(st);

        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // The retry waits a second after the failed attempt.
        std::thread::sleep(RETRY);
        sink.write(Level::Warn, "hello syslog");
        let mut buf = [0u8; 1024];
        let n = server.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        // daemon (3) * 8 + warning (4) = 28.
        assert!(got.starts_with("<28>"), "{got}");
        assert!(
            got.contains(&format!(
                "corral-test[{}]: hello syslog",
                std::process::id()
            )),
            "{got}"
        );

        // The daemon restarts: its new socket is found again.
        drop(server);
        std::fs::remove_file(&path).unwrap();
        sink.write(Level::Info, "lost");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        std::thread::sleep(RETRY);
        sink.write(Level::Info, "back");
        let n = server.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("back"));
    }
}
