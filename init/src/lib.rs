//! Corral's PID 1.
//!
//! `init` mounts the API filesystems, assembles the system config from its
//! layers (defaults, state disk, config drive, kernel command line), mounts
//! the state disk, sets the hostname and sysctls, brings up `lo`,
//! enables the cgroup v2 controllers, and then supervises one program, the
//! service manager, restarting it with backoff and falling back to a rescue
//! shell on the console. It reaps every orphan and turns shutdown signals
//! into an orderly stop, unmount and reboot(2).
//!
//! The decisions (command line, mount table, restart policy, supervision
//! states, exit statuses) are plain functions and state machines tested on
//! their own; `pid1` drives them, and `sys` holds the privileged calls.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod backoff;
pub mod bootconfig;
pub mod cmdline;
pub mod console;
pub mod ctl;
pub mod kmsg;
pub mod mounts;
pub mod net;
pub mod pid1;
pub mod powerbutton;
pub mod procs;
pub mod shutdown;
pub mod state;
pub mod statepart;
pub mod status;
pub mod supervisor;
pub mod switchroot;
pub mod sys;
pub mod watchdog;
