//! PID 1: boot set-up, then one loop that reaps children, restarts the
//! service manager and waits for signals, until a shutdown signal takes the
//! machine down.
//!
//! The rules of this module: nothing here returns an error to a caller that
//! could exit, nothing panics (the crate denies `unwrap`, `expect`, `panic!`
//! and slice indexing), and every failure is logged once and worked around,
//! because PID 1 exiting is a kernel panic.

use std::path::Path;
use std::time::{Duration, Instant};

use corral_config::InitConfig;
use log::{debug, error, info, warn, LevelFilter};
use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::backoff::Backoff;
use crate::bootconfig;
use crate::cmdline::Cmdline;
use crate::mounts::{self, Teardown};
use crate::shutdown::Shutdown;
use crate::status::ExitStatus;
use crate::supervisor::{Job, Outcome, RescueReason, Supervisor};
use crate::sys::{self, Linux, Stdio3};
use crate::{console, kmsg, net, procs};

/// The rescue shell. Busybox's, from the initramfs.
const RESCUE_SHELL: &str = "/bin/sh";

/// How long processes get to die after SIGKILL before init stops waiting.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// How often shutdown looks at /proc while waiting for processes to exit.
const POLL_STEP: Duration = Duration::from_millis(50);

/// Everything init needs after boot set-up.
struct Pid1 {
    config: InitConfig,
    mask: SigSet,
    supervisor: Supervisor,
    /// Whether the ready marker has been printed (once per boot).
    announced: bool,
    /// Set while shutdown waits for the service manager: its pid, and
    /// whether it has been reaped.
    stopping: Option<(Pid, bool)>,
    booted: Instant,
}

/// Runs PID 1. Never returns: the machine ends in reboot(2).
pub fn run() -> ! {
    sys::ensure_stdio();
    kmsg::install(LevelFilter::Info);
    if crate::switchroot::needed() {
        // Only returns on failure; on success this process is replaced by
        // /init on the new root.
        let e = crate::switchroot::switch();
        error!("cannot move the root filesystem to a tmpfs: {e}; containers will not start");
    }
    // Block the signals init handles before anything can send them; they
    // stay pending until the loop takes them with sigtimedwait.
    let mask = handled_signals();
    if let Err(e) = mask.thread_block() {
        // Unblocked signals without handlers are ignored for PID 1, so
        // shutdown signals would be lost; still better to keep running.
        error!("cannot block signals: {e}; shutdown by signal will not work");
    }
    info!("starting Corral init {}", env!("CARGO_PKG_VERSION"));
    let (config, rescue) = boot();
    // After the mask is set: the watcher threads inherit it.
    crate::powerbutton::watch();
    let booted = Instant::now();
    let mut pid1 = Pid1 {
        supervisor: Supervisor::new(Backoff::from_config(&config), rescue, booted),
        config,
        mask,
        announced: false,
        stopping: None,
        booted,
    };
    pid1.main_loop()
}

fn handled_signals() -> SigSet {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPWR,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    mask
}

