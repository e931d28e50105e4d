//! `/networks`: list (with filters), inspect, create, connect and
//! disconnect a container, remove and prune. Besides the networks the
//! engine keeps (`crate::network`), `host` and `none` are listed as
//! Docker lists them: `--network` values with no network of their own.

mod settings;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use bollard_stubs::models::{
    EndpointResource, Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest,
    NetworkCreateResponse, NetworkDisconnectRequest, NetworkInspect, NetworkPruneResponse,
};
use hyper::body::Incoming;
use hyper::{Method, Request};

pub use settings::{network_mode, networks, port_bindings, settings, summary_ports};

use super::containers::Filters;
use super::volumes::label_matches;
use super::{json_response, parse_json, parse_query, read_body, ApiError, ApiResult};
use crate::engine::Engine;
use crate::network::{self, Endpoint, Network};

/// `host` and `none`: fixed ids, as the network each names is fixed.
const HOST_ID: &str = "4057405740574057405740574057405740574057405740574057405740574057";
const NONE_ID: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub async fn route(engine: &Arc<Engine>, req: Request<Incoming>, rest: &[&str]) -> ApiResult {
    let q = parse_query(req.uri().query());
    let filters = q.get("filters").map(String::as_str);
    match (req.method().clone(), rest) {
        (Method::GET, []) => list(engine, filters),
        (Method::POST, ["create"]) => {
            let body = read_body(req, 1 << 20).await?;
            let c: NetworkCreateRequest = parse_json(&body, "invalid network config")?;
            create(engine, c)
        }
        (Method::POST, ["prune"]) => prune(engine, filters),
        (Method::GET, [reference]) => {
            let n = find(engine, reference)?;
            Ok(json_response(200, &n))
        }
        (Method::DELETE, [reference]) => {
            if pseudo(reference).is_some() {
                return Err(ApiError::new(
                    403,
                    format!("{reference} is a pre-defined network and cannot be removed"),
                ));
            }
            engine.remove_network(reference)?;
            Ok(super::empty(204))
        }
        (Method::POST, [reference, "connect"]) => {
            let body = read_body(req, 1 << 20).await?;
            let c: NetworkConnectRequest = parse_json(&body, "invalid connect request")?;
            refuse_pseudo(reference)?;
            let endpoint = endpoint_request(c.endpoint_config)?;
            engine.connect(reference, &c.container, endpoint).await?;
            Ok(super::empty(200))
        }
        (Method::POST, [reference, "disconnect"]) => {
            let body = read_body(req, 1 << 20).await?;
            let d: NetworkDisconnectRequest = parse_json(&body, "invalid disconnect request")?;
            refuse_pseudo(reference)?;
            engine.disconnect(reference, &d.container).await?;
            Ok(super::empty(200))
        }
        (m, _) => Err(super::no_route(&m, &format!("networks/{}", rest.join("/")))),
    }
}

fn pseudo(reference: &str) -> Option<(&'static str, &'static str)> {
    [("host", HOST_ID), ("none", NONE_ID)]
        .into_iter()
        .find(|(name, id)| {
            reference == *name || (reference.len() >= 12 && id.starts_with(reference))
        })
}

fn refuse_pseudo(reference: &str) -> Result<(), ApiError> {
    match pseudo(reference) {
        Some((name, _)) => Err(ApiError::new(
            403,
            format!("a container's network namespace is chosen when it is created (--network {name}): it cannot be connected to or disconnected from {name}"),
        )),
        None => Ok(()),
    }
}

