use serde::{Deserialize, Serialize};

use crate::types::{Command, Duration};

/// The `[init]` table: what PID 1 supervises, how it restarts it, and how
/// long it waits at shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct InitConfig {
    /// The service manager: started once the system is mounted, restarted
    /// whenever it exits.
    pub command: Command,
    /// Give the program the console as its controlling terminal (a session
    /// of its own, job control for a shell). Off for daemons.
    pub tty: bool,
    /// Delay before the first restart; doubles with each consecutive
    /// failure.
    pub restart_delay: Duration,
    /// Upper bound of the restart delay.
    pub restart_delay_max: Duration,
    /// Consecutive failures after which init stops restarting and opens a
    /// rescue shell on the console. 0 opens it on the first failure.
    pub max_restarts: u32,
    /// A run at least this long counts as healthy: the failure count and the
    /// delay start over.
    pub stable_after: Duration,
    /// How long the service manager gets to stop after SIGTERM at shutdown.
    pub shutdown_timeout: Duration,
    /// How long every remaining process gets after SIGTERM before SIGKILL.
    pub kill_timeout: Duration,
}

impl Default for InitConfig {
    fn default() -> Self {
        Self {
            // The system container engine, which runs the console among
            // the services. This is also what runs when the config file is
            // unreadable, so it must be something that exists in the
            // initramfs (sysd then falls back to its built-in services).
            command: Command::trusted(&["/usr/bin/sysd"]),
            tty: false,
            restart_delay: Duration::from_millis(500),
            restart_delay_max: Duration::from_secs(30),
            max_restarts: 5,
            stable_after: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            kill_timeout: Duration::from_secs(3),
        }
    }
}

impl InitConfig {
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.restart_delay_max < self.restart_delay {
            return Err((
                "init.restart-delay-max",
                format!(
                    "must be at least restart-delay ({}), is {}",
                    self.restart_delay, self.restart_delay_max
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_supervises_the_container_engine() {
        let d = InitConfig::default();
        assert_eq!(d.command.argv(), ["/usr/bin/sysd"]);
        assert!(!d.tty);
        assert!(d.validate().is_ok());
        // The literal bypassed validation; it must pass it anyway.
        assert!(Command::try_from(d.command.argv().to_vec()).is_ok());
    }
}
