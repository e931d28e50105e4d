//! The per-container monitor (`corral-monitor`), as containerd's shim and
//! podman's conmon: a small process between the engine and each container.
//!
//! The engine writes what to start into the container's state directory
//! ([`REQUEST`]) and runs the monitor there, straight into a cgroup of the
//! monitors' own (outside the engine's, which the system engine empties
//! when the user engine stops). The monitor starts
//! the container with the runtime — so the container is its child, whose
//! exit status only it can read — reports the pid on its stdout, and waits.
//! When the container ends it writes the status to [`EXIT`] atomically and
//! exits. An engine that was killed meanwhile finds the status there when
//! it comes back: that is how `docker wait` reports the real exit code of
//! a container that ended while no engine ran. The container's output goes
//! to the FIFOs in the same directory, which the engine reads.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use corral_runtime::{Process, Rootfs, SpawnOptions};

pub mod relay;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

/// What to start, in the state directory.
pub const REQUEST: &str = "monitor.json";
/// How it ended, written by the monitor.
pub const EXIT: &str = "exit.json";
/// The FIFOs of a container's state directory: its output, its input,
/// and the monitor's control requests ([`relay::Control`]).
pub const FIFOS: &[&str] = &["stdout", "stderr", "stdin", "ctl"];
/// Beside the containers' cgroups, below the engine's parent.
pub const CGROUP: &str = "monitors";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    /// The runtime spec (`config.json`, kept with the container's record).
    pub spec: PathBuf,
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub mountpoint: PathBuf,
    pub cgroup_root: PathBuf,
    /// The monitor's own cgroup, relative to `cgroup_root`.
    pub cgroup: String,
    /// Where compiled seccomp filters are kept between monitors.
    pub seccomp_cache: PathBuf,
    /// `docker run -t`: the container gets a terminal the monitor holds.
    #[serde(default)]
    pub tty: bool,
    /// `docker run -i`: the container reads the stdin FIFO.
    #[serde(default)]
    pub stdin: bool,
    /// The terminal's first size (rows, columns).
    #[serde(default)]
    pub size: Option<(u16, u16)>,
}

/// The monitor's one line on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Started {
    Running {
        pid: i32,
        start_time: u64,
    },
    Failed {
        message: String,
        /// The container's command is at fault (not found, not executable).
        exec: bool,
    },
}

/// [`EXIT`]: a signal death is 128 + the signal, as shells report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: i32,
    pub finished_at: String,
}

/// The exit the monitor recorded in `run_dir`, if it did.
pub fn read_exit(run_dir: &Path) -> Option<ExitRecord> {
    let data = std::fs::read(run_dir.join(EXIT)).ok()?;
    serde_json::from_slice(&data).ok()
}

/// A running container and its monitor.
pub struct Spawned {
    /// None when it has ended already (before the engine could follow it:
    /// the monitor has its status).
    pub container: Option<Process>,
    /// The pid the monitor reported.
    pub pid: i32,
    pub start_time: u64,
    pub monitor: Process,
}

/// Starts `binary` (the monitor) for the container whose state directory
/// is `run_dir` and waits for its report. Err: the message, and whether
/// the container's own command is at fault.
pub fn start(binary: &Path, run_dir: &Path, request: &Request) -> Result<Spawned, (String, bool)> {
    let engine_side = |what: &str, e: &dyn std::fmt::Display| (format!("{what}: {e}"), false);
    let _ = std::fs::remove_file(run_dir.join(EXIT));
    let json = serde_json::to_vec(request).map_err(|e| engine_side("the monitor request", &e))?;
    crate::state::write_atomic(&run_dir.join(REQUEST), &json)
        .map_err(|e| engine_side("writing the monitor request", &e))?;
    // Straight into the monitors' cgroup (see corral_runtime::exec).
    let cgroup = request
        .cgroup_root
        .join(request.cgroup.trim_start_matches('/'));
    std::fs::create_dir_all(&cgroup)
        .map_err(|e| engine_side(&format!("creating {}", cgroup.display()), &e))?;
    let (report, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| engine_side("making the monitor's pipe", &e))?;
    let monitor =
        corral_runtime::spawn_into_cgroup(binary, &[run_dir.as_os_str()], &cgroup, report_w)
            .map_err(|e| engine_side(&format!("running the monitor {}", binary.display()), &e))?;
    let mut line = String::new();
    let _ = std::io::BufReader::new(std::fs::File::from(report)).read_line(&mut line);
    let reap = |monitor: &Process| {
        use std::os::fd::AsFd;
        let _ = waitid(Id::PIDFd(monitor.pidfd.as_fd()), WaitPidFlag::WEXITED);
    };
    match serde_json::from_str::<Started>(line.trim()) {
        Ok(Started::Running { pid, start_time }) => Ok(Spawned {
            container: Process::adopt(pid, start_time).ok().flatten(),
            pid,
            start_time,
            monitor,
        }),
        Ok(Started::Failed { message, exec }) => {
            reap(&monitor);
            Err((message, exec))
        }
        Err(_) => {
            reap(&monitor);
            Err((
                "the monitor ended before it started the container (see the engine's log)".into(),
                false,
            ))
        }
    }
}

