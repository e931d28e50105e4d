//! Corral's container engine.
//!
//! `sysd` runs in two roles: the system engine, started by `init`, which
//! runs Corral's own services (from the system config) as system
//! containers; and the user engine, nested in a system container, which
//! runs the user's containers. Both are this library: an image store
//! (`corral-image`), a low-level runtime (`corral-runtime`), and here the
//! engine proper — container lifecycle and supervision ([`engine`]),
//! service start-up in dependency order ([`services`]), OCI spec
//! generation ([`spec`]), state records ([`state`]), logs ([`logs`]), the
//! Docker-compatible API ([`api`]), registries ([`registry`]), live changes to the system config
//! ([`sysconfig`]) and the `corral` CLI ([`cli`]).

pub mod api;
pub mod archive;
pub mod build;
pub mod cli;
pub mod client;
pub mod engine;
pub mod logs;
pub mod monitor;
pub mod network;
pub mod os;
pub mod registry;
pub mod restart;
pub mod role;
pub mod services;
pub mod spec;
pub mod state;
pub mod sys;
pub mod sysconfig;
pub mod volumes;
