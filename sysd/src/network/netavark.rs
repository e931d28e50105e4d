//! netavark (podman's network stack, Debian's package) puts a container's
//! namespace on its networks: the bridge, a veth per network, the NAT and
//! port-forwarding rules (iptables-nft, the kernel's nf_tables: the
//! machine's one packet filter), and on networks with DNS the container's
//! names in aardvark-dns, which it starts and signals itself.
//!
//! Each call names the networks it acts on, so a running container can
//! join (`docker network connect`) or leave one without the others being
//! touched; its published ports go with every network it is on, as
//! netavark forwards them per network.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use super::{Network, PortMap};
use crate::network::NetError;

/// Serialises the engine's netavark runs (see `run`).
static RUNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where netavark and aardvark-dns are, and netavark's state (aardvark's
/// config, one file per network, and its pid file).
#[derive(Debug, Clone)]
pub struct Netavark {
    pub netavark: PathBuf,
    pub aardvark: PathBuf,
    pub config_dir: PathBuf,
}

/// One network of a call: the network, and the container's interface
/// name, address and aliases on it.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    pub network: &'a Network,
    pub interface: &'a str,
    pub ip: Ipv4Addr,
    pub aliases: &'a [String],
}

/// The container a call is about.
#[derive(Debug, Clone)]
pub struct Container<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub ports: &'a [PortMap],
    /// Where aardvark-dns forwards this container's other queries; empty:
    /// the machine's resolvers.
    pub dns_servers: &'a [IpAddr],
}

impl Netavark {
    fn aardvark_dir(&self) -> PathBuf {
        self.config_dir.join("aardvark-dns")
    }

    /// netavark's input: the networks, the container's place in each,
    /// its ports.
    fn options(&self, c: &Container, on: &[Attachment]) -> serde_json::Value {
        let ports: Vec<_> = c
            .ports
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
        let mut networks = serde_json::Map::new();
        let mut info = serde_json::Map::new();
        for a in on {
            let n = a.network;
            networks.insert(
                n.name.clone(),
                json!({
                    "interface_name": a.interface,
                    "static_ips": [a.ip.to_string()],
                    "aliases": if n.dns { a.aliases.to_vec() } else { Vec::new() },
                }),
            );
            let mut options = serde_json::Map::new();
            if let Some(mtu) = n.mtu {
                options.insert("mtu".into(), json!(mtu.to_string()));
            }
            info.insert(
                n.name.clone(),
                json!({
                    "name": n.name,
                    "id": n.id,
                    "driver": "bridge",
                    "network_interface": n.interface,
                    "subnets": [{
                        "subnet": n.subnet.to_string(),
                        "gateway": n.gateway.to_string(),
                    }],
                    "ipv6_enabled": false,
                    "internal": n.internal,
                    "dns_enabled": n.dns,
                    "options": options,
                    "ipam_options": { "driver": "host-local" },
                }),
            );
        }
        let mut v = json!({
            "container_id": c.id,
            "container_name": c.name,
            "port_mappings": ports,
            "networks": networks,
            "network_info": info,
        });
        if !c.dns_servers.is_empty() {
            v["dns_servers"] = json!(c
                .dns_servers
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>());
        }
        v
    }

