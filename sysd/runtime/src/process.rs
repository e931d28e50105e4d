//! A running container process, followed through a pidfd so that a
//! recycled pid is never signalled by mistake.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::{sys, Error};

#[derive(Debug)]
pub struct Process {
    pub pid: Pid,
    /// Readable once the process has exited.
    pub pidfd: OwnedFd,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot): with the
    /// pid, what identifies this process across engine restarts.
    pub start_time: u64,
}

/// The start time of `pid` from `/proc/<pid>/stat`.
pub fn start_time(pid: Pid) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses; the
    // fields after its closing parenthesis start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl Process {
    /// Finds a process an earlier engine started: `None` if `pid` is gone
    /// or is now another process (a different start time).
    pub fn adopt(pid: i32, start: u64) -> Result<Option<Process>, Error> {
        let pid = Pid::from_raw(pid);
        // Open first, then check: the pidfd pins this exact process.
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(Errno::ESRCH) => return Ok(None),
            Err(e) => {
                return Err(Error::Start {
                    id: String::new(),
                    step: format!("pidfd_open({pid})"),
                    source: e.into(),
                })
            }
        };
        match start_time(pid) {
            Some(t) if t == start => Ok(Some(Process {
                pid,
                pidfd,
                start_time: t,
            })),
            _ => Ok(None),
        }
    }

    /// Whether the process still runs (or is a zombie not yet reaped) and
    /// its pid still names it.
    pub fn is_alive(&self) -> bool {
        sys::pidfd_send_signal(self.pidfd.as_raw_fd(), 0).is_ok()
            && start_time(self.pid) == Some(self.start_time)
    }

    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        match sys::pidfd_send_signal(self.pidfd.as_raw_fd(), signal as i32) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(Error::Start {
                id: String::new(),
                step: format!("sending {signal} to {}", self.pid),
                source: e.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100";
        assert_eq!(parse_start_time(stat), Some(98765));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn adopt_checks_the_start_time() {
        let me = Pid::this();
        let t = start_time(me).unwrap();
        assert!(Process::adopt(me.as_raw(), t).unwrap().is_some());
        assert!(Process::adopt(me.as_raw(), t + 1).unwrap().is_none());
    }
}