/// `docker network connect --alias --ip`, and `--network-alias --ip` of
/// `run` (through `NetworkingConfig`).
pub fn endpoint_request(
    settings: Option<bollard_stubs::models::EndpointSettings>,
) -> Result<Endpoint, ApiError> {
    let mut endpoint = Endpoint::default();
    let Some(s) = settings else {
        return Ok(endpoint);
    };
    endpoint.aliases = s.aliases.unwrap_or_default();
    endpoint.aliases.retain(|a| !a.is_empty());
    for a in &endpoint.aliases {
        if !network::valid_name(a) {
            return Err(ApiError::bad(format!(
                "network alias {a:?} is invalid: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
    }
    if let Some(ipam) = s.ipam_config {
        if ipam.ipv6_address.as_deref().is_some_and(|a| !a.is_empty()) {
            return Err(ApiError::bad(
                "--ip6: IPv6 addresses are not supported by this engine",
            ));
        }
        if let Some(text) = ipam.ipv4_address.filter(|a| !a.is_empty()) {
            let ip = text
                .parse()
                .map_err(|_| ApiError::bad(format!("--ip {text:?} is not an IPv4 address")))?;
            endpoint.ip = Some(ip);
            endpoint.static_ip = true;
        }
    }
    if s.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::bad(
            "--driver-opt is not supported by this engine's bridge networks",
        ));
    }
    if s.mac_address.as_deref().is_some_and(|m| !m.is_empty()) {
        return Err(ApiError::bad(
            "--mac-address is not supported by this engine: netavark gives each interface its own",
        ));
    }
    if s.links.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(ApiError::bad(
            "--link is not supported by this engine: containers on a user-defined network reach each other by name",
        ));
    }
    Ok(endpoint)
}

fn create(engine: &Arc<Engine>, c: NetworkCreateRequest) -> ApiResult {
    if c.config_only.unwrap_or(false) || c.config_from.is_some() {
        return Err(ApiError::bad(
            "ConfigOnly/ConfigFrom networks are swarm's, which this engine has not",
        ));
    }
    if c.ingress.unwrap_or(false) {
        return Err(ApiError::bad(
            "--ingress networks are swarm's, which this engine has not",
        ));
    }
    let mut request = network::Request {
        name: c.name,
        driver: c.driver.unwrap_or_default(),
        internal: c.internal.unwrap_or(false),
        ipv6: c.enable_ipv6.unwrap_or(false),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        options: c.options.unwrap_or_default().into_iter().collect(),
        ..Default::default()
    };
    if let Some(ipam) = c.ipam {
        if let Some(d) = ipam.driver.filter(|d| !d.is_empty() && d != "default") {
            return Err(ApiError::bad(format!(
                "IPAM driver {d:?} is not supported: only the default one"
            )));
        }
        if let Some(k) = ipam.options.unwrap_or_default().keys().next() {
            return Err(ApiError::bad(format!(
                "IPAM option {k:?} is not supported by this engine"
            )));
        }
        let mut configs = ipam.config.unwrap_or_default();
        if configs.len() > 1 {
            return Err(ApiError::bad(
                "one --subnet per network: this engine's networks have one IPv4 subnet",
            ));
        }
        if let Some(cfg) = configs.pop() {
            if cfg.auxiliary_addresses.is_some_and(|a| !a.is_empty()) {
                return Err(ApiError::bad(
                    "--aux-address is not supported by this engine",
                ));
            }
            let given = |v: Option<String>| v.filter(|s| !s.is_empty());
            request.subnet = given(cfg.subnet);
            request.gateway = given(cfg.gateway);
            request.ip_range = given(cfg.ip_range);
        }
    }
    let n = engine.create_network(request)?;
    Ok(json_response(
        201,
        &NetworkCreateResponse {
            id: n.id,
            warning: String::new(),
        },
    ))
}

/// A network by name, id or id prefix, as inspect shows it.
fn find(engine: &Arc<Engine>, reference: &str) -> Result<NetworkInspect, ApiError> {
    if let Some((name, id)) = pseudo(reference) {
        return Ok(pseudo_view(engine, name, id));
    }
    let store = engine
        .networks()
        .ok_or_else(|| ApiError::new(404, format!("network {reference} not found")))?;
    let n = store
        .find(reference)
        .map_err(crate::engine::EngineError::from)?;
    Ok(view(engine, &n))
}

fn view(engine: &Engine, n: &Network) -> NetworkInspect {
    let running: std::collections::HashSet<String> = engine
        .list()
        .into_iter()
        .filter(|s| s.record.state.status == crate::state::Status::Running)
        .map(|s| s.record.id)
        .collect();
    let containers: HashMap<String, EndpointResource> = engine
        .network_members(&n.id)
        .into_iter()
        .filter(|m| running.contains(&m.id) && m.endpoint.attached)
        .map(|m| {
            let e = &m.endpoint;
            let resource = EndpointResource {
                name: Some(m.name.clone()),
                endpoint_id: Some(format!("{}{}", &m.id[..32], &n.id[..32])),
                mac_address: Some(e.mac.clone().unwrap_or_default()),
                ipv4_address: Some(
                    e.ip.map(|ip| format!("{ip}/{}", n.subnet.prefix_len()))
                        .unwrap_or_default(),
                ),
                ipv6_address: Some(String::new()),
            };
            (m.id, resource)
        })
        .collect();
    let mut options: HashMap<String, String> = n.options.clone().into_iter().collect();
    if n.is_default() {
        // What Docker shows for its default bridge.
        options.insert(network::OPT_BRIDGE_NAME.into(), n.interface.clone());
        options.insert(
            "com.docker.network.bridge.default_bridge".into(),
            "true".into(),
        );
    }
    NetworkInspect {
        name: Some(n.name.clone()),
        id: Some(n.id.clone()),
        created: Some(if n.created.is_empty() {
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH).to_string()
        } else {
            n.created.clone()
        }),
        scope: Some("local".into()),
        driver: Some("bridge".into()),
        enable_ipv6: Some(false),
        ipam: Some(Ipam {
            driver: Some("default".into()),
            config: Some(vec![IpamConfig {
                subnet: Some(n.subnet.to_string()),
                gateway: Some(n.gateway.to_string()),
                ip_range: n.ip_range.map(|r| r.to_string()),
                auxiliary_addresses: None,
            }]),
            options: None,
        }),
        internal: Some(n.internal),
        attachable: Some(false),
        ingress: Some(false),
        config_only: Some(false),
        containers: Some(containers),
        options: Some(options),
        labels: Some(n.labels.clone().into_iter().collect()),
        ..Default::default()
    }
}

