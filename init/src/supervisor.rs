//! Supervision of the one program init runs: the service manager, or the
//! rescue shell in its place.
//!
//! This is a pure state machine over `Instant`s: it decides what should run
//! and when, and the event loop in `pid1` does the spawning, reaping and
//! sleeping. That keeps every transition testable without processes.

use std::fmt;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::backoff::{Backoff, Decision};
use crate::status::ExitStatus;

/// Why the rescue shell is (about to be) running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RescueReason {
    /// `corral.rescue` on the kernel command line.
    Requested,
    /// The service manager failed too often in a row.
    GaveUp { failures: u32, last: String },
}

impl fmt::Display for RescueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requested => f.write_str("corral.rescue is on the kernel command line"),
            Self::GaveUp { failures, last } => write!(
                f,
                "failed {failures} times in a row (last: {last}); init stopped restarting it"
            ),
        }
    }
}

/// What init runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    ServiceManager,
    Rescue(RescueReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Start `job` once `at` has passed.
    StartAt {
        job: Job,
        at: Instant,
    },
    Running {
        job: Job,
        pid: Pid,
        since: Instant,
    },
    /// Shutting down: nothing is started any more.
    Stopped,
}

/// What happened, for init to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service manager ended and will be started again.
    Restarting {
        after: Duration,
        attempt: u32,
        max: u32,
    },
    /// The service manager keeps failing; the rescue shell is next.
    GivingUp { failures: u32 },
    /// The rescue shell ended; the service manager is started again.
    RescueEnded,
    /// The rescue shell could not be started; trying again later.
    RescueRetry { after: Duration },
}

/// How long to wait before trying again to start a rescue shell that could
/// not be started (a missing /bin/sh will not appear by itself, but the
/// console should not fill up with the same error either).
pub const RESCUE_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Supervisor {
    backoff: Backoff,
    state: State,
}

impl Supervisor {
    /// Starts the service manager at once, or the rescue shell first when
    /// `rescue` is set.
    pub fn new(backoff: Backoff, rescue: bool, now: Instant) -> Self {
        let job = if rescue {
            Job::Rescue(RescueReason::Requested)
        } else {
            Job::ServiceManager
        };
        Self {
            backoff,
            state: State::StartAt { job, at: now },
        }
    }

    /// When `due` will next have something to start.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::StartAt { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// The job to start now, if its time has come.
    pub fn due(&self, now: Instant) -> Option<Job> {
        match &self.state {
            State::StartAt { job, at } if *at <= now => Some(job.clone()),
            _ => None,
        }
    }

    /// Records that `job` was started as `pid`.
    pub fn started(&mut self, job: Job, pid: Pid, now: Instant) {
        if self.state != State::Stopped {
            self.state = State::Running {
                job,
                pid,
                since: now,
            };
        }
    }

    /// Records that `job` could not be started (exec failed). For the
    /// service manager this counts as a failure that lasted no time at all.
    pub fn start_failed(&mut self, job: Job, error: &str, now: Instant) -> Outcome {
        match job {
            Job::ServiceManager => {
                self.service_manager_ended(Duration::ZERO, error.to_owned(), now)
            }
            Job::Rescue(reason) => {
                self.state = State::StartAt {
                    job: Job::Rescue(reason),
                    at: now + RESCUE_RETRY,
                };
                Outcome::RescueRetry {
                    after: RESCUE_RETRY,
                }
            }
        }
    }

    /// Records the end of a child. Returns `None` when `pid` is not the
    /// supervised program (an orphan init reaped).
    pub fn exited(&mut self, pid: Pid, status: ExitStatus, now: Instant) -> Option<Outcome> {
        let State::Running {
            job,
            pid: running,
            since,
        } = &self.state
        else {
            return None;
        };
        if *running != pid {
            return None;
        }
        let ran_for = now.saturating_duration_since(*since);
        Some(match job {
            Job::ServiceManager => self.service_manager_ended(ran_for, status.to_string(), now),
            Job::Rescue(_) => {
                self.backoff.reset();
                self.state = State::StartAt {
                    job: Job::ServiceManager,
                    at: now,
                };
                Outcome::RescueEnded
            }
        })
    }

