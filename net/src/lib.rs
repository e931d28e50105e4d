//! Corral's network service.
//!
//! `corral-netconf` runs in the host's network namespace as a system
//! container. It reads `[network]` from the system config and, per
//! interface, either applies a static address, gateway and MTU over
//! rtnetlink, or runs a real DHCP client (busybox `udhcpc`) whose event
//! hook is this same program: a lease is applied over rtnetlink too, so
//! there is one code path for addresses. `resolv.conf` is written to
//! [`RESOLV_CONF`], which every system container sees.

pub mod netlink;
pub mod plan;
pub mod resolv;

/// The resolver config every system container links /etc/resolv.conf to.
pub const RESOLV_CONF: &str = "/run/corral/net/resolv.conf";
/// Per-interface DHCP resolver settings, merged into [`RESOLV_CONF`].
pub const LEASE_DIR: &str = "/run/corral/net/leases";
pub use corral_config::NET_CONFIGURED_PATH as CONFIGURED;
