//! A container's networks as the Docker API shows them: its
//! `NetworkSettings` (inspect), its ports and networks in `ps`,
//! `HostConfig.NetworkMode` and `PortBindings`.

use std::collections::HashMap;

use bollard_stubs::models::{
    EndpointIpamConfig, EndpointSettings, PortBinding, PortSummary, PortSummaryTypeEnum,
};
use corral_config::service::HostNamespace;
use serde_json::{json, Value};

use crate::network::{Endpoint, Mode, NetworkStore, PortMap, BRIDGE_ID};
use crate::state::Record;

/// `HostConfig.NetworkMode`: system containers have theirs from their
/// definition.
pub fn network_mode(record: &Record) -> String {
    if record
        .def
        .host_namespaces
        .iter()
        .flatten()
        .any(|n| *n == HostNamespace::Net)
    {
        return "host".into();
    }
    let net = &record.api.network;
    match (&net.mode, net.endpoints.first()) {
        (Mode::Bridge, Some(e)) if !e.name.is_empty() => e.name.clone(),
        (mode, _) => mode.docker_name(),
    }
}

fn host_ip(p: &PortMap) -> String {
    if p.host_ip.is_empty() {
        "0.0.0.0".into()
    } else {
        p.host_ip.clone()
    }
}

fn key(p: &PortMap) -> String {
    format!("{}/{}", p.container_port, p.protocol)
}

/// `HostConfig.PortBindings`: as asked (a host port the engine picks is "").
pub fn port_bindings(record: &Record) -> HashMap<String, Option<Vec<PortBinding>>> {
    let mut out: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &record.api.network.ports {
        out.entry(key(p))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(if p.host_port == 0 {
                    String::new()
                } else {
                    p.host_port.to_string()
                }),
            });
    }
    out
}

/// `NetworkSettings.Ports`: every exposed port, with the host ports it is
/// published on while the container runs (`docker port` reads this).
fn ports(record: &Record, running: bool) -> Value {
    let mut map = serde_json::Map::new();
    let net = &record.api.network;
    if net.mode != Mode::Bridge {
        return Value::Object(map);
    }
    for e in &record.api.exposed_ports {
        let e = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        map.insert(e, Value::Null);
    }
    if running {
        for p in &net.bound_ports {
            let entry = map.entry(key(p)).or_insert(Value::Null);
            if !entry.is_array() {
                *entry = Value::Array(Vec::new());
            }
            if let Value::Array(list) = entry {
                list.push(json!({"HostIp": host_ip(p), "HostPort": p.host_port.to_string()}));
            }
        }
    }
    Value::Object(map)
}

/// An endpoint's id: stable for the container on the network.
fn endpoint_id(container: &str, network: &str) -> String {
    format!(
        "{}{}",
        &container[..32.min(container.len())],
        &network[..32.min(network.len())]
    )
}

/// One endpoint, with its address while running.
fn endpoint(
    record: &Record,
    e: &Endpoint,
    store: Option<&NetworkStore>,
    running: bool,
) -> EndpointSettings {
    let network = store.and_then(|s| s.by_id(&e.network));
    let up = running && e.attached;
    let text = |s: String| Some(if up { s } else { String::new() });
    let user_defined = network.as_ref().is_some_and(|n| n.dns);
    EndpointSettings {
        network_id: Some(e.network.clone()),
        endpoint_id: text(endpoint_id(&record.id, &e.network)),
        gateway: text(
            network
                .as_ref()
                .map(|n| n.gateway.to_string())
                .unwrap_or_default(),
        ),
        ip_address: text(e.ip.map(|i| i.to_string()).unwrap_or_default()),
        ip_prefix_len: Some(match (&network, up) {
            (Some(n), true) => i64::from(n.subnet.prefix_len()),
            _ => 0,
        }),
        mac_address: text(e.mac.clone().unwrap_or_default()),
        aliases: user_defined.then(|| e.aliases.clone()),
        ipam_config: e.static_ip.then(|| EndpointIpamConfig {
            ipv4_address: e.ip.map(|i| i.to_string()),
            ..Default::default()
        }),
        ipv6_gateway: Some(String::new()),
        global_ipv6_address: Some(String::new()),
        global_ipv6_prefix_len: Some(0),
        ..Default::default()
    }
}