    fn service_manager_ended(&mut self, ran_for: Duration, last: String, now: Instant) -> Outcome {
        match self.backoff.on_exit(ran_for) {
            Decision::Restart { after, attempt } => {
                self.state = State::StartAt {
                    job: Job::ServiceManager,
                    at: now + after,
                };
                Outcome::Restarting {
                    after,
                    attempt,
                    max: self.backoff.max_restarts(),
                }
            }
            Decision::GiveUp { failures } => {
                self.state = State::StartAt {
                    job: Job::Rescue(RescueReason::GaveUp { failures, last }),
                    at: now,
                };
                Outcome::GivingUp { failures }
            }
        }
    }

    /// The running program, if any: what it is and its pid.
    pub fn running(&self) -> Option<(&Job, Pid)> {
        match &self.state {
            State::Running { job, pid, .. } => Some((job, *pid)),
            _ => None,
        }
    }

    /// Stops starting anything (shutdown). Returns what is still running,
    /// for init to signal.
    pub fn stop(&mut self) -> Option<(Job, Pid)> {
        match std::mem::replace(&mut self.state, State::Stopped) {
            State::Running { job, pid, .. } => Some((job, pid)),
            _ => None,
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sup(rescue: bool, t0: Instant) -> Supervisor {
        Supervisor::new(Backoff::new(ms(100), ms(400), 3, ms(10_000)), rescue, t0)
    }

    const FAIL: ExitStatus = ExitStatus::Exited(1);

    #[test]
    fn starts_the_service_manager_at_once() {
        let t0 = Instant::now();
        let s = sup(false, t0);
        assert_eq!(s.deadline(), Some(t0));
        assert_eq!(s.due(t0), Some(Job::ServiceManager));
    }

    #[test]
    fn restarts_with_backoff_then_opens_the_rescue_shell() {
        let t0 = Instant::now();
        let mut s = sup(false, t0);
        let mut now = t0;
        let mut pid = 100;
        let mut delays = vec![];
        loop {
            let job = s.due(now).expect("something is due");
            if let Job::Rescue(reason) = job {
                assert_eq!(
                    reason,
                    RescueReason::GaveUp {
                        failures: 4,
                        last: "exited with status 1".into()
                    }
                );
                break;
            }
            s.started(Job::ServiceManager, Pid::from_raw(pid), now);
            assert_eq!(s.due(now), None, "nothing is due while it runs");
            now += ms(5);
            match s.exited(Pid::from_raw(pid), FAIL, now).unwrap() {
                Outcome::Restarting {
                    after,
                    attempt,
                    max,
                } => {
                    assert_eq!(max, 3);
                    assert_eq!(attempt as usize, delays.len() + 1);
                    delays.push(after);
                    assert_eq!(s.due(now), None, "not before the delay");
                    now = s.deadline().unwrap();
                }
                Outcome::GivingUp { failures } => assert_eq!(failures, 4),
                other => panic!("{other:?}"),
            }
            pid += 1;
        }
        assert_eq!(delays, [ms(100), ms(200), ms(400)]);
    }

    #[test]
    fn other_pids_are_not_the_supervised_program() {
        let t0 = Instant::now();
        let mut s = sup(false, t0);
        s.started(Job::ServiceManager, Pid::from_raw(10), t0);
        assert_eq!(s.exited(Pid::from_raw(11), FAIL, t0), None);
        assert_eq!(s.running().map(|(_, p)| p), Some(Pid::from_raw(10)));
    }

    #[test]
    fn rescue_first_then_the_service_manager_with_a_clean_slate() {
        let t0 = Instant::now();
        let mut s = sup(true, t0);
        assert_eq!(s.due(t0), Some(Job::Rescue(RescueReason::Requested)));
        s.started(Job::Rescue(RescueReason::Requested), Pid::from_raw(5), t0);
        assert_eq!(
            s.exited(Pid::from_raw(5), ExitStatus::Exited(0), t0 + ms(1)),
            Some(Outcome::RescueEnded)
        );
        assert_eq!(s.due(t0 + ms(1)), Some(Job::ServiceManager));
    }

    #[test]
    fn after_the_rescue_shell_failures_count_from_zero() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::new(ms(100), ms(400), 0, ms(10_000)), false, t0);
        s.started(Job::ServiceManager, Pid::from_raw(1), t0);
        assert_eq!(
            s.exited(Pid::from_raw(1), FAIL, t0),
            Some(Outcome::GivingUp { failures: 1 })
        );
        let Some(rescue @ Job::Rescue(_)) = s.due(t0) else {
            panic!("rescue expected")
        };
        s.started(rescue, Pid::from_raw(2), t0);
        s.exited(Pid::from_raw(2), ExitStatus::Exited(0), t0);
        s.started(Job::ServiceManager, Pid::from_raw(3), t0);
        assert_eq!(
            s.exited(Pid::from_raw(3), FAIL, t0),
            Some(Outcome::GivingUp { failures: 1 })
        );
    }