/// Mounts, command line, config, hostname, loopback, cgroups. Returns the
/// `[init]` settings and whether a rescue shell was asked for.
fn boot() -> (InitConfig, bool) {
    let report = mounts::mount_all(&Linux, mounts::BOOT_MOUNTS);
    kmsg::open_kmsg();
    for failure in &report.failed {
        error!("mounting {failure}");
    }
    if !report.already.is_empty() {
        debug!("already mounted: {}", report.already.join(" "));
    }
    mounts::create_dev_symlinks(&Linux);

    let cmdline = match std::fs::read_to_string("/proc/cmdline") {
        Ok(text) => Cmdline::parse(&text),
        Err(e) => {
            error!("cannot read /proc/cmdline: {e}; ignoring the kernel command line");
            Cmdline::default()
        }
    };
    if cmdline.debug {
        log::set_max_level(LevelFilter::Debug);
    }
    for w in &cmdline.warnings {
        warn!("kernel command line: {w}");
    }

    // The config drive and the command line can say where the state disk
    // is, so they are read first; the state disk's own file comes after.
    let (defaults, defaults_status) = bootconfig::defaults();
    let (drive, drive_status) = bootconfig::drive_layer();
    let mut layers = bootconfig::Layers {
        defaults,
        state: None,
        drive,
        params: cmdline.config.clone(),
    };
    let (_, early, _) = layers.merged(true);
    if let Some(slot) = cmdline.slot {
        info!(
            "booted from slot {}{}",
            slot.to_ascii_uppercase(),
            if cmdline.trial { " on trial" } else { "" }
        );
        crate::statepart::prepare(slot);
    } else if cmdline.live {
        info!("live system: booted from the ISO, root in RAM");
    }
    let outcome = crate::state::setup(&early.config.state);
    let (state, state_status) = bootconfig::state_layer(&layers);
    if state.is_some() && !matches!(outcome, crate::state::Outcome::Mounted { .. }) {
        warn!("the saved config is in RAM: it will not survive a reboot");
    }
    layers.state = state;
    let (stack, merged, notes) = layers.merged(false);
    let mut status = vec![defaults_status, state_status, drive_status];
    status.extend(notes);
    bootconfig::publish(&stack, &merged, &status);
    let config = merged.config;
    if cmdline.trial {
        crate::watchdog::arm(
            config.os.trial_deadline.get(),
            Duration::from_secs_f64(uptime_secs()),
        );
    }

    let name = corral_config::hosts::effective(config.hostname.as_ref());
    match nix::unistd::sethostname(name) {
        Ok(()) => info!("hostname {name}"),
        Err(e) => error!("cannot set hostname {name}: {e}"),
    }
    let hosts = Path::new(corral_config::hosts::HOSTS_PATH);
    if let Err(e) = corral_config::hosts::write(hosts, name) {
        error!("cannot write {}: {e}", hosts.display());
    }
    bootconfig::apply_sysctls(&config);
    match net::set_link_up("lo") {
        Ok(()) => debug!("lo is up"),
        Err(e) => error!("cannot bring up the loopback interface: {e}"),
    }
    match mounts::enable_cgroup_controllers(Path::new("/sys/fs/cgroup")) {
        Ok((enabled, failed)) => {
            debug!("cgroup controllers enabled: {}", enabled.join(" "));
            for f in failed {
                warn!("cgroup controller {f}");
            }
        }
        Err(e) => error!("cannot enable cgroup controllers: {e}"),
    }
    // ctrl-alt-del becomes SIGINT to init instead of an immediate reset,
    // so it goes through the clean shutdown.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        warn!("cannot route ctrl-alt-del to init: {e}");
    }
    (config.init, cmdline.rescue)
}

