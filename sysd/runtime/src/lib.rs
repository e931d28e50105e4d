//! Corral's low-level container runtime, on `nix`: what a container's
//! process gets (namespaces, an overlay root, mounts, capabilities,
//! seccomp, cgroup v2 limits) from an OCI runtime spec.
//!
//! So far: the cgroup handling ([`cgroup`]) and Docker's defaults
//! ([`defaults`]). The process spawn (clone3 into the cgroup, mount
//! set-up, pivot_root, credentials, seccomp, exec) is next.

pub mod cgroup;
pub mod defaults;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
}