/// The container's networks by name, as `ps` and inspect show them.
pub fn networks(
    record: &Record,
    store: Option<&NetworkStore>,
    running: bool,
) -> HashMap<String, EndpointSettings> {
    let mut out = HashMap::new();
    let empty = || EndpointSettings {
        network_id: Some(String::new()),
        ..Default::default()
    };
    match (&record.api.network.mode, network_mode(record).as_str()) {
        (_, "host") => {
            out.insert("host".to_owned(), empty());
        }
        (Mode::None, _) => {
            out.insert("none".to_owned(), empty());
        }
        (Mode::Bridge, _) => {
            for e in &record.api.network.endpoints {
                let name = store
                    .and_then(|s| s.by_id(&e.network))
                    .map(|n| n.name)
                    .unwrap_or_else(|| e.name.clone());
                out.insert(name, endpoint(record, e, store, running));
            }
        }
        (Mode::Container(_), _) | (Mode::Host, _) => {}
    }
    out
}

/// `ps`'s PORTS column: the published ports while running, and the exposed
/// ones that are not.
pub fn summary_ports(record: &Record, running: bool) -> Vec<PortSummary> {
    let typ = |p: &str| match p {
        "udp" => PortSummaryTypeEnum::UDP,
        _ => PortSummaryTypeEnum::TCP,
    };
    let net = &record.api.network;
    let mut out = Vec::new();
    if running && net.mode == Mode::Bridge {
        for p in &net.bound_ports {
            out.push(PortSummary {
                ip: Some(host_ip(p)),
                private_port: p.container_port,
                public_port: Some(p.host_port),
                typ: Some(typ(&p.protocol)),
            });
        }
    }
    for e in &record.api.exposed_ports {
        let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if !out.iter().any(|p| p.private_port == port) {
            out.push(PortSummary {
                ip: None,
                private_port: port,
                public_port: None,
                typ: Some(typ(proto)),
            });
        }
    }
    out
}

