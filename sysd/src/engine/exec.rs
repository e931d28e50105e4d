//! Processes started in a running container (`docker exec`): made by
//! `POST /containers/{id}/exec`, started by `POST /exec/{id}/start`,
//! inspected for their exit code afterwards.
//!
//! An exec'd process is the engine's child (its status comes from its
//! pidfd), joins every namespace and the cgroup of the container
//! (`corral_runtime::enter`), and is confined as the container is. Its
//! stdio are pipes, or a terminal whose master the engine holds, for the
//! one client that started it; unlike a container's, they do not outlive
//! the engine (nor do they in Docker: the exec's stream is that client's).

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use corral_config::ServiceDef;
use log::{info, warn};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use tokio::sync::watch;

use super::{internal, new_id, Engine, EngineError, Result};

/// What the client asked for (`ExecConfig`).
#[derive(Debug, Clone, Default)]
pub struct ExecConfig {
    pub cmd: Vec<String>,
    /// `KEY=VALUE`, over the container's.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub tty: bool,
    /// stdin, stdout, stderr.
    pub attach: [bool; 3],
    pub privileged: bool,
    pub detach_keys: Option<String>,
    pub console_size: Option<(u16, u16)>,
}

#[derive(Debug, Clone, Default)]
pub struct ExecState {
    pub started: bool,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: Option<i32>,
}

/// An exec's terminal master, and a size waiting for it.
type TerminalSlot = (Option<Arc<OwnedFd>>, Option<(u16, u16)>);

pub struct Exec {
    pub id: String,
    /// The container's id; empty for an admin shell, whose target is the
    /// host (`host`).
    pub container: String,
    pub host: bool,
    pub config: ExecConfig,
    state: Mutex<ExecState>,
    /// Set once the process has ended and its code is recorded.
    done: watch::Sender<bool>,
    /// The terminal's master, for resizes, and a size asked for before
    /// the terminal was there (the CLI resizes as soon as its start
    /// request is answered, which is before the process runs).
    master: Mutex<TerminalSlot>,
}

impl Exec {
    pub fn state(&self) -> ExecState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut ExecState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The started process's streams, for the client that started it.
pub struct ExecStreams {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// With a terminal: its master (input and output).
    pub master: Option<OwnedFd>,
    /// Turns true once the exit code is recorded.
    pub done: watch::Receiver<bool>,
}

/// Why a start failed, and the exit code the exec then reports (126, or
/// 127 for a command that is not there, as Docker does).
pub struct StartFailure {
    pub message: String,
    pub exit_code: i64,
}

impl Engine {
    pub fn exec_create(&self, container: &str, config: ExecConfig) -> Result<String> {
        if config.cmd.is_empty() {
            return Err(EngineError::Invalid("no exec command specified".into()));
        }
        {
            let inner = self.lock();
            let c = inner
                .containers
                .get(container)
                .ok_or_else(|| EngineError::NoSuchContainer(container.to_owned()))?;
            if c.process
                .as_ref()
                .and_then(|p| p.container.as_ref())
                .is_none()
            {
                return Err(EngineError::Conflict(format!(
                    "container {} is not running",
                    c.record.id
                )));
            }
            if c.record.state.paused {
                return Err(EngineError::Conflict(format!(
                    "Container {} is paused, unpause the container before exec",
                    c.record.id
                )));
            }
        }
        self.exec_insert(container, false, config)
    }

    /// An exec in the host's namespaces (an admin shell).
    pub(super) fn exec_create_on_host(&self, config: ExecConfig) -> Result<String> {
        self.exec_insert("", true, config)
    }