fn pseudo_view(engine: &Engine, name: &str, id: &str) -> NetworkInspect {
    let containers = engine
        .list()
        .into_iter()
        .filter(|s| s.record.state.status == crate::state::Status::Running)
        .filter(|s| network_mode(&s.record) == name && !s.record.service)
        .map(|s| {
            (
                s.record.id.clone(),
                EndpointResource {
                    name: Some(s.record.name.clone()),
                    endpoint_id: Some(format!("{}{}", &s.record.id[..32], &id[..32])),
                    mac_address: Some(String::new()),
                    ipv4_address: Some(String::new()),
                    ipv6_address: Some(String::new()),
                },
            )
        })
        .collect();
    NetworkInspect {
        name: Some(name.into()),
        id: Some(id.into()),
        created: Some(humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH).to_string()),
        scope: Some("local".into()),
        driver: Some(if name == "host" { "host" } else { "null" }.into()),
        enable_ipv6: Some(false),
        ipam: Some(Ipam {
            driver: Some("default".into()),
            config: Some(Vec::new()),
            options: None,
        }),
        internal: Some(false),
        attachable: Some(false),
        ingress: Some(false),
        config_only: Some(false),
        containers: Some(containers),
        options: Some(HashMap::new()),
        labels: Some(HashMap::new()),
        ..Default::default()
    }
}

const LIST_FILTERS: &[&str] = &["name", "id", "driver", "label", "type", "dangling", "scope"];

/// Every network the filters keep, as `docker network ls` shows them
/// (the list leaves `Containers` empty, as Docker's does).
fn list(engine: &Arc<Engine>, filters: Option<&str>) -> ApiResult {
    let f = Filters::parse(filters, LIST_FILTERS)?;
    let mut all: Vec<NetworkInspect> = engine
        .networks()
        .map(|s| s.list())
        .unwrap_or_default()
        .iter()
        .map(|n| view(engine, n))
        .collect();
    all.push(pseudo_view(engine, "host", HOST_ID));
    all.push(pseudo_view(engine, "none", NONE_ID));
    let used = |n: &NetworkInspect| {
        let id = n.id.clone().unwrap_or_default();
        let name = n.name.clone().unwrap_or_default();
        !engine.network_members(&id).is_empty()
            || engine
                .list()
                .iter()
                .any(|s| !s.record.service && network_mode(&s.record) == name)
    };
    let out: Vec<NetworkInspect> = all
        .into_iter()
        .filter(|n| {
            let name = n.name.as_deref().unwrap_or_default();
            let id = n.id.as_deref().unwrap_or_default();
            let builtin = network::PREDEFINED.contains(&name);
            let labels: BTreeMap<String, String> =
                n.labels.clone().unwrap_or_default().into_iter().collect();
            f.matches("name", |v| name.contains(v))
                && f.matches("id", |v| id.starts_with(v))
                && f.matches("driver", |v| n.driver.as_deref() == Some(v))
                && f.matches("label", |l| label_matches(&labels, l))
                && f.matches("scope", |v| v == "local")
                && f.matches("type", |v| match v {
                    "builtin" => builtin,
                    "custom" => !builtin,
                    _ => false,
                })
                && f.matches("dangling", |v| {
                    let want = matches!(v, "1" | "true");
                    !builtin && used(n) != want
                })
        })
        .map(|mut n| {
            n.containers = Some(HashMap::new());
            n
        })
        .collect();
    Ok(json_response(200, &out))
}

