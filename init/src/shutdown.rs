//! The three ways the machine can go down, and the signals that ask for
//! them. The signal numbers follow busybox and sysvinit, so their
//! `poweroff`, `reboot` and `halt` applets, `kill -USR2 1`, and the kernel's
//! ctrl-alt-del (SIGINT) and power-failure (SIGPWR) notifications all work.

use std::fmt;

use nix::sys::reboot::RebootMode;
use nix::sys::signal::Signal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    Reboot,
    Poweroff,
    Halt,
}

impl Shutdown {
    /// The shutdown a signal to PID 1 asks for, if any.
    pub fn from_signal(signal: Signal) -> Option<Self> {
        match signal {
            Signal::SIGTERM | Signal::SIGINT => Some(Self::Reboot),
            Signal::SIGUSR2 | Signal::SIGPWR => Some(Self::Poweroff),
            Signal::SIGUSR1 => Some(Self::Halt),
            _ => None,
        }
    }

    /// The signal the `poweroff`, `reboot` and `halt` commands send to PID 1.
    pub fn signal(self) -> Signal {
        match self {
            Self::Reboot => Signal::SIGTERM,
            Self::Poweroff => Signal::SIGUSR2,
            Self::Halt => Signal::SIGUSR1,
        }
    }

    /// The command name that asks for it (also init's name when called by
    /// that name).
    pub fn from_command(name: &str) -> Option<Self> {
        match name {
            "reboot" => Some(Self::Reboot),
            "poweroff" => Some(Self::Poweroff),
            "halt" => Some(Self::Halt),
            _ => None,
        }
    }

    pub fn mode(self) -> RebootMode {
        match self {
            Self::Reboot => RebootMode::RB_AUTOBOOT,
            Self::Poweroff => RebootMode::RB_POWER_OFF,
            Self::Halt => RebootMode::RB_HALT_SYSTEM,
        }
    }

    /// "rebooting", "powering off", "halting".
    pub fn progressive(self) -> &'static str {
        match self {
            Self::Reboot => "rebooting",
            Self::Poweroff => "powering off",
            Self::Halt => "halting",
        }
    }
}

impl fmt::Display for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reboot => "reboot",
            Self::Poweroff => "poweroff",
            Self::Halt => "halt",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_follow_busybox_conventions() {
        assert_eq!(
            Shutdown::from_signal(Signal::SIGTERM),
            Some(Shutdown::Reboot)
        );
        assert_eq!(
            Shutdown::from_signal(Signal::SIGINT),
            Some(Shutdown::Reboot)
        );
        assert_eq!(
            Shutdown::from_signal(Signal::SIGUSR2),
            Some(Shutdown::Poweroff)
        );
        assert_eq!(
            Shutdown::from_signal(Signal::SIGPWR),
            Some(Shutdown::Poweroff)
        );
        assert_eq!(Shutdown::from_signal(Signal::SIGUSR1), Some(Shutdown::Halt));
        assert_eq!(Shutdown::from_signal(Signal::SIGCHLD), None);
        assert_eq!(Shutdown::from_signal(Signal::SIGHUP), None);
    }

    #[test]
    fn commands_send_the_signal_that_means_them() {
        for name in ["reboot", "poweroff", "halt"] {
            let kind = Shutdown::from_command(name).unwrap();
            assert_eq!(kind.to_string(), name);
            assert_eq!(Shutdown::from_signal(kind.signal()), Some(kind));
        }
        assert_eq!(Shutdown::from_command("init"), None);
    }
}