    fn exec_insert(&self, container: &str, host: bool, config: ExecConfig) -> Result<String> {
        let id = new_id()?;
        let exec = Arc::new(Exec {
            id: id.clone(),
            container: container.to_owned(),
            host,
            config,
            state: Mutex::new(ExecState::default()),
            done: watch::channel(false).0,
            master: Mutex::new((None, None)),
        });
        let mut execs = self.execs.lock().unwrap_or_else(|p| p.into_inner());
        // Docker keeps an exec until its container goes; forget the
        // finished ones of containers that are gone.
        let live: Vec<String> = self.lock().containers.keys().cloned().collect();
        execs.retain(|_, e| live.contains(&e.container) || e.state().running);
        execs.insert(id.clone(), exec);
        Ok(id)
    }

    pub fn exec_get(&self, id: &str) -> Result<Arc<Exec>> {
        let execs = self.execs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = execs.get(id) {
            return Ok(e.clone());
        }
        // A unique prefix, as for containers.
        let mut found = execs.values().filter(|e| e.id.starts_with(id));
        match (found.next(), found.next()) {
            (Some(e), None) if !id.is_empty() => Ok(e.clone()),
            _ => Err(EngineError::NoSuchExec(id.to_owned())),
        }
    }

    /// Starts the exec. `Err(Ok(failure))` is the process failing to
    /// start (its exit code is set); `Err(Err(e))` the request's fault.
    pub async fn exec_start(
        self: &Arc<Self>,
        exec: &Arc<Exec>,
        detach: bool,
    ) -> std::result::Result<ExecStreams, std::result::Result<StartFailure, EngineError>> {
        {
            let mut state = exec.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.started {
                return Err(Err(EngineError::Conflict(format!(
                    "exec {} has already been started",
                    exec.id
                ))));
            }
            state.started = true;
        }
        let fail = |message: String, exit_code: i64| {
            exec.update(|s| s.exit_code = Some(exit_code));
            let _ = exec.done.send(true);
            Err(Ok(StartFailure { message, exit_code }))
        };
        let resolved = if exec.host {
            self.host_target(exec)
        } else {
            self.container_target(exec)
        };
        let (spec, target, name, cgroup) = match resolved {
            Ok(t) => t,
            Err(Ok((message, code))) => return fail(message, code),
            Err(Err(e)) => return Err(Err(e)),
        };
        let cfg = &exec.config;
        let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
        let mut ours = (None, None, None);
        let mut stdio = corral_runtime::Stdio::default();
        let mut console = None;
        let made = (|| -> nix::Result<()> {
            if detach {
                return Ok(());
            }
            if cfg.tty {
                console = Some(nix::sys::socket::socketpair(
                    nix::sys::socket::AddressFamily::Unix,
                    nix::sys::socket::SockType::Stream,
                    None,
                    nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                )?);
                return Ok(());
            }
            if cfg.attach[0] {
                let (r, w) = pipe()?;
                stdio.stdin = Some(r);
                ours.0 = Some(w);
            }
            if cfg.attach[1] {
                let (r, w) = pipe()?;
                stdio.stdout = Some(w);
                ours.1 = Some(r);
            }
            if cfg.attach[2] {
                let (r, w) = pipe()?;
                stdio.stderr = Some(w);
                ours.2 = Some(r);
            }
            Ok(())
        })();
        if let Err(e) = made {
            return fail(format!("making the exec's pipes: {e}"), 126);
        }
        let (console_ours, console_theirs) = match console {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        let id = if exec.host {
            format!("admin-{}", &exec.id[..12])
        } else {
            exec.container.clone()
        };
        let entered = tokio::task::spawn_blocking(move || {
            let process = corral_runtime::enter(corral_runtime::EnterOptions {
                id: &id,
                spec: &spec,
                target: &target,
                cgroup: &cgroup,
                stdio,
                console_socket: console_theirs,
            })?;
            let master = match &console_ours {
                Some(sock) => match corral_runtime::recv_console(sock) {
                    Ok(Some(m)) => Some(m),
                    _ => {
                        let _ = process.signal(nix::sys::signal::Signal::SIGKILL);
                        return Err(corral_runtime::Error::Spec(
                            "the exec's terminal did not come back".into(),
                        ));
                    }
                },
                None => None,
            };
            Ok((process, master))
        })
        .await;
        let (process, master) = match entered {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                let code = match &e {
                    corral_runtime::Error::Exec { errno, .. } if *errno == libc::ENOENT => 127,
                    _ => 126,
                };
                return fail(e.to_string(), code);
            }
            Err(e) => return fail(format!("starting the exec: {e}"), 126),
        };
        let master = master.map(Arc::new);
        {
            let mut slot = exec.master.lock().unwrap_or_else(|p| p.into_inner());
            if let (Some(m), Some((rows, cols))) = (&master, slot.1.take().or(cfg.console_size)) {
                use std::os::fd::AsFd;
                let _ = crate::sys::set_window_size(m.as_fd(), rows, cols);
            }
            slot.0 = master.clone();
        }
        let pid = process.pid.as_raw();
        exec.update(|s| {
            s.running = true;
            s.pid = Some(pid);
        });
        info!(
            "exec {} in {name}: {:?} (pid {pid})",
            &exec.id[..12],
            cfg.cmd
        );
        let command = cfg.cmd.join(" ");
        if !exec.host {
            self.container_event(
                &exec.container,
                &format!("exec_start: {command}"),
                &[("execID", exec.id.clone())],
            );
        }
        let done = exec.done.subscribe();
        let waiter = exec.clone();
        let engine = self.clone();
        tokio::spawn(async move {
            let code = wait_child(&process).await;
            if waiter.host {
                super::admin::announce(&format!(
                    "admin shell {} closed (exit code {code})",
                    &waiter.id[..12]
                ));
            } else {
                engine.container_event(
                    &waiter.container,
                    "exec_die",
                    &[
                        ("execID", waiter.id.clone()),
                        ("exitCode", code.to_string()),
                    ],
                );
            }
            waiter.update(|s| {
                s.running = false;
                s.exit_code = Some(code);
            });
            waiter.master.lock().unwrap_or_else(|p| p.into_inner()).0 = None;
            let _ = waiter.done.send(true);
        });
        let master = match master {
            Some(m) => match m.try_clone() {
                Ok(m) => Some(m),
                Err(e) => {
                    warn!("exec {}: {e}", exec.id);
                    None
                }
            },
            None => None,
        };
        Ok(ExecStreams {
            stdin: ours.0,
            stdout: ours.1,
            stderr: ours.2,
            master,
            done,
        })
    }