/// `until`: Docker's timestamps: a duration before now (`24h`), Unix
/// seconds, or an RFC 3339 date.
fn parse_until(text: &str) -> Result<SystemTime, ApiError> {
    let bad = || {
        ApiError::bad(format!(
            "filters: until={text:?} is not a time (24h, Unix seconds, or 2006-01-02T15:04:05Z)"
        ))
    };
    if let Ok(d) = humantime::parse_duration(text) {
        return SystemTime::now().checked_sub(d).ok_or_else(bad);
    }
    if let Ok(secs) = text.parse::<f64>() {
        return SystemTime::UNIX_EPOCH
            .checked_add(std::time::Duration::from_secs_f64(secs.max(0.0)))
            .ok_or_else(bad);
    }
    humantime::parse_rfc3339_weak(text).map_err(|_| bad())
}

/// `network prune`: the user-defined networks no container is on.
fn prune(engine: &Arc<Engine>, filters: Option<&str>) -> ApiResult {
    let f = Filters::parse(filters, &["label", "label!", "until"])?;
    let until = f
        .values("until")
        .iter()
        .map(|u| parse_until(u))
        .collect::<Result<Vec<_>, _>>()?;
    let mut deleted = Vec::new();
    for n in engine.networks().map(|s| s.list()).unwrap_or_default() {
        let created = humantime::parse_rfc3339_weak(&n.created).ok();
        if n.is_default()
            || !engine.network_members(&n.id).is_empty()
            || !f.matches("label", |l| label_matches(&n.labels, l))
            || (f.has("label!") && f.matches("label!", |l| label_matches(&n.labels, l)))
            || until.iter().any(|u| created.is_none_or(|c| c >= *u))
        {
            continue;
        }
        engine.remove_network(&n.id)?;
        deleted.push(n.name);
    }
    Ok(json_response(
        200,
        &NetworkPruneResponse {
            networks_deleted: Some(deleted),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_requests_carry_aliases_and_an_address() {
        let s: bollard_stubs::models::EndpointSettings = serde_json::from_str(
            r#"{"Aliases":["db","cache"],"IPAMConfig":{"IPv4Address":"10.1.0.9"}}"#,
        )
        .unwrap();
        let e = endpoint_request(Some(s)).unwrap();
        assert_eq!(e.aliases, ["db", "cache"]);
        assert_eq!(e.ip, Some("10.1.0.9".parse().unwrap()));
        assert!(e.static_ip);
        let bad: bollard_stubs::models::EndpointSettings =
            serde_json::from_str(r#"{"IPAMConfig":{"IPv4Address":"10.1.0"}}"#).unwrap();
        let e = endpoint_request(Some(bad)).unwrap_err().message;
        assert!(e.contains("--ip \"10.1.0\""), "{e}");
        let link: bollard_stubs::models::EndpointSettings =
            serde_json::from_str(r#"{"Links":["db:db"]}"#).unwrap();
        assert!(endpoint_request(Some(link))
            .unwrap_err()
            .message
            .contains("--link"));
        assert_eq!(endpoint_request(None).unwrap(), Endpoint::default());
    }

    #[test]
    fn host_and_none_are_found_by_name_and_id() {
        assert_eq!(pseudo("host").map(|p| p.0), Some("host"));
        assert_eq!(pseudo(&HOST_ID[..12]).map(|p| p.0), Some("host"));
        assert_eq!(pseudo("none").map(|p| p.0), Some("none"));
        assert!(pseudo("bridge").is_none());
        assert!(pseudo("4057").is_none(), "too short a prefix to mean it");
    }

    #[test]
    fn until_takes_durations_seconds_and_dates() {
        let now = SystemTime::now();
        let day = parse_until("24h").unwrap();
        assert!(now.duration_since(day).unwrap().as_secs() >= 86399);
        assert_eq!(
            parse_until("10").unwrap(),
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10)
        );
        assert!(parse_until("2026-01-02T03:04:05Z").is_ok());
        assert!(parse_until("yesterday").is_err());
    }
}
