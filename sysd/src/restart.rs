//! When an exited container is started again: the restart policy and an
//! exponential backoff, so a service that crashes at once is retried
//! quickly at first and then at most every [`MAX_DELAY`] instead of in a
//! storm. A run that lasted [`STABLE_AFTER`] resets the delay, as Docker
//! does.

use std::time::Duration;

use corral_config::service::Restart;

pub const INITIAL_DELAY: Duration = Duration::from_millis(100);
pub const MAX_DELAY: Duration = Duration::from_secs(30);
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// How a container's process ended, as far as the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status (a signal death is 128 + signal, as shells
    /// report it).
    Code(i32),
    /// The process ended while the engine was not running (it was adopted
    /// after a restart of the engine), so its status is unknown. Counts as
    /// a failure.
    Unknown,
}

impl Exit {
    pub fn failed(self) -> bool {
        !matches!(self, Exit::Code(0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Restart {
        after: Duration,
    },
    /// The policy says no, or `on-failure` ran out of retries.
    Stop,
}

/// Per-container restart bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    policy: Restart,
    max_retries: u32,
    /// Consecutive short or failed runs.
    failures: u32,
    delay: Duration,
}

impl Backoff {
    pub fn new(policy: Restart, max_retries: u32) -> Self {
        Self {
            policy,
            max_retries,
            failures: 0,
            delay: Duration::ZERO,
        }
    }

    /// Records the end of a run that lasted `ran_for` and decides.
    pub fn on_exit(&mut self, exit: Exit, ran_for: Duration) -> Decision {
        if ran_for >= STABLE_AFTER {
            self.delay = Duration::ZERO;
            self.failures = 0;
        }
        match self.policy {
            Restart::No => return Decision::Stop,
            Restart::OnFailure if !exit.failed() => return Decision::Stop,
            Restart::OnFailure if self.failures >= self.max_retries => return Decision::Stop,
            _ => {}
        }
        if exit.failed() || ran_for < STABLE_AFTER {
            self.failures = self.failures.saturating_add(1);
        }
        self.delay = if self.delay.is_zero() {
            INITIAL_DELAY
        } else {
            (self.delay * 2).min(MAX_DELAY)
        };
        Decision::Restart { after: self.delay }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A manual start or restart begins a new series.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.delay = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_millis(50);

    fn delays(b: &mut Backoff, exit: Exit, n: usize) -> Vec<Decision> {
        (0..n).map(|_| b.on_exit(exit, QUICK)).collect()
    }

    #[test]
    fn always_backs_off_exponentially_up_to_the_cap() {
        let mut b = Backoff::new(Restart::Always, 0);
        let d = delays(&mut b, Exit::Code(1), 12);
        let ms: Vec<u128> = d
            .iter()
            .map(|d| match d {
                Decision::Restart { after } => after.as_millis(),
                Decision::Stop => panic!("always stopped"),
            })
            .collect();
        assert_eq!(
            ms,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]
        );
        // A clean exit is restarted too.
        assert!(matches!(
            b.on_exit(Exit::Code(0), QUICK),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn a_stable_run_resets_the_delay() {
        let mut b = Backoff::new(Restart::Always, 0);
        delays(&mut b, Exit::Code(1), 5);
        assert_eq!(
            b.on_exit(Exit::Code(1), STABLE_AFTER),
            Decision::Restart {
                after: INITIAL_DELAY
            }
        );
        assert_eq!(b.failures(), 1);
    }

    #[test]
    fn on_failure_stops_on_success_and_after_max_retries() {
        let mut b = Backoff::new(Restart::OnFailure, 3);
        assert_eq!(b.on_exit(Exit::Code(0), QUICK), Decision::Stop);
        let d = delays(&mut b, Exit::Code(2), 4);
        assert!(matches!(d[2], Decision::Restart { .. }));
        assert_eq!(d[3], Decision::Stop);
        // An exit whose status was lost counts as a failure.
        let mut b = Backoff::new(Restart::OnFailure, 1);
        assert!(matches!(
            b.on_exit(Exit::Unknown, QUICK),
            Decision::Restart { .. }
        ));
        assert_eq!(b.on_exit(Exit::Unknown, QUICK), Decision::Stop);
    }

    #[test]
    fn no_never_restarts_and_reset_starts_over() {
        let mut b = Backoff::new(Restart::No, 0);
        assert_eq!(b.on_exit(Exit::Code(1), QUICK), Decision::Stop);
        let mut b = Backoff::new(Restart::Always, 0);
        delays(&mut b, Exit::Code(1), 4);
        b.reset();
        assert_eq!(
            b.on_exit(Exit::Code(1), QUICK),
            Decision::Restart {
                after: INITIAL_DELAY
            }
        );
    }
}