    /// The running container's spec with the exec's process, its first
    /// process, its name and its cgroup.
    fn container_target(&self, exec: &Exec) -> TargetResult {
        let inner = self.lock();
        let c = match inner.containers.get(&exec.container) {
            Some(c) => c,
            None => return Err(Err(EngineError::NoSuchContainer(exec.container.clone()))),
        };
        let target = c
            .process
            .as_ref()
            .and_then(|p| p.container.as_ref())
            .and_then(|p| {
                corral_runtime::Process::adopt(p.pid.as_raw(), p.start_time)
                    .ok()
                    .flatten()
            });
        let Some(target) = target else {
            return Err(Ok((
                format!("container {} is not running", exec.container),
                126,
            )));
        };
        let spec =
            exec_spec(&c.spec, &exec.config, target.pid.as_raw()).map_err(|e| Ok((e, 126)))?;
        let cgroup = self.cfg.cgroup_root.join(self.cgroup_rel(&exec.container));
        Ok((spec, target, c.record.name.clone(), cgroup))
    }

    /// PID 1, whose namespaces are the host's.
    fn host_target(&self, exec: &Exec) -> TargetResult {
        let init = nix::unistd::Pid::from_raw(1);
        let target = corral_runtime::start_time(init)
            .and_then(|t| corral_runtime::Process::adopt(1, t).ok().flatten())
            .ok_or_else(|| Ok(("PID 1 cannot be opened".to_owned(), 126)))?;
        let (spec, cgroup) = self.admin_spec(&exec.config).map_err(Err)?;
        Ok((spec, target, "the host".to_owned(), cgroup))
    }