    async fn run(
        &self,
        what: &'static str,
        netns: &Path,
        input: serde_json::Value,
    ) -> Result<Vec<u8>, NetError> {
        use tokio::io::AsyncWriteExt;
        let fail = |message: String| NetError::Netavark { what, message };
        // One netavark at a time, as podman runs it: two at once on one
        // network race on its firewall chains (a teardown removing the
        // chain another's setup appends to, `docker-compose restart`).
        let _one = RUNS.lock().await;
        // netavark makes the network files' directory only below this.
        std::fs::create_dir_all(&self.config_dir)
            .map_err(|e| fail(format!("{}: {e}", self.config_dir.display())))?;
        let mut child = tokio::process::Command::new(&self.netavark)
            .arg("--config")
            .arg(&self.config_dir)
            .arg("--aardvark-binary")
            .arg(&self.aardvark)
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

    /// Puts the container at `netns` on the networks of `on`; returns its
    /// MAC address on each, by network name.
    pub async fn setup(
        &self,
        netns: &Path,
        c: &Container<'_>,
        on: &[Attachment<'_>],
    ) -> Result<BTreeMap<String, String>, NetError> {
        let out = self.run("setup", netns, self.options(c, on)).await?;
        #[derive(Deserialize)]
        struct Interface {
            mac_address: String,
        }
        #[derive(Deserialize)]
        struct Status {
            interfaces: BTreeMap<String, Interface>,
        }
        let status: BTreeMap<String, Status> =
            serde_json::from_slice(&out).map_err(|e| NetError::Netavark {
                what: "setup",
                message: format!("unreadable answer ({e}): {}", String::from_utf8_lossy(&out)),
            })?;
        Ok(on
            .iter()
            .map(|a| {
                let mac = status
                    .get(&a.network.name)
                    .and_then(|s| s.interfaces.get(a.interface))
                    .map(|i| i.mac_address.clone())
                    .unwrap_or_default();
                (a.network.name.clone(), mac)
            })
            .collect())
    }

    /// Takes the container off the networks of `on`: its veths, its port
    /// rules, its names. `netns` may be an empty namespace when the
    /// container's is gone (its process ended while no engine held it):
    /// the rules still go, and only the missing veth is reported, which
    /// is then not an error.
    pub async fn teardown(
        &self,
        netns: &Path,
        c: &Container<'_>,
        on: &[Attachment<'_>],
        namespace_gone: bool,
    ) -> Result<(), NetError> {
        match self.run("teardown", netns, self.options(c, on)).await {
            Err(NetError::Netavark { message, .. })
                if namespace_gone && message.contains("No such device") =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// aardvark-dns, which netavark starts at the first setup on a
    /// network with DNS, ends with the engine's service (it is in its
    /// cgroup). A restarted engine whose adopted containers still have
    /// names in aardvark's files starts it again as netavark would: the
    /// same binary, directory and port.
    pub fn ensure_dns(&self) -> Result<bool, NetError> {
        let dir = self.aardvark_dir();
        let has_networks = std::fs::read_dir(&dir)
            .map(|entries| {
                entries.flatten().any(|e| {
                    let name = e.file_name();
                    name != "aardvark.pid" && e.path().is_file()
                })
            })
            .unwrap_or(false);
        if !has_networks || self.dns_running() {
            return Ok(false);
        }
        let status = std::process::Command::new(&self.aardvark)
            .arg("--config")
            .arg(&dir)
            .args(["-p", "53", "run"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| NetError::Netavark {
                what: "restarting aardvark-dns",
                message: format!("{}: {e}", self.aardvark.display()),
            })?;
        // It forks and the parent returns once the server is up.
        if !status.success() {
            return Err(NetError::Netavark {
                what: "restarting aardvark-dns",
                message: status.to_string(),
            });
        }
        Ok(true)
    }

    /// Whether the aardvark-dns of the pid file is alive (and is one: a
    /// pid can be reused).
    fn dns_running(&self) -> bool {
        let Ok(text) = std::fs::read_to_string(self.aardvark_dir().join("aardvark.pid")) else {
            return false;
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            return false;
        };
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|cmd| {
                let exe = cmd.split(|b| *b == 0).next().unwrap_or_default();
                exe.ends_with(b"aardvark-dns") && !cmd.is_empty()
            })
            .unwrap_or(false)
            && !is_zombie(pid)
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool() -> Netavark {
        Netavark {
            netavark: "/usr/lib/podman/netavark".into(),
            aardvark: "/usr/lib/podman/aardvark-dns".into(),
            config_dir: "/run/x".into(),
        }
    }

    #[test]
    fn netavark_gets_each_network_the_address_the_aliases_and_the_ports() {
        let bridge = Network::default_bridge("172.17.0.0/16".parse().unwrap());
        let mut user = Network::default_bridge("10.89.0.0/24".parse().unwrap());
        user.id = "ab".repeat(32);
        user.name = "app".into();
        user.interface = "br-abababababab".into();
        user.dns = true;
        user.internal = true;
        user.mtu = Some(1400);
        let ports = [PortMap {
            host_ip: String::new(),
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
        }];
        let aliases = vec!["db".to_owned(), "0123456789ab".to_owned()];
        let c = Container {
            id: "abc",
            name: "web",
            ports: &ports,
            dns_servers: &["192.0.2.53".parse().unwrap()],
        };
        let on = [
            Attachment {
                network: &bridge,
                interface: "eth0",
                ip: Ipv4Addr::new(172, 17, 0, 5),
                aliases: &aliases,
            },
            Attachment {
                network: &user,
                interface: "eth1",
                ip: Ipv4Addr::new(10, 89, 0, 2),
                aliases: &aliases,
            },
        ];
        let v = tool().options(&c, &on);
        assert_eq!(v["networks"]["bridge"]["static_ips"][0], "172.17.0.5");
        assert_eq!(v["networks"]["bridge"]["interface_name"], "eth0");
        assert_eq!(
            v["networks"]["bridge"]["aliases"],
            json!([]),
            "the default bridge has no names"
        );
        assert_eq!(v["networks"]["app"]["aliases"], json!(aliases));
        let b = &v["network_info"]["bridge"];
        assert_eq!(b["network_interface"], "docker0");
        assert_eq!(b["subnets"][0]["subnet"], "172.17.0.0/16");
        assert_eq!(b["subnets"][0]["gateway"], "172.17.0.1");
        assert_eq!(b["dns_enabled"], false);
        let a = &v["network_info"]["app"];
        assert_eq!(a["dns_enabled"], true);
        assert_eq!(a["internal"], true);
        assert_eq!(a["options"]["mtu"], "1400");
        assert_eq!(v["port_mappings"][0]["host_port"], 8080);
        assert_eq!(v["port_mappings"][0]["container_port"], 80);
        assert_eq!(v["dns_servers"][0], "192.0.2.53");
    }
}
