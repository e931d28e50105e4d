//! The restart policy for the supervised service manager: exponential
//! backoff between restarts, a reset after a healthy run, and giving up
//! after too many failures in a row so a crash loop ends in a rescue shell
//! instead of a console full of the same error.

use std::time::Duration;

use corral_config::InitConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    max_restarts: u32,
    stable_after: Duration,
    /// Consecutive short runs, including the one just reported.
    failures: u32,
}

/// What to do after the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay. `attempt` counts restarts in the
    /// current run of failures, from 1 to `max_restarts`.
    Restart { after: Duration, attempt: u32 },
    /// Too many failures in a row: stop restarting.
    GiveUp { failures: u32 },
}

impl Backoff {
    pub fn new(
        initial: Duration,
        max: Duration,
        max_restarts: u32,
        stable_after: Duration,
    ) -> Self {
        Self {
            initial,
            max,
            max_restarts,
            stable_after,
            failures: 0,
        }
    }

    pub fn from_config(c: &InitConfig) -> Self {
        Self::new(
            c.restart_delay.get(),
            c.restart_delay_max.get(),
            c.max_restarts,
            c.stable_after.get(),
        )
    }

    pub fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    /// Records that the program ended after running for `ran_for` (zero if
    /// it could not be started at all) and decides what happens next.
    pub fn on_exit(&mut self, ran_for: Duration) -> Decision {
        if ran_for >= self.stable_after {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures > self.max_restarts {
            return Decision::GiveUp {
                failures: self.failures,
            };
        }
        Decision::Restart {
            after: self.delay(self.failures),
            attempt: self.failures,
        }
    }

    /// Forgets past failures (after the rescue shell, the next failure is
    /// the first again).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// initial × 2^(n−1), capped at max, without overflowing for large n.
    fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn restart_after(d: Decision) -> Duration {
        match d {
            Decision::Restart { after, .. } => after,
            other => panic!("expected a restart, got {other:?}"),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_then_it_gives_up() {
        let mut b = Backoff::new(ms(500), ms(3000), 5, ms(30_000));
        let delays: Vec<_> = (0..5).map(|_| restart_after(b.on_exit(ms(10)))).collect();
        assert_eq!(delays, [ms(500), ms(1000), ms(2000), ms(3000), ms(3000)]);
        assert_eq!(b.on_exit(ms(10)), Decision::GiveUp { failures: 6 });
    }

    #[test]
    fn attempts_are_numbered() {
        let mut b = Backoff::new(ms(1), ms(10), 3, ms(1000));
        for expected in 1..=3 {
            match b.on_exit(ms(0)) {
                Decision::Restart { attempt, .. } => assert_eq!(attempt, expected),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_stable_run_resets_the_count() {
        let mut b = Backoff::new(ms(100), ms(10_000), 3, ms(5000));
        b.on_exit(ms(1));
        b.on_exit(ms(1));
        assert_eq!(restart_after(b.on_exit(ms(1))), ms(400));
        // Ran long enough to count as healthy: back to the first delay.
        assert_eq!(restart_after(b.on_exit(ms(5000))), ms(100));
        assert_eq!(restart_after(b.on_exit(ms(1))), ms(200));
    }

    #[test]
    fn zero_max_restarts_gives_up_at_once() {
        let mut b = Backoff::new(ms(100), ms(100), 0, ms(1000));
        assert_eq!(b.on_exit(ms(1)), Decision::GiveUp { failures: 1 });
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(ms(100), ms(1000), 2, ms(1000));
        b.on_exit(ms(1));
        b.on_exit(ms(1));
        assert!(matches!(b.on_exit(ms(1)), Decision::GiveUp { .. }));
        b.reset();
        assert_eq!(restart_after(b.on_exit(ms(1))), ms(100));
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let mut b = Backoff::new(
            Duration::from_secs(u64::MAX / 4),
            Duration::MAX,
            u32::MAX,
            Duration::MAX,
        );
        for _ in 0..100 {
            let d = restart_after(b.on_exit(ms(0)));
            assert!(d <= Duration::MAX);
        }
        assert_eq!(b.delay(u32::MAX), Duration::MAX);
    }
}