/// Inspect's `NetworkSettings`, with the top-level address fields the
/// 20.10 CLI and docker-py still read (`{{.NetworkSettings.IPAddress}}`),
/// which the current model dropped.
pub fn settings(
    record: &Record,
    store: Option<&NetworkStore>,
    netns: &str,
    running: bool,
) -> Value {
    let nets = networks(record, store, running);
    // Docker's top-level fields are the default bridge's alone.
    let main = nets
        .values()
        .find(|e| e.network_id.as_deref() == Some(BRIDGE_ID))
        .cloned()
        .unwrap_or_default();
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    json!({
        "Bridge": "",
        "SandboxID": if running && record.api.network.attached { record.id.clone() } else { String::new() },
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports(record, running),
        "SandboxKey": if running && record.api.network.attached { netns.to_owned() } else { String::new() },
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": s(&main.endpoint_id),
        "Gateway": s(&main.gateway),
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": s(&main.ip_address),
        "IPPrefixLen": main.ip_prefix_len.unwrap_or(0),
        "IPv6Gateway": "",
        "MacAddress": s(&main.mac_address),
        "Networks": serde_json::to_value(&nets).unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{Settings, BRIDGE_NAME};

    fn record(network: Settings, exposed: &[&str]) -> Record {
        let mut r = Record {
            id: "abc".into(),
            name: "web".into(),
            image: "busybox".into(),
            image_id: "sha256:x".into(),
            def: Default::default(),
            service: false,
            created: "2026-01-01T00:00:00Z".into(),
            restart_count: 0,
            state: Default::default(),
            api: Default::default(),
            stopped_by_hand: false,
        };
        r.api.network = network;
        r.api.exposed_ports = exposed.iter().map(|s| s.to_string()).collect();
        r
    }

    fn store(dir: &std::path::Path) -> NetworkStore {
        NetworkStore::open(
            dir.join("networks"),
            crate::network::Netavark {
                netavark: "/x".into(),
                aardvark: "/y".into(),
                config_dir: dir.join("nv"),
            },
            "172.17.0.0/16".parse().unwrap(),
        )
        .unwrap()
    }

    fn web() -> Settings {
        let published = PortMap {
            host_ip: String::new(),
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
        };
        Settings {
            mode: Mode::Bridge,
            ports: vec![published.clone()],
            endpoints: vec![Endpoint {
                network: BRIDGE_ID.into(),
                name: BRIDGE_NAME.into(),
                ip: Some("172.17.0.2".parse().unwrap()),
                mac: Some("02:42:ac:11:00:02".into()),
                interface: "eth0".into(),
                attached: true,
                ..Default::default()
            }],
            bound_ports: vec![published],
            attached: true,
            publish_all: false,
            ..Default::default()
        }
    }

    #[test]
    fn a_running_bridged_container_shows_its_address_and_ports() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(web(), &["80/tcp", "443/tcp"]);
        let v = settings(
            &r,
            Some(&store(dir.path())),
            "/run/corral/user/netns/abc",
            true,
        );
        assert_eq!(v["IPAddress"], "172.17.0.2");
        assert_eq!(v["Gateway"], "172.17.0.1");
        assert_eq!(v["IPPrefixLen"], 16);
        assert_eq!(v["Ports"]["80/tcp"][0]["HostPort"], "8080");
        assert_eq!(v["Ports"]["80/tcp"][0]["HostIp"], "0.0.0.0");
        assert!(v["Ports"]["443/tcp"].is_null());
        assert_eq!(v["Networks"]["bridge"]["IPAddress"], "172.17.0.2");
        assert_eq!(v["Networks"]["bridge"]["MacAddress"], "02:42:ac:11:00:02");
        let ps = summary_ports(&r, true);
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].public_port, Some(8080));
        assert_eq!(ps[1].public_port, None);
        assert_eq!(network_mode(&r), "bridge");
    }

    #[test]
    fn a_stopped_one_shows_no_address_and_no_published_ports() {
        let dir = tempfile::tempdir().unwrap();
        let r = record(web(), &["80/tcp"]);
        let v = settings(&r, Some(&store(dir.path())), "/n", false);
        assert_eq!(v["IPAddress"], "");
        assert!(v["Ports"]["80/tcp"].is_null());
        assert_eq!(v["SandboxKey"], "");
        assert_eq!(summary_ports(&r, false)[0].public_port, None);
        assert_eq!(
            port_bindings(&r)["80/tcp"].as_ref().unwrap()[0]
                .host_port
                .as_deref(),
            Some("8080")
        );
    }

    #[test]
    fn other_modes_name_their_network() {
        let none = record(Settings::default(), &[]);
        assert!(networks(&none, None, true).contains_key("none"));
        let joined = record(
            Settings {
                mode: Mode::Container("abc".into()),
                ..Default::default()
            },
            &[],
        );
        assert_eq!(network_mode(&joined), "container:abc");
        assert!(networks(&joined, None, true).is_empty());
    }

    #[test]
    fn a_user_network_shows_under_its_name_with_the_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let n = store
            .create(
                "ab".repeat(32),
                crate::network::Request {
                    name: "app".into(),
                    subnet: Some("10.5.0.0/24".into()),
                    ..Default::default()
                },
                "t".into(),
            )
            .unwrap();
        let mut net = web();
        net.endpoints = vec![Endpoint {
            network: n.id.clone(),
            name: "app".into(),
            ip: Some("10.5.0.7".parse().unwrap()),
            static_ip: true,
            aliases: vec!["db".into(), "abc".into()],
            interface: "eth0".into(),
            attached: true,
            mac: Some("02:00:00:00:00:07".into()),
        }];
        let r = record(net, &[]);
        assert_eq!(network_mode(&r), "app");
        let v = settings(&r, Some(&store), "/n", true);
        let app = &v["Networks"]["app"];
        assert_eq!(app["IPAddress"], "10.5.0.7");
        assert_eq!(app["Gateway"], "10.5.0.1");
        assert_eq!(app["IPPrefixLen"], 24);
        assert_eq!(app["NetworkID"], n.id);
        assert_eq!(app["Aliases"], json!(["db", "abc"]));
        assert_eq!(app["IPAMConfig"]["IPv4Address"], "10.5.0.7");
        // The top-level fields are the default bridge's, as in Docker.
        assert_eq!(v["IPAddress"], "");
        assert!(v["Networks"].get("bridge").is_none());
    }
}