    #[test]
    fn exec_failures_count_and_the_rescue_shell_is_retried() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(Backoff::new(ms(100), ms(400), 1, ms(10_000)), false, t0);
        assert!(matches!(
            s.start_failed(Job::ServiceManager, "No such file or directory", t0),
            Outcome::Restarting { attempt: 1, .. }
        ));
        let t1 = s.deadline().unwrap();
        assert_eq!(
            s.start_failed(Job::ServiceManager, "No such file or directory", t1),
            Outcome::GivingUp { failures: 2 }
        );
        let Some(Job::Rescue(RescueReason::GaveUp { last, .. })) = s.due(t1) else {
            panic!("rescue expected");
        };
        assert_eq!(last, "No such file or directory");
        assert_eq!(
            s.start_failed(Job::Rescue(RescueReason::Requested), "gone", t1),
            Outcome::RescueRetry {
                after: RESCUE_RETRY
            }
        );
        assert_eq!(s.deadline(), Some(t1 + RESCUE_RETRY));
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        let t0 = Instant::now();
        let mut s = sup(false, t0);
        s.started(Job::ServiceManager, Pid::from_raw(1), t0);
        s.exited(Pid::from_raw(1), FAIL, t0 + ms(1));
        let t1 = s.deadline().unwrap();
        s.started(Job::ServiceManager, Pid::from_raw(2), t1);
        assert_eq!(
            s.exited(Pid::from_raw(2), FAIL, t1 + ms(10_000)),
            Some(Outcome::Restarting {
                after: ms(100),
                attempt: 1,
                max: 3
            })
        );
    }

    #[test]
    fn stop_returns_the_running_program_and_starts_nothing_more() {
        let t0 = Instant::now();
        let mut s = sup(false, t0);
        s.started(Job::ServiceManager, Pid::from_raw(9), t0);
        assert_eq!(s.stop(), Some((Job::ServiceManager, Pid::from_raw(9))));
        assert!(s.is_stopped());
        assert_eq!(s.due(t0 + ms(100_000)), None);
        assert_eq!(s.deadline(), None);
        s.started(Job::ServiceManager, Pid::from_raw(10), t0);
        assert!(s.running().is_none());
        assert_eq!(s.stop(), None);
    }

    #[test]
    fn rescue_reasons_read_well() {
        assert_eq!(
            RescueReason::GaveUp {
                failures: 6,
                last: "exited with status 1".into()
            }
            .to_string(),
            "failed 6 times in a row (last: exited with status 1); init stopped restarting it"
        );
    }
}
