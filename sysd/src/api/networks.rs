//! Networks as the Docker API shows them: a container's `NetworkSettings`
//! (inspect), its ports and networks in `ps`, `HostConfig.NetworkMode`
//! and `PortBindings`. The `/networks` endpoints come with user-defined
//! networks (the next issue).

use std::collections::HashMap;

use bollard_stubs::models::{EndpointSettings, PortBinding, PortSummary, PortSummaryTypeEnum};
use corral_config::service::HostNamespace;
use serde_json::{json, Value};

use crate::network::{Bridge, Mode, PortMap, BRIDGE_ID, BRIDGE_NAME};
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
    record.api.network.mode.docker_name()
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

/// The endpoint on the bridge, with its address while running.
fn endpoint(record: &Record, bridge: &Bridge, running: bool) -> EndpointSettings {
    let net = &record.api.network;
    let up = running && net.attached;
    let text = |s: String| Some(if up { s } else { String::new() });
    EndpointSettings {
        network_id: Some(BRIDGE_ID.into()),
        endpoint_id: text(record.id.clone()),
        gateway: text(bridge.gateway().to_string()),
        ip_address: text(net.ip.map(|i| i.to_string()).unwrap_or_default()),
        ip_prefix_len: Some(if up { i64::from(bridge.prefix) } else { 0 }),
        mac_address: text(net.mac.clone().unwrap_or_default()),
        ipv6_gateway: Some(String::new()),
        global_ipv6_address: Some(String::new()),
        global_ipv6_prefix_len: Some(0),
        ..Default::default()
    }
}

/// The container's networks by name, as `ps` and inspect show them.
pub fn networks(
    record: &Record,
    bridge: Option<&Bridge>,
    running: bool,
) -> HashMap<String, EndpointSettings> {
    let mut out = HashMap::new();
    let name = match (&record.api.network.mode, network_mode(record).as_str()) {
        (_, "host") => "host",
        (Mode::Bridge, _) => BRIDGE_NAME,
        (Mode::None, _) => "none",
        (Mode::Container(_), _) | (Mode::Host, _) => return out,
    };
    let settings = match (name, bridge) {
        (BRIDGE_NAME, Some(b)) => endpoint(record, b, running),
        _ => EndpointSettings {
            network_id: Some(String::new()),
            ..Default::default()
        },
    };
    out.insert(name.to_owned(), settings);
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
pub fn settings(record: &Record, bridge: Option<&Bridge>, netns: &str, running: bool) -> Value {
    let nets = networks(record, bridge, running);
    let main = nets.get(BRIDGE_NAME).cloned().unwrap_or_default();
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

/// `POST /networks/prune` (what `docker system prune` calls first):
/// networks no container uses. This engine has only its default bridge,
/// which is never pruned, so there is nothing to remove yet.
pub fn prune() -> super::ApiResult {
    Ok(super::json_response(
        200,
        &bollard_stubs::models::NetworkPruneResponse {
            networks_deleted: Some(Vec::new()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Settings;

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

    fn bridge() -> Bridge {
        Bridge {
            netavark: "/x".into(),
            config_dir: "/y".into(),
            subnet: "172.17.0.0".parse().unwrap(),
            prefix: 16,
        }
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
            ip: Some("172.17.0.2".parse().unwrap()),
            mac: Some("02:42:ac:11:00:02".into()),
            bound_ports: vec![published],
            attached: true,
            publish_all: false,
            ..Default::default()
        }
    }

    #[test]
    fn a_running_bridged_container_shows_its_address_and_ports() {
        let r = record(web(), &["80/tcp", "443/tcp"]);
        let v = settings(&r, Some(&bridge()), "/run/corral/user/netns/abc", true);
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
        let r = record(web(), &["80/tcp"]);
        let v = settings(&r, Some(&bridge()), "/n", false);
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
        assert!(networks(&none, Some(&bridge()), true).contains_key("none"));
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
}
