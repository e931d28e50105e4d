//! Running another process in a running container (`docker exec`), as
//! `runc exec` does: the child joins the container's namespaces and
//! cgroup, then takes the same path as a container's first process from
//! the credentials on (rlimits, capabilities, seccomp, user, working
//! directory, exec), so an exec'd process is confined exactly as the
//! container is.
//!
//! A pid namespace only applies to the children of whoever joins it, so
//! the joining is done by a short-lived thread of the caller's that then
//! clones the child: the child is born in the container's pid namespace
//! and no intermediate process is needed.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use super::{console_fd, invalid, open_cgroup_dir, plan, run, Rootfs, SpawnOptions, Stdio};
use crate::{sys, Error, Process};

pub struct EnterOptions<'a> {
    /// For messages.
    pub id: &'a str,
    /// The container's spec with the process to run in place of its own
    /// (args, env, cwd, user, capabilities, terminal); its seccomp
    /// profile and rlimits apply too.
    pub spec: &'a Spec,
    /// The container's first process: its namespaces are joined.
    pub target: &'a Process,
    /// The container's cgroup directory, joined at clone.
    pub cgroup: &'a Path,
    pub stdio: Stdio,
    /// As for [`super::spawn`], for a process with a terminal.
    pub console_socket: Option<OwnedFd>,
}

/// The namespaces joined, in order (the mount namespace last: joining it
/// moves the root).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Starts the process in the container. On success it has exec'd.
pub fn enter(opts: EnterOptions<'_>) -> Result<Process, Error> {
    let pid = opts.target.pid;
    let open = |name: &str| {
        let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        nix::fcntl::open(&path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| invalid(format!("container {}: {}: {e}", opts.id, path.display())))
    };
    let mut ns_fds = Vec::new();
    for (name, flag) in NAMESPACES {
        ns_fds.push((open(name)?, *flag, format!("{name} of pid {pid}")));
    }
    let pid_ns = open("pid")?;
    // The descriptors were opened by pid: make sure it was still the
    // container's process and not a new one with a recycled pid.
    if !opts.target.is_alive() {
        return Err(invalid(format!("container {} is not running", opts.id)));
    }
    let spec = entered_spec(opts.spec);
    let cgroup_dir = open_cgroup_dir(opts.cgroup)?;
    let id = opts.id;
    let console_socket = opts.console_socket;
    let stdio = opts.stdio;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // This thread's children are born in the container's pid
                // namespace; the thread ends right after.
                sys::setns_thread(pid_ns.as_raw_fd(), libc::CLONE_NEWPID).map_err(|e| {
                    Error::Start {
                        id: id.to_owned(),
                        step: "joining the pid namespace".into(),
                        source: e.into(),
                    }
                })?;
                let null =
                    nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(|e| Error::Start {
                            id: id.to_owned(),
                            step: "opening /dev/null".into(),
                            source: e.into(),
                        })?;
                let pick = |f: &Option<OwnedFd>| {
                    f.as_ref()
                        .map(|f| f.as_raw_fd())
                        .unwrap_or(null.as_raw_fd())
                };
                let raw = [pick(&stdio.stdin), pick(&stdio.stdout), pick(&stdio.stderr)];
                let sopts = SpawnOptions {
                    id,
                    spec: &spec,
                    rootfs: Rootfs::Dir(PathBuf::from("/")),
                    mountpoint: PathBuf::from("/"),
                    cgroup_root: PathBuf::from("/"),
                    stdio: Stdio::default(),
                    seccomp_cache: None,
                    console_socket: None,
                };
                let mut plan = plan(&sopts, raw, &ns_fds)?;
                plan.enter = true;
                plan.console = console_fd(&spec, console_socket.as_ref())?;
                let process = run(&plan, CloneFlags::empty(), &cgroup_dir, id);
                drop(stdio);
                process
            })
            .join()
            .unwrap_or_else(|_| Err(invalid("the thread entering the container panicked")))
    })
}

/// The container's spec reduced to what applies to a process joining it:
/// nothing to mount, no namespaces to make, no hostname to set.
fn entered_spec(spec: &Spec) -> Spec {
    let mut spec = spec.clone();
    spec.set_mounts(None);
    spec.set_hostname(None);
    spec.set_root(None);
    if let Some(mut linux) = spec.linux().clone() {
        linux.set_namespaces(None);
        linux.set_devices(None);
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
        spec.set_linux(Some(linux));
    }
    spec
}
