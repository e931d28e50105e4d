//! Running a helper program (the engine's per-container monitor) straight
//! into a cgroup with `clone3(CLONE_INTO_CGROUP)` and `execve`.
//!
//! Moving a process afterwards (a write to `cgroup.procs`) waits for an RCU
//! grace period, which on an emulated single-CPU machine took longer than
//! starting the container itself, and leaves a moment in which the process
//! is still in its parent's cgroup.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::sys::{self, Forked};
use crate::{Error, Process};

fn err(what: String) -> impl FnOnce(nix::Error) -> Error {
    move |e| Error::Start {
        id: String::new(),
        step: what,
        source: e.into(),
    }
}

fn cstr(s: &OsStr) -> Result<CString, Error> {
    CString::new(s.as_bytes()).map_err(|_| Error::Spec(format!("{s:?} contains a NUL byte")))
}

/// Runs `program` with `args` (after argv[0]) in the cgroup directory
/// `cgroup`, with stdin on /dev/null, stdout on `stdout` and stderr
/// inherited, and the caller's environment. The child is the caller's;
/// its exit must be reaped through the returned pidfd.
pub fn spawn_into_cgroup(
    program: &Path,
    args: &[&OsStr],
    cgroup: &Path,
    stdout: OwnedFd,
) -> Result<Process, Error> {
    // Everything the child needs is made before the clone: it may only
    // make raw system calls (another thread may hold malloc's lock).
    let path = cstr(program.as_os_str())?;
    let mut argv = vec![path.clone()];
    for a in args {
        argv.push(cstr(a)?);
    }
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).unwrap_or_default()
        })
        .collect();
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let null = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err("opening /dev/null".into()))?;
    let dir = nix::fcntl::open(
        cgroup,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Cgroup {
        path: cgroup.to_owned(),
        source: e.into(),
    })?;
    match sys::clone3(0, dir.as_raw_fd()).map_err(err(format!("running {}", program.display())))? {
        Forked::Child => {
            sys::reset_signals();
            if sys::dup2(null.as_raw_fd(), 0).is_err() || sys::dup2(stdout.as_raw_fd(), 1).is_err()
            {
                sys::exit_child(126);
            }
            sys::execve(&path, &argv_ptrs, &env_ptrs);
            sys::exit_child(127)
        }
        Forked::Parent { pid, pidfd } => {
            drop(stdout);
            // Our child, not reaped yet: the pid cannot be reused before
            // the start time is read.
            let start_time = crate::process::start_time(pid).unwrap_or(0);
            Ok(Process {
                pid,
                pidfd,
                start_time,
            })
        }
    }
}
