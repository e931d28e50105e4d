//! Corral's low-level container runtime, on `nix`: what a container's
//! process gets (namespaces, an overlay root, mounts, capabilities,
//! seccomp, cgroup v2 limits) from an OCI runtime spec.
//!
//! - [`spawn`]: clone3 into the cgroup and namespaces, mounts,
//!   pivot_root, credentials, seccomp, exec;
//! - [`enter`]: another process in a running container (exec);
//! - [`Process`]: the running process behind a pidfd, found again after
//!   an engine restart by pid and start time;
//! - [`cgroup`]: the container's cgroup, limits, OOM kills, teardown;
//! - [`devices`]: the devices it may open (a cgroup BPF program);
//! - [`defaults`]: Docker's default capabilities, mounts, masked paths and
//!   seccomp profile.

pub mod cgroup;
pub mod defaults;
pub mod devices;
mod exec;
pub mod netns;
mod process;
pub mod seccomp;
mod spawn;
mod sys;

use std::path::PathBuf;

pub use exec::spawn_into_cgroup;
pub use process::{start_time, Process};
pub use spawn::{
    enter, overlay_options, spawn, EnterOptions, Rootfs, SpawnOptions, Stdio, DEV_LOG_ANNOTATION,
};

/// The master end of a process's terminal, sent on the console socket
/// given to [`spawn`] or [`enter`]; None if the process failed before
/// it had one.
pub fn recv_console(
    socket: &std::os::fd::OwnedFd,
) -> std::io::Result<Option<std::os::fd::OwnedFd>> {
    use std::os::fd::AsRawFd;
    sys::recv_fd(socket.as_raw_fd()).map_err(std::io::Error::from)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid container spec: {0}")]
    Spec(String),
    #[error("container {id}: {step}: {source}")]
    Start {
        id: String,
        step: String,
        source: std::io::Error,
    },
    /// The last step, `execve`, failed: worded as runc words it, which is
    /// what Docker clients read the exit code from (`docker run` exits 127
    /// for "executable file not found" and "no such file or directory",
    /// 126 for "permission denied").
    #[error("container {id}: exec: {program:?}: {}", exec_reason(program, *errno))]
    Exec {
        id: String,
        program: String,
        errno: i32,
    },
}

impl Error {
    /// Whether the container's own command is at fault (a missing or
    /// non-executable program), not the engine.
    pub fn is_exec(&self) -> bool {
        matches!(self, Error::Exec { .. })
    }
}

fn exec_reason(program: &str, errno: i32) -> String {
    match errno {
        libc::ENOENT if !program.contains('/') => "executable file not found in $PATH".into(),
        libc::ENOENT => "no such file or directory".into(),
        libc::EACCES => "permission denied".into(),
        other => {
            // io::Error's text, lowercase as runc's are, without "(os error N)".
            let text = std::io::Error::from_raw_os_error(other).to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
            let mut chars = text.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn exec_failures_read_as_runc_words_them() {
        let e = |program: &str, errno| {
            Error::Exec {
                id: "c".into(),
                program: program.into(),
                errno,
            }
            .to_string()
        };
        assert_eq!(
            e("nope", libc::ENOENT),
            r#"container c: exec: "nope": executable file not found in $PATH"#
        );
        assert_eq!(
            e("/bin/nope", libc::ENOENT),
            r#"container c: exec: "/bin/nope": no such file or directory"#
        );
        assert_eq!(
            e("/etc", libc::EACCES),
            r#"container c: exec: "/etc": permission denied"#
        );
        assert_eq!(
            e("/x", libc::ENOEXEC),
            r#"container c: exec: "/x": exec format error"#
        );
    }
}
