//! How a child ended, decoded once from `waitpid` so the rest of init deals
//! in a typed value instead of raw wait statuses.

use std::fmt;

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

/// The end of a process: a normal exit with a code, or death by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    /// The raw signal number, so real-time signals (which `Signal` does not
    /// cover) are kept too.
    Signaled {
        signal: i32,
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// The pid and how it ended, for a status that means the process is
    /// gone. Stops and continues (which init never asks for) give `None`.
    pub fn from_wait(status: WaitStatus) -> Option<(Pid, Self)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, Self::Exited(code))),
            WaitStatus::Signaled(pid, signal, core_dumped) => Some((
                pid,
                Self::Signaled {
                    signal: signal as i32,
                    core_dumped,
                },
            )),
            _ => None,
        }
    }

    /// Decodes a raw `wait(2)` status word (the encoding behind
    /// `WIFEXITED`, `WTERMSIG` and friends).
    pub fn from_raw(raw: i32) -> Option<Self> {
        if libc::WIFEXITED(raw) {
            Some(Self::Exited(libc::WEXITSTATUS(raw)))
        } else if libc::WIFSIGNALED(raw) {
            Some(Self::Signaled {
                signal: libc::WTERMSIG(raw),
                core_dumped: libc::WCOREDUMP(raw),
            })
        } else {
            None
        }
    }

    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled { signal, .. } => 128 + signal,
        }
    }

    pub fn success(self) -> bool {
        self == Self::Exited(0)
    }
}

/// `SIGKILL`, or `signal 40` for numbers without a name.
pub fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Exited(code) => write!(f, "exited with status {code}"),
            Self::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "was killed by {}", signal_name(signal))?;
                if core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_wait_statuses() {
        assert_eq!(ExitStatus::from_raw(0), Some(ExitStatus::Exited(0)));
        assert_eq!(ExitStatus::from_raw(1 << 8), Some(ExitStatus::Exited(1)));
        assert_eq!(
            ExitStatus::from_raw(255 << 8),
            Some(ExitStatus::Exited(255))
        );
        assert_eq!(
            ExitStatus::from_raw(9),
            Some(ExitStatus::Signaled {
                signal: 9,
                core_dumped: false
            })
        );
        assert_eq!(
            ExitStatus::from_raw(0x80 | 11),
            Some(ExitStatus::Signaled {
                signal: 11,
                core_dumped: true
            })
        );
        // Stopped by SIGSTOP (0x7f in the low byte): not an end.
        assert_eq!(ExitStatus::from_raw((19 << 8) | 0x7f), None);
        // Continued.
        assert_eq!(ExitStatus::from_raw(0xffff), None);
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        let killed = ExitStatus::Signaled {
            signal: 15,
            core_dumped: false,
        };
        assert_eq!(killed.code(), 143);
        assert!(ExitStatus::Exited(0).success());
        assert!(!ExitStatus::Exited(1).success());
        assert!(!killed.success());
    }

    #[test]
    fn describes_exits_for_people() {
        assert_eq!(ExitStatus::Exited(1).to_string(), "exited with status 1");
        assert_eq!(
            ExitStatus::Signaled {
                signal: 9,
                core_dumped: false
            }
            .to_string(),
            "was killed by SIGKILL"
        );
        assert_eq!(
            ExitStatus::Signaled {
                signal: 11,
                core_dumped: true
            }
            .to_string(),
            "was killed by SIGSEGV (core dumped)"
        );
        assert_eq!(
            ExitStatus::Signaled {
                signal: 40,
                core_dumped: false
            }
            .to_string(),
            "was killed by signal 40"
        );
    }

    #[test]
    fn from_wait_keeps_the_pid() {
        let pid = Pid::from_raw(42);
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Exited(pid, 7)),
            Some((pid, ExitStatus::Exited(7)))
        );
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Signaled(pid, Signal::SIGTERM, false)),
            Some((
                pid,
                ExitStatus::Signaled {
                    signal: 15,
                    core_dumped: false
                }
            ))
        );
        assert_eq!(ExitStatus::from_wait(WaitStatus::StillAlive), None);
    }
}
