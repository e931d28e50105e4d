//! Container networks: the user engine's default bridge and the networks
//! users define (`docker network create`), through netavark.
//!
//! netavark (podman's network stack, Debian's package) makes the bridges,
//! a veth pair per container and network, the NAT and port-forwarding
//! rules, and starts aardvark-dns, which answers containers' names on
//! user-defined networks. The engine does what netavark leaves to its
//! caller, as podman does: it keeps the networks (`store`), allocates each
//! container's address on each of its networks (kept in the container's
//! record, so it is the same after an engine restart and a reboot), keeps
//! each container's network namespace as a file
//! (`corral_runtime::netns`) so it can be set up before the process starts
//! and torn down after it ends, isolates the networks from each other
//! (`isolation`), and writes the container's `/etc/resolv.conf`,
//! `/etc/hosts` and `/etc/hostname`.

mod def;
pub mod isolation;
mod netavark;
mod ports;
mod store;

pub use def::{
    overlaps, routed_subnets, valid_name, Network, Request, BRIDGE_ID, BRIDGE_INTERFACE,
    BRIDGE_NAME, OPT_BRIDGE_NAME, OPT_MTU, PREDEFINED,
};
pub use netavark::{Attachment, Container, Netavark};
pub use ports::bind_ports;
pub use store::NetworkStore;

/// What an engine with networks is given: the tools, and the default
/// bridge's subnet (`[user-engine] bridge-subnet`).
#[derive(Debug, Clone)]
pub struct Networking {
    pub tool: Netavark,
    pub bridge_subnet: ipnet::Ipv4Net,
}

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

/// How a container is networked (`docker run --network`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Its own namespace with only a loopback (`none`, and every system
    /// container that does not share the host's).
    #[default]
    None,
    /// The machine's namespace.
    Host,
    /// Its own namespace on one or more networks (`Settings::endpoints`):
    /// the default bridge or user-defined ones. (Named for what records
    /// have always said.)
    Bridge,
    /// Another container's namespace, by id.
    Container(String),
}

impl Mode {
    /// As Docker shows it in `HostConfig.NetworkMode`.
    pub fn docker_name(&self) -> String {
        match self {
            Mode::None => "none".into(),
            Mode::Host => "host".into(),
            Mode::Bridge => BRIDGE_NAME.into(),
            Mode::Container(id) => format!("container:{id}"),
        }
    }
}

/// A published port, `-p [IP:]HOST:CONTAINER[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    /// Empty: every address of the machine.
    #[serde(default)]
    pub host_ip: String,
    /// 0: one the engine picks when the container starts.
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// What a container's record keeps of its network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub mode: Mode,
    /// The published ports as asked for.
    pub ports: Vec<PortMap>,
    /// `-P`: every exposed port too, on a port the engine picks.
    pub publish_all: bool,
    /// In mode bridge: its networks, the one `--network` named first.
    pub endpoints: Vec<Endpoint>,
    /// While running: the host ports it got (a 0 in `ports` resolved).
    pub bound_ports: Vec<PortMap>,
    /// `--dns`, `--dns-search`, `--dns-option`: in place of the machine's.
    pub dns: Dns,
    /// `--add-host NAME:IP`, added to /etc/hosts.
    pub extra_hosts: Vec<(String, String)>,
    /// Its namespace is kept and netavark has set some of it up: what
    /// the next start or the removal undoes first, whatever happened in
    /// between.
    pub attached: bool,
    /// Records written before user-defined networks kept the default
    /// bridge's address and MAC here; `upgrade` moves them.
    #[serde(rename = "ip", skip_serializing)]
    pub legacy_ip: Option<Ipv4Addr>,
    #[serde(rename = "mac", skip_serializing)]
    pub legacy_mac: Option<String>,
}

/// A container's place on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    /// The network's id.
    pub network: String,
    /// Its name when the container joined (what `HostConfig.NetworkMode`
    /// shows; a network is never renamed).
    pub name: String,
    /// Given when the container joined and kept until it leaves.
    pub ip: Option<Ipv4Addr>,
    /// `--ip`: asked for, so never moved to another address.
    pub static_ip: bool,
    /// The names it has on the network besides its own: `--network-alias`
    /// and, on networks with DNS, its short id (as Docker gives it).
    pub aliases: Vec<String>,
    /// Its interface in the container: `eth0`, `eth1`...
    pub interface: String,
    /// Set up on the network (by netavark) while running.
    pub attached: bool,
    pub mac: Option<String>,
}

impl Settings {
    /// A record of an earlier release: its default-bridge address becomes
    /// an endpoint.
    pub fn upgrade(&mut self) {
        if self.mode == Mode::Bridge && self.endpoints.is_empty() {
            self.endpoints.push(Endpoint {
                network: BRIDGE_ID.into(),
                name: BRIDGE_NAME.into(),
                ip: self.legacy_ip.take(),
                interface: "eth0".into(),
                attached: self.attached,
                mac: self.legacy_mac.take(),
                ..Default::default()
            });
        }
    }

    /// The endpoint on network `id`.
    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.network == id)
    }

    /// The first free `ethN` for another network.
    pub fn next_interface(&self) -> String {
        (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !self.endpoints.iter().any(|e| &e.interface == n))
            .unwrap_or_default()
    }
}