/// The monitor's own life: from the request in `run_dir` to the exit
/// record. Returns only when there is nothing left to do.
pub fn run(run_dir: &Path) -> Result<(), String> {
    use nix::sys::signal::Signal;
    // Not the engine's session: a signal to its process group, or the
    // end of its terminal, is not for us; only SIGKILL (shutdown) ends us.
    let _ = nix::unistd::setsid();
    for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
        crate::sys::ignore_signal(s);
    }
    let request: Request = read_json(&run_dir.join(REQUEST))?;
    let spec: Spec = read_json(&request.spec)?;
    let report = |r: &Started| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default());
        let _ = out.flush();
    };
    let failed = |message: String| {
        report(&Started::Failed {
            message: message.clone(),
            exec: false,
        });
        message
    };
    let fifo = |name: &str, nonblocking: bool| {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(if nonblocking { libc::O_NONBLOCK } else { 0 })
            .open(run_dir.join(name))
            .map_err(|e| format!("opening the {name} FIFO: {e}"))
    };
    let (out, err, ctl) = match (
        fifo("stdout", false),
        fifo("stderr", false),
        fifo("ctl", true),
    ) {
        (Ok(o), Ok(e), Ok(c)) => (o, e, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(failed(e)),
    };
    // Held while the input is open; the container's own end is read-only,
    // so that it sees the end of input once the monitor lets go and the
    // engine has closed its writing end.
    let stdin_keep = match request.stdin {
        true => Some(fifo("stdin", true).map_err(failed)?),
        false => None,
    };
    let container_stdin = match (&stdin_keep, request.tty) {
        (Some(_), false) => Some(open_blocking_reader(&run_dir.join("stdin")).map_err(failed)?),
        _ => None,
    };
    let console = match request.tty {
        true => Some(
            nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Stream,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| failed(format!("making the console socket: {e}")))?,
        ),
        false => None,
    };
    let (console_ours, console_theirs) = match console {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let stdio = match request.tty {
        // The terminal is the container's stdio.
        true => corral_runtime::Stdio::default(),
        false => corral_runtime::Stdio {
            stdin: container_stdin,
            stdout: Some(out.try_clone().map_err(|e| failed(e.to_string()))?.into()),
            stderr: Some(err.into()),
        },
    };
    let spawned = corral_runtime::spawn(SpawnOptions {
        id: &request.id,
        spec: &spec,
        rootfs: Rootfs::Overlay {
            lower: request.lower.clone(),
            upper: request.upper.clone(),
            work: request.work.clone(),
        },
        mountpoint: request.mountpoint.clone(),
        cgroup_root: request.cgroup_root.clone(),
        stdio,
        seccomp_cache: Some(request.seccomp_cache.clone()),
        console_socket: console_theirs,
    });
    let process = match spawned {
        Ok(p) => p,
        Err(e) => {
            report(&Started::Failed {
                message: e.to_string(),
                exec: e.is_exec(),
            });
            return Ok(());
        }
    };
    let master = match &console_ours {
        Some(sock) => match corral_runtime::recv_console(sock) {
            Ok(Some(m)) => {
                let m = std::fs::File::from(m);
                set_nonblocking(&m);
                if let Some((rows, cols)) = request.size {
                    use std::os::fd::AsFd;
                    let _ = crate::sys::set_window_size(m.as_fd(), rows, cols);
                }
                Some(m)
            }
            other => {
                let _ = process.signal(nix::sys::signal::Signal::SIGKILL);
                let why = match other {
                    Err(e) => e.to_string(),
                    _ => "no terminal came back".into(),
                };
                return Err(failed(format!("the container's terminal: {why}")));
            }
        },
        None => None,
    };
    report(&Started::Running {
        pid: process.pid.as_raw(),
        start_time: process.start_time,
    });
    // Nobody reads our stdout any more; the engine may be gone.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
    {
        use std::os::fd::AsFd;
        relay::Relay {
            master,
            out,
            stdin: stdin_keep,
            ctl,
        }
        .run(process.pidfd.as_fd());
    }
    let code = loop {
        use std::os::fd::AsFd;
        match waitid(Id::PIDFd(process.pidfd.as_fd()), WaitPidFlag::WEXITED) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("waiting for container {}: {e}", request.id)),
        }
    };
    let record = ExitRecord {
        code,
        finished_at: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
    };
    let json = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    match crate::state::write_atomic(&run_dir.join(EXIT), &json) {
        // Removed with --force: nobody is left to read it.
        Err(_) if !run_dir.exists() => Ok(()),
        r => r.map_err(|e| format!("writing {}: {e}", run_dir.join(EXIT).display())),
    }
}

/// A blocking read-only end of a FIFO someone (the monitor) already has
/// open: opened without blocking, then switched to blocking reads.
fn open_blocking_reader(path: &Path) -> Result<std::os::fd::OwnedFd, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    let flags = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut flags = nix::fcntl::OFlag::from_bits_retain(flags);
    flags.remove(nix::fcntl::OFlag::O_NONBLOCK);
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(flags))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(f.into())
}

fn set_nonblocking(f: &std::fs::File) {
    if let Ok(flags) = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_GETFL) {
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_SETFL(flags));
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", path.display()))
}
