//! Container networks: the user engine's default bridge, through netavark.
//!
//! netavark (podman's network stack, Debian's package) makes the bridge,
//! a veth pair per container and the NAT and port-forwarding rules
//! (iptables-nft, the kernel's nf_tables: the machine's one packet
//! filter). The engine does what netavark leaves to its caller, as podman
//! does: it allocates each container's address in the subnet (kept in the
//! container's record, so it is the same after an engine restart and a
//! reboot), keeps each container's network namespace as a file
//! (`corral_runtime::netns`) so it can be set up before the process starts
//! and torn down after it ends, and writes the container's
//! `/etc/resolv.conf`, `/etc/hosts` and `/etc/hostname`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

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
    /// The default bridge.
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
            Mode::Bridge => "bridge".into(),
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
    /// On the bridge: its address, given at create and kept until removal.
    pub ip: Option<Ipv4Addr>,
    /// On the bridge while running: its interface's address and the host
    /// ports it got (a 0 in `ports` resolved).
    pub mac: Option<String>,
    pub bound_ports: Vec<PortMap>,
    /// `--dns`, `--dns-search`, `--dns-option`: in place of the machine's.
    pub dns: Dns,
    /// `--add-host NAME:IP`, added to /etc/hosts.
    pub extra_hosts: Vec<(String, String)>,
    /// netavark has set it up and not torn it down yet: what the next
    /// start or the removal undoes first, whatever happened in between.
    pub attached: bool,
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
    #[error("the bridge network {0} has no free address left")]
    Exhausted(String),
    #[error("{0}")]
    PortInUse(String),
    #[error("netavark {what}: {message}")]
    Netavark { what: &'static str, message: String },
}

/// The default bridge network.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub netavark: PathBuf,
    /// netavark's own state (aardvark's config, when DNS comes).
    pub config_dir: PathBuf,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
}

/// The interface name Docker gives its default bridge.
pub const BRIDGE_INTERFACE: &str = "docker0";
/// Docker names the network `bridge`; its id is fixed here, as the
/// network is (there is one, made from the config).
pub const BRIDGE_NAME: &str = "bridge";
pub const BRIDGE_ID: &str = "c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1";
/// The interface in the container.
const CONTAINER_INTERFACE: &str = "eth0";