/// A container's own resolver settings; what is empty is the machine's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dns {
    pub servers: Vec<IpAddr>,
    /// `.` alone: no search domains.
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    Exhausted(String),
    #[error("{0}")]
    PortInUse(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// Docker answers these with 403 (a pre-defined network, a network in
    /// use, an overlapping pool).
    #[error("{0}")]
    Forbidden(String),
    /// A name already taken (409).
    #[error("{0}")]
    Exists(String),
    #[error("netavark {what}: {message}")]
    Netavark { what: &'static str, message: String },
    #[error("{0}")]
    Io(String),
}

/// A container's resolv.conf, as Docker writes it: the machine's, less
/// loopback name servers (they would be the container's own loopback;
/// Google's public servers when none is left), each part replaced by the
/// container's own `--dns`, `--dns-search`, `--dns-option` when given.
/// On networks with DNS the name servers are aardvark-dns, on each such
/// network's gateway (as Docker's are its embedded server): it answers
/// the containers' names and forwards the rest to the `--dns` servers or
/// the machine's.
pub fn resolv_conf(host: &str, own: &Dns, dns_gateways: &[Ipv4Addr]) -> String {
    let mut servers = Vec::new();
    let mut search = Vec::new();
    let mut options = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("nameserver"), Some(ip))
                if !ip.parse::<IpAddr>().is_ok_and(|a| a.is_loopback()) =>
            {
                servers.push(ip.to_owned());
            }
            (Some("search" | "domain"), Some(first)) => {
                search = std::iter::once(first)
                    .chain(words)
                    .map(str::to_owned)
                    .collect()
            }
            (Some("options"), Some(first)) => {
                options.extend(std::iter::once(first).chain(words).map(str::to_owned))
            }
            _ => {}
        }
    }
    if !own.servers.is_empty() {
        servers = own.servers.iter().map(IpAddr::to_string).collect();
    }
    if servers.is_empty() {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    if !dns_gateways.is_empty() {
        servers = dns_gateways.iter().map(Ipv4Addr::to_string).collect();
    }
    if !own.search.is_empty() {
        search = own.search.iter().filter(|d| *d != ".").cloned().collect();
    }
    if !own.options.is_empty() {
        options = own.options.clone();
    }
    let mut out = String::from("# Written by the user engine.\n");
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// A container's /etc/hosts, as Docker writes it.
pub fn hosts_file(hostname: &str, ip: Option<Ipv4Addr>, extra: &[(String, String)]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (name, ip) in extra {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        let host = "# by netconf\nnameserver 127.0.0.53\nnameserver 10.0.2.3\nsearch lan\n";
        let r = resolv_conf(host, &Dns::default(), &[]);
        assert_eq!(
            r,
            "# Written by the user engine.\nnameserver 10.0.2.3\nsearch lan\n"
        );
        let only_local = resolv_conf("nameserver 127.0.0.1\n", &Dns::default(), &[]);
        assert!(only_local.contains("nameserver 8.8.8.8\nnameserver 8.8.4.4\n"));
    }

    #[test]
    fn the_containers_own_settings_replace_the_machines() {
        let host = "nameserver 10.0.2.3\nsearch lan\noptions ndots:2\n";
        let own = Dns {
            servers: vec!["192.0.2.53".parse().unwrap()],
            search: vec!["example.org".into()],
            options: vec!["timeout:1".into()],
        };
        assert_eq!(
            resolv_conf(host, &own, &[]),
            "# Written by the user engine.\nnameserver 192.0.2.53\nsearch example.org\noptions timeout:1\n"
        );
        let no_search = Dns {
            search: vec![".".into()],
            ..Default::default()
        };
        let r = resolv_conf(host, &no_search, &[]);
        assert!(!r.contains("search"), "{r}");
        assert!(r.contains("nameserver 10.0.2.3\noptions ndots:2\n"), "{r}");
        // On networks with DNS: their aardvark-dns, whatever --dns said
        // (aardvark forwards to those), the search domains kept.
        let gateways = [Ipv4Addr::new(172, 18, 0, 1), Ipv4Addr::new(172, 19, 0, 1)];
        assert_eq!(
            resolv_conf(host, &own, &gateways),
            "# Written by the user engine.\nnameserver 172.18.0.1\nnameserver 172.19.0.1\nsearch example.org\noptions timeout:1\n"
        );
    }

    #[test]
    fn old_records_get_their_bridge_address_as_an_endpoint() {
        let old =
            r#"{"mode":"bridge","ip":"172.17.0.4","mac":"02:42:ac:11:00:04","attached":true}"#;
        let mut s: Settings = serde_json::from_str(old).unwrap();
        s.upgrade();
        assert_eq!(s.endpoints.len(), 1);
        let e = &s.endpoints[0];
        assert_eq!(e.network, BRIDGE_ID);
        assert_eq!(e.ip, Some(Ipv4Addr::new(172, 17, 0, 4)));
        assert_eq!(e.mac.as_deref(), Some("02:42:ac:11:00:04"));
        assert!(e.attached);
        assert_eq!(e.interface, "eth0");
        let again = serde_json::to_value(&s).unwrap();
        assert!(
            again.get("ip").is_none() && again.get("mac").is_none(),
            "{again}"
        );
        assert_eq!(s.next_interface(), "eth1");
        let mut none: Settings = serde_json::from_str(r#"{"mode":"none"}"#).unwrap();
        none.upgrade();
        assert!(none.endpoints.is_empty());
    }

    #[test]
    fn hosts_name_the_container_at_its_address() {
        let extra = [("db".to_owned(), "192.0.2.7".to_owned())];
        let h = hosts_file("abc123", Some(Ipv4Addr::new(172, 17, 0, 2)), &extra);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("192.0.2.7\tdb\n172.17.0.2\tabc123\n"), "{h}");
        assert!(!hosts_file("x", None, &[]).contains("\tx\n"));
    }
}
