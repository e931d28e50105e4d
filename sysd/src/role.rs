//! What differs between the system engine and the user engine, as data.
//!
//! Both roles are the same engine, API and runtime; a role only changes
//! where things live, who may connect, and what its containers get from
//! the host. Code asks the policy (`role.system_containers`), never the
//! role's name.

use std::path::PathBuf;

/// The group of the user engine's socket: `docker` in the console image's
/// `/etc/group` (images/console/group), which user `corral` is in.
pub const DOCKER_GID: u32 = 990;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePolicy {
    /// `system` or `user`: in messages, `docker info`'s labels.
    pub name: &'static str,
    /// The API socket.
    pub socket: &'static str,
    /// Its mode, and the group that may connect besides root.
    pub socket_mode: u32,
    pub socket_group: Option<u32>,
    /// Only root may use the API, whatever the socket's mode says: the
    /// engine checks each connection's peer (SO_PEERCRED), so a socket
    /// passed on or bound elsewhere gives no one else the machine.
    pub root_only: bool,
    /// Transient state (container records, output FIFOs): kept across an
    /// engine restart so the next engine adopts what runs.
    pub run_root: &'static str,
    /// Images, containers' upper directories, logs, volumes.
    pub data_root: &'static str,
    /// Containers' cgroups, relative to the cgroup mount. The user engine
    /// runs in a system container whose `/sys/fs/cgroup` is the subtree
    /// delegated to it (corral/user), so its containers go at its top.
    pub cgroup_parent: &'static str,
    /// Its containers are system containers: they get the host's syslog
    /// socket as /dev/log and the resolver the network service writes.
    pub system_containers: bool,
    /// Imports the initramfs's images and runs the system config's
    /// services; owns the saved system config (`corral config set`).
    pub runs_system_services: bool,
    /// Container records (and runtime specs) are kept in the data root, so
    /// containers outlive a reboot (Docker's); otherwise in the run root,
    /// gone at shutdown (the system engine makes its services afresh from
    /// the config at every boot).
    pub persistent_records: bool,
    /// netavark, for a default bridge network; None: containers get a
    /// loopback only, or share the host's network.
    pub netavark: Option<&'static str>,
    /// Containers keep running when the engine exits (the user engine's:
    /// a restarted engine adopts them, and at the machine's shutdown
    /// init's SIGTERM to every process reaches them); otherwise the
    /// engine stops them before it exits (the system engine's services).
    pub containers_outlive_engine: bool,
    /// Manages the machine itself: `corral install` and the boot slots.
    /// Only the system engine, which runs in the host's namespaces and
    /// sees its disks and the initramfs's boot loaders.
    pub manages_os: bool,
}

pub const SYSTEM: RolePolicy = RolePolicy {
    name: "system",
    socket: "/run/corral/system.sock",
    socket_mode: 0o600,
    socket_group: None,
    root_only: true,
    run_root: "/run/corral/system",
    data_root: "/var/lib/corral/system",
    cgroup_parent: "corral/system",
    system_containers: true,
    runs_system_services: true,
    persistent_records: false,
    netavark: None,
    containers_outlive_engine: false,
    manages_os: true,
};

pub const USER: RolePolicy = RolePolicy {
    name: "user",
    // A directory of its own, bound into the user-engine container: a
    // socket file bound on its own would go stale when the engine restarts.
    socket: "/run/corral/docker/docker.sock",
    socket_mode: 0o660,
    socket_group: Some(DOCKER_GID),
    // Group docker, by the socket's mode: SO_PEERCRED carries only the
    // peer's primary group, and the user engine's pid namespace does not
    // show the peer's others.
    root_only: false,
    run_root: "/run/corral/user",
    data_root: "/var/lib/corral/user",
    cgroup_parent: "",
    system_containers: false,
    runs_system_services: false,
    persistent_records: true,
    // Debian's netavark package puts it there (podman's helper directory).
    netavark: Some("/usr/lib/podman/netavark"),
    containers_outlive_engine: true,
    manages_os: false,
};

impl RolePolicy {
    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(self.socket)
    }

    /// Why a peer with user id `uid` may not use this API, if it may not.
    pub fn refuses(&self, uid: u32) -> Option<String> {
        (self.root_only && uid != 0).then(|| {
            format!(
                "the {} engine's API is for root only (this client runs as uid {uid}): use sudo",
                self.name
            )
        })
    }
}

/// `parent/id`, or `id` at the top of the cgroup tree the engine was given.
pub fn cgroup_path(parent: &str, id: &str) -> String {
    let parent = parent.trim_matches('/');
    if parent.is_empty() {
        id.to_owned()
    } else {
        format!("{parent}/{id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_may_use_the_system_api() {
        assert_eq!(SYSTEM.refuses(0), None);
        let e = SYSTEM.refuses(1000).unwrap();
        assert!(
            e.contains("root only") && e.contains("uid 1000") && e.contains("sudo"),
            "{e}"
        );
        // The user engine leaves it to the socket's group.
        assert_eq!(USER.refuses(1000), None);
    }

    #[test]
    fn cgroups_go_below_the_parent_or_at_the_top() {
        assert_eq!(cgroup_path("corral/system", "abc"), "corral/system/abc");
        assert_eq!(cgroup_path("", "abc"), "abc");
        assert_eq!(cgroup_path("/x/", "abc"), "x/abc");
    }
}