impl Pid1 {
    fn main_loop(&mut self) -> ! {
        loop {
            self.reap();
            if let Some(job) = self.supervisor.due(Instant::now()) {
                self.start(job);
                // Something may be due again at once (an exec failure with
                // no delay); look before sleeping.
                continue;
            }
            let timeout = self
                .supervisor
                .deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            match sys::wait_signal(&self.mask, timeout) {
                Ok(Some(signo)) => self.on_signal(signo),
                Ok(None) => {}
                Err(e) => {
                    error!("waiting for signals: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn on_signal(&mut self, signo: i32) {
        let Ok(signal) = Signal::try_from(signo) else {
            return;
        };
        if let Some(kind) = Shutdown::from_signal(signal) {
            self.shutdown(kind, signal);
        }
        // SIGCHLD: reaping happens at the top of the loop. SIGHUP: nothing
        // to reload yet.
    }

    /// Reaps every child that has ended, orphans included, until none is
    /// left to reap.
    fn reap(&mut self) {
        let mut orphans = 0u32;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => {
                    if let Some((pid, status)) = ExitStatus::from_wait(status) {
                        if !self.child_ended(pid, status) {
                            orphans += 1;
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    error!("waitpid: {e}");
                    break;
                }
            }
        }
        if orphans > 0 {
            debug!("reaped {orphans} orphaned process(es)");
        }
    }

    /// Returns whether `pid` was the supervised program.
    fn child_ended(&mut self, pid: Pid, status: ExitStatus) -> bool {
        if let Some((stopping, reaped)) = &mut self.stopping {
            if *stopping == pid {
                *reaped = true;
                info!("{} (pid {pid}) {status}", self.config.command.program());
                return true;
            }
        }
        let job = self.supervisor.running().map(|(job, _)| job.clone());
        let Some(outcome) = self.supervisor.exited(pid, status, Instant::now()) else {
            return false;
        };
        let name = match job {
            Some(Job::Rescue(_)) => RESCUE_SHELL.to_owned(),
            _ => self.config.command.to_string(),
        };
        match outcome {
            Outcome::Restarting {
                after,
                attempt,
                max,
            } => warn!(
                "{name} (pid {pid}) {status}; restarting in {} (restart {attempt} of {max})",
                corral_config::Duration::from(after)
            ),
            Outcome::GivingUp { failures } => {
                error!("{name} (pid {pid}) {status}; that is {failures} failures in a row")
            }
            Outcome::RescueEnded => info!(
                "rescue shell {status}; starting {} again",
                self.config.command
            ),
            Outcome::RescueRetry { .. } => {}
        }
        true
    }

    fn start(&mut self, job: Job) {
        let now = Instant::now();
        let result = match &job {
            Job::ServiceManager => {
                let cmd = &self.config.command;
                let stdio = self.stdio(self.config.tty);
                sys::spawn(cmd.program(), cmd.args(), self.env(false), stdio)
            }
            Job::Rescue(reason) => {
                let console = console::device(Path::new("/sys"), Path::new("/dev"));
                match reason {
                    RescueReason::Requested => {
                        warn!("rescue shell requested ({reason})")
                    }
                    RescueReason::GaveUp { .. } => {
                        error!("{} {reason}", self.config.command)
                    }
                }
                error!(
                    "starting a rescue shell on {}; exit it to start {} again",
                    console.display(),
                    self.config.command
                );
                let stdio = self.stdio(true);
                sys::spawn(RESCUE_SHELL, &[], self.env(true), stdio)
            }
        };
        match result {
            Ok(pid) => {
                if job == Job::ServiceManager {
                    info!("started {} (pid {pid})", self.config.command);
                    if !self.announced {
                        self.announced = true;
                        info!("ready (uptime {:.2} s)", uptime_secs());
                    }
                }
                self.supervisor.started(job, pid, now);
            }
            Err(e) => {
                let program = match &job {
                    Job::ServiceManager => self.config.command.program(),
                    Job::Rescue(_) => RESCUE_SHELL,
                };
                let what = e.to_string();
                error!("cannot start {program}: {what}");
                match self.supervisor.start_failed(job, &what, now) {
                    Outcome::Restarting {
                        after,
                        attempt,
                        max,
                    } => warn!(
                        "trying {program} again in {} (restart {attempt} of {max})",
                        corral_config::Duration::from(after)
                    ),
                    Outcome::RescueRetry { after } => {
                        warn!("trying the rescue shell again in {} s", after.as_secs())
                    }
                    Outcome::GivingUp { .. } | Outcome::RescueEnded => {}
                }
            }
        }
    }

    /// The console as a terminal, or init's own output when there is none.
    fn stdio(&self, tty: bool) -> Stdio3 {
        if !tty {
            return Stdio3::Daemon;
        }
        let device = console::device(Path::new("/sys"), Path::new("/dev"));
        match sys::open_terminal(&device) {
            Ok(f) => Stdio3::Terminal(f),
            Err(e) => {
                warn!(
                    "cannot open {} as a terminal: {e}; starting without one",
                    device.display()
                );
                Stdio3::Daemon
            }
        }
    }

    /// The environment of init's children: nothing inherited from the
    /// kernel except TERM.
    fn env(&self, rescue: bool) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ),
            ("HOME", "/root".to_owned()),
            (
                "TERM",
                std::env::var("TERM").unwrap_or_else(|_| "linux".to_owned()),
            ),
        ];
        if rescue {
            env.push(("PS1", "(rescue) \\w # ".to_owned()));
        }
        env
    }

    /// Takes the machine down: the service manager first, then every other
    /// process, then the filesystems, then reboot(2). Never returns.
    fn shutdown(&mut self, kind: Shutdown, signal: Signal) -> ! {
        info!("{kind} requested ({signal}); shutting down");
        if let Some((job, pid)) = self.supervisor.stop() {
            let name = match job {
                Job::ServiceManager => self.config.command.program().to_owned(),
                Job::Rescue(_) => RESCUE_SHELL.to_owned(),
            };
            self.stop_supervised(&name, pid);
        }
        self.terminate_everything();
        nix::unistd::sync();
        self.unmount_everything();
        nix::unistd::sync();
        info!(
            "{} (uptime {:.2} s, up {:.2} s since init started)",
            kind.progressive(),
            uptime_secs(),
            self.booted.elapsed().as_secs_f64()
        );
        log::logger().flush();
        let Err(e) = nix::sys::reboot::reboot(kind.mode());
        error!("reboot(2) failed: {e}; the system is halted, power it off by hand");
        // Only reached if reboot(2) failed. PID 1 must not exit: keep
        // reaping whatever is left, forever.
        loop {
            let _ = sys::wait_signal(&self.mask, None);
            self.reap();
        }
    }

    /// SIGTERM (and SIGHUP for a terminal session, since an interactive
    /// shell ignores SIGTERM) to the service manager's process group, then
    /// wait for it up to the shutdown timeout.
    fn stop_supervised(&mut self, name: &str, pid: Pid) {
        let timeout = self.config.shutdown_timeout;
        info!("stopping {name} (pid {pid}, up to {timeout})");
        self.stopping = Some((pid, false));
        let group = Pid::from_raw(-pid.as_raw());
        let mut signals = vec![Signal::SIGTERM];
        if self.config.tty || name == RESCUE_SHELL {
            signals.push(Signal::SIGHUP);
        }
        // A stopped process cannot act on SIGTERM until continued.
        signals.push(Signal::SIGCONT);
        for s in signals {
            // The group reaches its children; the pid itself covers a
            // program that moved to another process group.
            let _ = kill(group, s);
            let _ = kill(pid, s);
        }
        let deadline = Instant::now() + timeout.get();
        let stopped = self.wait_until(deadline, |p| matches!(p.stopping, Some((_, true))));
        if !stopped {
            warn!("{name} did not stop within {timeout}; going on");
        }
        self.stopping = None;
    }

    /// SIGTERM to every process, then SIGKILL to what is left after the kill
    /// timeout.
    fn terminate_everything(&mut self) {
        let me = nix::unistd::getpid().as_raw();
        let none_left =
            |_: &Self| procs::userspace(Path::new("/proc"), me).is_ok_and(|list| list.is_empty());
        if none_left(self) {
            return;
        }
        let count = procs::userspace(Path::new("/proc"), me).map_or(0, |l| l.len());
        info!("sending SIGTERM to {count} remaining process(es)");
        let all = Pid::from_raw(-1);
        let _ = kill(all, Signal::SIGTERM);
        let _ = kill(all, Signal::SIGCONT);
        let timeout = self.config.kill_timeout;
        if self.wait_until(Instant::now() + timeout.get(), none_left) {
            return;
        }
        let left = procs::userspace(Path::new("/proc"), me).unwrap_or_default();
        warn!(
            "sending SIGKILL to {} process(es) still running {timeout} after SIGTERM: {}",
            left.len(),
            describe(&left)
        );
        let _ = kill(all, Signal::SIGKILL);
        if !self.wait_until(Instant::now() + KILL_WAIT, none_left) {
            let left = procs::userspace(Path::new("/proc"), me).unwrap_or_default();
            warn!(
                "{} process(es) survived SIGKILL (stuck in the kernel?): {}",
                left.len(),
                describe(&left)
            );
        }
    }

    fn unmount_everything(&mut self) {
        let text = match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(t) => t,
            Err(e) => {
                error!("cannot read /proc/self/mountinfo: {e}; not unmounting");
                return;
            }
        };
        let order = mounts::unmount_order(&mounts::parse_mountinfo(&text));
        for (m, result) in mounts::unmount_all(&Linux, &order) {
            let target = m.target.display();
            match result {
                Teardown::Unmounted => debug!("unmounted {target}"),
                Teardown::RemountedReadOnly(e) if m.has_device() => {
                    warn!("{target} is busy ({e}); remounted read-only")
                }
                Teardown::RemountedReadOnly(_) => debug!("{target} remounted read-only"),
                Teardown::Failed { umount, remount } if m.has_device() => error!(
                    "{target} could not be unmounted ({umount}) nor made read-only ({remount})"
                ),
                Teardown::Failed { umount, .. } => debug!("{target} left mounted ({umount})"),
            }
        }
    }

    /// Reaps and waits until `done` says so or `deadline` passes. Returns
    /// whether `done` said so. Shutdown signals that arrive meanwhile are
    /// ignored: one shutdown at a time.
    fn wait_until(&mut self, deadline: Instant, done: impl Fn(&Self) -> bool) -> bool {
        loop {
            self.reap();
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let step = deadline.saturating_duration_since(now).min(POLL_STEP);
            if let Ok(Some(signo)) = sys::wait_signal(&self.mask, Some(step)) {
                if signo != Signal::SIGCHLD as i32 {
                    debug!("already shutting down; signal {signo} ignored");
                }
            }
        }
    }
}

fn describe(list: &[procs::Process]) -> String {
    let names: Vec<String> = list.iter().take(20).map(ToString::to_string).collect();
    let more = list.len().saturating_sub(names.len());
    if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    }
}

/// Seconds since boot (CLOCK_BOOTTIME), as `uptime` shows.
fn uptime_secs() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}