impl Bridge {
    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// The bridge's own address: the subnet's first.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) + 1)
    }

    pub fn subnet_text(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }

    /// Whether `ip` is a container address of this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let base = u32::from(self.subnet) & self.mask();
        let ip = u32::from(ip);
        ip & self.mask() == base && ip > base + 1 && ip < (base | !self.mask())
    }

    /// The lowest address not in `used`, after the gateway and before
    /// the broadcast address.
    pub fn allocate(&self, used: &[Ipv4Addr]) -> Result<Ipv4Addr, NetError> {
        let base = u32::from(self.subnet) & self.mask();
        let broadcast = base | !self.mask();
        (base + 2..broadcast)
            .map(Ipv4Addr::from)
            .find(|a| !used.contains(a))
            .ok_or_else(|| NetError::Exhausted(self.subnet_text()))
    }

    /// netavark's input: the network, the container's place in it, its
    /// ports.
    fn options(&self, id: &str, name: &str, ip: Ipv4Addr, ports: &[PortMap]) -> serde_json::Value {
        let ports: Vec<_> = ports
            .iter()
            .map(|p| {
                json!({
                    "host_ip": p.host_ip,
                    "container_port": p.container_port,
                    "host_port": p.host_port,
                    "range": 1,
                    "protocol": p.protocol,
                })
            })
            .collect();
        json!({
            "container_id": id,
            "container_name": name,
            "port_mappings": ports,
            "networks": {
                BRIDGE_NAME: {
                    "interface_name": CONTAINER_INTERFACE,
                    "static_ips": [ip.to_string()],
                    "aliases": [],
                }
            },
            "network_info": {
                BRIDGE_NAME: {
                    "name": BRIDGE_NAME,
                    "id": BRIDGE_ID,
                    "driver": "bridge",
                    "network_interface": BRIDGE_INTERFACE,
                    "subnets": [{
                        "subnet": self.subnet_text(),
                        "gateway": self.gateway().to_string(),
                    }],
                    "ipv6_enabled": false,
                    "internal": false,
                    "dns_enabled": false,
                    "ipam_options": { "driver": "host-local" },
                }
            }
        })
    }

    async fn netavark(
        &self,
        what: &'static str,
        netns: &Path,
        input: serde_json::Value,
    ) -> Result<Vec<u8>, NetError> {
        use tokio::io::AsyncWriteExt;
        let fail = |message: String| NetError::Netavark { what, message };
        let mut child = tokio::process::Command::new(&self.netavark)
            .arg("--config")
            .arg(&self.config_dir)
            .arg(what)
            .arg(netns)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("{}: {e}", self.netavark.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            let bytes = input.to_string().into_bytes();
            stdin
                .write_all(&bytes)
                .await
                .map_err(|e| fail(format!("writing its input: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        // It reports `{"error": "..."}` on stdout, log lines on stderr.
        let error = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
                if text.is_empty() {
                    out.status.to_string()
                } else {
                    text
                }
            });
        Err(fail(error))
    }

    /// Puts the container at `netns` on the bridge; returns its MAC.
    pub async fn setup(
        &self,
        netns: &Path,
        id: &str,
        name: &str,
        ip: Ipv4Addr,
        ports: &[PortMap],
    ) -> Result<String, NetError> {
        let out = self
            .netavark("setup", netns, self.options(id, name, ip, ports))
            .await?;
        #[derive(Deserialize)]
        struct Interface {
            mac_address: String,
        }
        #[derive(Deserialize)]
        struct Status {
            interfaces: std::collections::BTreeMap<String, Interface>,
        }
        let status: std::collections::BTreeMap<String, Status> = serde_json::from_slice(&out)
            .map_err(|e| NetError::Netavark {
                what: "setup",
                message: format!("unreadable answer ({e}): {}", String::from_utf8_lossy(&out)),
            })?;
        Ok(status
            .get(BRIDGE_NAME)
            .and_then(|s| s.interfaces.get(CONTAINER_INTERFACE))
            .map(|i| i.mac_address.clone())
            .unwrap_or_default())
    }

    /// Takes the container off the bridge: its veth, its port rules.
    /// `netns` may be an empty namespace when the container's is gone
    /// (its process ended while no engine held it): the rules still go,
    /// and only the missing veth is reported, which is then not an error.
    pub async fn teardown(
        &self,
        netns: &Path,
        id: &str,
        name: &str,
        ip: Ipv4Addr,
        ports: &[PortMap],
        namespace_gone: bool,
    ) -> Result<(), NetError> {
        match self
            .netavark("teardown", netns, self.options(id, name, ip, ports))
            .await
        {
            Err(NetError::Netavark { message, .. })
                if namespace_gone && message.contains("No such device") =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }
}

/// Host ports given as 0 get a free one; every port is checked free on
/// the machine (a DNAT rule would otherwise take a port a host service
/// listens on, silently). `taken` are ports other containers publish.
pub fn bind_ports(ports: &[PortMap], taken: &[PortMap]) -> Result<Vec<PortMap>, NetError> {
    let mut bound: Vec<PortMap> = Vec::new();
    for p in ports {
        let addr: IpAddr = if p.host_ip.is_empty() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            p.host_ip
                .parse()
                .map_err(|_| NetError::PortInUse(format!("{:?} is not an IP address", p.host_ip)))?
        };
        let clash = |port: u16| {
            taken.iter().chain(bound.iter()).any(|t| {
                t.host_port == port
                    && t.protocol == p.protocol
                    && (t.host_ip.is_empty() || p.host_ip.is_empty() || t.host_ip == p.host_ip)
            })
        };
        let shown = |port: u16| {
            let ip = if p.host_ip.is_empty() {
                "0.0.0.0"
            } else {
                &p.host_ip
            };
            format!("{ip}:{port}")
        };
        if p.host_port != 0 && clash(p.host_port) {
            return Err(NetError::PortInUse(format!(
                "Bind for {} failed: port is already allocated",
                shown(p.host_port)
            )));
        }
        // Binding tells whether a host process holds the port, and for 0
        // which one is free. The socket closes at once.
        let probe = |port: u16| -> std::io::Result<u16> {
            let sa = std::net::SocketAddr::new(addr, port);
            if p.protocol == "udp" {
                std::net::UdpSocket::bind(sa)?
                    .local_addr()
                    .map(|a| a.port())
            } else {
                std::net::TcpListener::bind(sa)?
                    .local_addr()
                    .map(|a| a.port())
            }
        };
        let mut port = 0;
        for _ in 0..16 {
            let got = probe(p.host_port).map_err(|e| {
                // Go's words, as Docker's message has them.
                let why = match e.raw_os_error() {
                    Some(libc::EADDRINUSE) => "address already in use".to_owned(),
                    Some(libc::EADDRNOTAVAIL) => "cannot assign requested address".to_owned(),
                    _ => e.to_string(),
                };
                NetError::PortInUse(format!("Bind for {} failed: {why}", shown(p.host_port)))
            })?;
            if !clash(got) {
                port = got;
                break;
            }
        }
        if port == 0 {
            return Err(NetError::PortInUse(format!(
                "no free {} port on {}",
                p.protocol,
                shown(0)
            )));
        }
        bound.push(PortMap {
            host_port: port,
            ..p.clone()
        });
    }
    Ok(bound)
}

/// A container's resolv.conf, as Docker writes it: the machine's, less
/// loopback name servers (they would be the container's own loopback;
/// Google's public servers when none is left), each part replaced by the
/// container's own `--dns`, `--dns-search`, `--dns-option` when given.
pub fn resolv_conf(host: &str, own: &Dns) -> String {
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

    fn bridge(subnet: &str, prefix: u8) -> Bridge {
        Bridge {
            netavark: "/usr/lib/podman/netavark".into(),
            config_dir: "/run/x".into(),
            subnet: subnet.parse().unwrap(),
            prefix,
        }
    }

    #[test]
    fn addresses_come_after_the_gateway_and_before_broadcast() {
        let b = bridge("172.17.0.0", 16);
        assert_eq!(b.gateway(), Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(b.allocate(&[]).unwrap(), Ipv4Addr::new(172, 17, 0, 2));
        let used = [Ipv4Addr::new(172, 17, 0, 2), Ipv4Addr::new(172, 17, 0, 4)];
        assert_eq!(b.allocate(&used).unwrap(), Ipv4Addr::new(172, 17, 0, 3));
        // A /30 has room for one container.
        let small = bridge("192.168.9.0", 30);
        let one = small.allocate(&[]).unwrap();
        assert_eq!(one, Ipv4Addr::new(192, 168, 9, 2));
        assert!(small.contains(one));
        assert!(
            !small.contains(Ipv4Addr::new(192, 168, 9, 1)),
            "the gateway"
        );
        assert!(!b.contains(one));
        let e = small.allocate(&[one]).unwrap_err().to_string();
        assert!(e.contains("192.168.9.0/30"), "{e}");
    }

    #[test]
    fn netavark_gets_the_network_the_address_and_the_ports() {
        let b = bridge("172.17.0.0", 16);
        let ports = [PortMap {
            host_ip: String::new(),
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
        }];
        let v = b.options("abc", "web", Ipv4Addr::new(172, 17, 0, 5), &ports);
        assert_eq!(v["networks"]["bridge"]["static_ips"][0], "172.17.0.5");
        assert_eq!(v["networks"]["bridge"]["interface_name"], "eth0");
        let net = &v["network_info"]["bridge"];
        assert_eq!(net["network_interface"], "docker0");
        assert_eq!(net["subnets"][0]["subnet"], "172.17.0.0/16");
        assert_eq!(net["subnets"][0]["gateway"], "172.17.0.1");
        assert_eq!(v["port_mappings"][0]["host_port"], 8080);
        assert_eq!(v["port_mappings"][0]["container_port"], 80);
        assert_eq!(v["port_mappings"][0]["protocol"], "tcp");
    }

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        let host = "# by netconf\nnameserver 127.0.0.53\nnameserver 10.0.2.3\nsearch lan\n";
        let r = resolv_conf(host, &Dns::default());
        assert_eq!(
            r,
            "# Written by the user engine.\nnameserver 10.0.2.3\nsearch lan\n"
        );
        let only_local = resolv_conf("nameserver 127.0.0.1\n", &Dns::default());
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
            resolv_conf(host, &own),
            "# Written by the user engine.\nnameserver 192.0.2.53\nsearch example.org\noptions timeout:1\n"
        );
        let no_search = Dns {
            search: vec![".".into()],
            ..Default::default()
        };
        let r = resolv_conf(host, &no_search);
        assert!(!r.contains("search"), "{r}");
        assert!(r.contains("nameserver 10.0.2.3\noptions ndots:2\n"), "{r}");
    }

    #[test]
    fn hosts_name_the_container_at_its_address() {
        let extra = [("db".to_owned(), "192.0.2.7".to_owned())];
        let h = hosts_file("abc123", Some(Ipv4Addr::new(172, 17, 0, 2)), &extra);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("192.0.2.7\tdb\n172.17.0.2\tabc123\n"), "{h}");
        assert!(!hosts_file("x", None, &[]).contains("\tx\n"));
    }

    #[test]
    fn ports_in_use_are_refused_and_zero_gets_a_free_one() {
        let tcp = |host_port| PortMap {
            host_ip: "127.0.0.1".into(),
            host_port,
            container_port: 80,
            protocol: "tcp".into(),
        };
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let e = bind_ports(&[tcp(port)], &[]).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("Bind for 127.0.0.1:{port} failed: address already in use")
        );
        drop(held);
        assert_eq!(bind_ports(&[tcp(port)], &[]).unwrap()[0].host_port, port);
        let e = bind_ports(&[tcp(port)], &[tcp(port)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("already allocated"), "{e}");
        let picked = bind_ports(&[tcp(0), tcp(0)], &[]).unwrap();
        assert_ne!(picked[0].host_port, 0);
        assert_ne!(picked[0].host_port, picked[1].host_port);
    }
}