    pub fn exec_resize(&self, exec: &Exec, rows: u16, cols: u16) -> Result<()> {
        let mut slot = exec.master.lock().unwrap_or_else(|p| p.into_inner());
        match &slot.0 {
            Some(m) => {
                use std::os::fd::AsFd;
                crate::sys::set_window_size(m.as_fd(), rows, cols).map_err(internal)
            }
            None if !exec.config.tty => Err(EngineError::Conflict(format!(
                "exec {} has no terminal to resize (it was not started with -t)",
                exec.id
            ))),
            // Not there yet: applied when it is.
            None if exec.state().exit_code.is_none() => {
                slot.1 = Some((rows, cols));
                Ok(())
            }
            None => Err(EngineError::Conflict(format!(
                "exec {} is not running",
                exec.id
            ))),
        }
    }
}

/// An exec's spec, target, name and cgroup; or why it cannot start
/// (message and exit code), or the request's fault.
type TargetResult = std::result::Result<
    (
        oci_spec::runtime::Spec,
        corral_runtime::Process,
        String,
        std::path::PathBuf,
    ),
    std::result::Result<(String, i64), EngineError>,
>;

/// The container's spec with the exec's process: its command, the
/// container's environment with the exec's over it, its user (resolved
/// in the container's own /etc/passwd, as it is now), working directory
/// and terminal; every capability for `--privileged`.
fn exec_spec(
    spec: &oci_spec::runtime::Spec,
    cfg: &ExecConfig,
    pid: i32,
) -> std::result::Result<oci_spec::runtime::Spec, String> {
    let mut spec = spec.clone();
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(cfg.cmd.clone()));
    let mut env = process.env().clone().unwrap_or_default();
    for kv in &cfg.env {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    if cfg.tty && !env.iter().any(|kv| kv.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    process.set_env(Some(env));
    process.set_terminal(Some(cfg.tty));
    if let Some(dir) = cfg.working_dir.as_deref().filter(|d| !d.is_empty()) {
        if !dir.starts_with('/') {
            return Err(format!("the working directory {dir:?} is not absolute"));
        }
        process.set_cwd(dir.into());
    }
    if let Some(user) = cfg.user.as_deref().filter(|u| !u.is_empty()) {
        let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
        let (uid, gid, groups) =
            crate::spec::resolve_user(user, &[root]).map_err(|e| e.to_string())?;
        let mut u = process.user().clone();
        u.set_uid(uid);
        u.set_gid(gid);
        u.set_additional_gids(Some(groups));
        process.set_user(u);
    }
    if cfg.privileged {
        let all = crate::spec::capabilities(&ServiceDef {
            privileged: Some(true),
            ..Default::default()
        });
        let set: std::collections::HashSet<_> = all.into_iter().collect();
        let mut caps = process.capabilities().clone().unwrap_or_default();
        caps.set_bounding(Some(set.clone()));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set));
        process.set_capabilities(Some(caps));
    }
    spec.set_process(Some(process));
    Ok(spec)
}

/// The exit code of our child behind its pidfd (128 + the signal for a
/// signal death).
async fn wait_child(process: &corral_runtime::Process) -> i64 {
    let fd = match process
        .pidfd
        .try_clone()
        .map(std::fs::File::from)
        .and_then(crate::sys::async_file)
    {
        Ok(fd) => fd,
        Err(e) => {
            warn!("watching exec pid {}: {e}", process.pid);
            return -1;
        }
    };
    loop {
        let Ok(mut g) = fd.readable().await else {
            return -1;
        };
        g.clear_ready();
        use std::os::fd::AsFd;
        match waitid(
            Id::PIDFd(fd.get_ref().as_fd()),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::Exited(_, code)) => return i64::from(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i64,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return -1,
        }
    }
}
