//! Corral's low-level container runtime, on `nix`: what a container's
//! process gets (namespaces, an overlay root, mounts, capabilities,
//! seccomp, cgroup v2 limits) from an OCI runtime spec.
//!
//! - [`spawn`]: clone3 into the cgroup and namespaces, mounts,
//!   pivot_root, credentials, seccomp, exec;
//! - [`Process`]: the running process behind a pidfd, found again after
//!   an engine restart by pid and start time;
//! - [`cgroup`]: the container's cgroup, limits, OOM kills, teardown;
//! - [`defaults`]: Docker's default capabilities, mounts, masked paths and
//!   seccomp profile.

pub mod cgroup;
pub mod defaults;
mod process;
pub mod seccomp;
mod spawn;
mod sys;

use std::path::PathBuf;

pub use process::{start_time, Process};
pub use spawn::{spawn, Rootfs, SpawnOptions, Stdio, DEV_LOG_ANNOTATION};

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
}
