//! A network as the engine keeps it: Docker's `bridge` driver, one Linux
//! bridge per network with its IPv4 subnet. The default `bridge` network
//! is made from the config at each start; user-defined ones (`docker
//! network create`) are kept as JSON on the state disk, so they and the
//! addresses their containers got outlast engine restarts and reboots.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::NetError;

/// The interface name Docker gives its default bridge.
pub const BRIDGE_INTERFACE: &str = "docker0";
/// Docker names the default network `bridge`; its id is fixed here, as
/// the network is (there is one, made from the config).
pub const BRIDGE_NAME: &str = "bridge";
pub const BRIDGE_ID: &str = "c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1c0a1";
/// The names `--network` gives a meaning of their own.
pub const PREDEFINED: [&str; 3] = [BRIDGE_NAME, "host", "none"];

/// `com.docker.network.bridge.name`: the bridge interface's name.
pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// `com.docker.network.driver.mtu`: the MTU of the bridge and the veths.
pub const OPT_MTU: &str = "com.docker.network.driver.mtu";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// The bridge interface on the machine: `br-` and the id's first 12
    /// digits, Docker's names (`docker0` for the default one).
    pub interface: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// `--ip-range`: where container addresses are taken from.
    #[serde(default)]
    pub ip_range: Option<Ipv4Net>,
    /// `--internal`: no route out of the network, none in.
    #[serde(default)]
    pub internal: bool,
    /// Containers find each other by name and alias (aardvark-dns):
    /// every network but the default bridge, as in Docker.
    #[serde(default)]
    pub dns: bool,
    /// The subnet was given (`--subnet`): inspect shows it in
    /// `IPAM.Config` and containers may ask for an address (`--ip`), as
    /// Docker allows only then.
    #[serde(default)]
    pub configured: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The driver options as given (inspect shows them).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub created: String,
}

/// What `docker network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub ipv6: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// Docker's rule for network names (the same as for containers).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn parse_net(what: &str, text: &str) -> Result<Ipv4Net, NetError> {
    let net: Ipv4Net = text.parse().map_err(|_| {
        NetError::Invalid(format!(
            "{what} {text:?} is not an IPv4 subnet (ADDRESS/PREFIX, e.g. 172.20.0.0/16)"
        ))
    })?;
    if net.trunc() != net {
        return Err(NetError::Invalid(format!(
            "{what} {text:?}: it should be {}",
            net.trunc()
        )));
    }
    if net.prefix_len() > 30 {
        return Err(NetError::Invalid(format!(
            "{what} {text:?} is too small: a /30 is the smallest with room for a gateway and a container"
        )));
    }
    Ok(net)
}

/// Whether two subnets share an address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Docker's default address pools, in its order: 172.17–31.0.0/16, then
/// 192.168.0.0/16 cut into /20s.
fn default_pools() -> impl Iterator<Item = Ipv4Net> {
    let big = (17..=31u8).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16));
    let small = (0..16u8).map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20));
    big.chain(small).flatten()
}

impl Network {
    /// The default bridge, from `[user-engine] bridge-subnet`.
    pub fn default_bridge(subnet: Ipv4Net) -> Self {
        let subnet = subnet.trunc();
        Network {
            id: BRIDGE_ID.into(),
            name: BRIDGE_NAME.into(),
            interface: BRIDGE_INTERFACE.into(),
            gateway: first_host(&subnet),
            subnet,
            ip_range: None,
            internal: false,
            dns: false,
            configured: false,
            mtu: None,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            created: String::new(),
        }
    }

    /// A user-defined network from `request`, given the subnets already
    /// taken (other networks, the machine's routes). Every error names
    /// the option that is wrong.
    pub fn new(
        id: String,
        request: Request,
        taken: &[Ipv4Net],
        created: String,
    ) -> Result<Self, NetError> {
        let name = request.name;
        if !valid_name(&name) {
            return Err(NetError::Invalid(format!(
                "network name {name:?} is invalid: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if PREDEFINED.contains(&name.as_str()) {
            return Err(NetError::Forbidden(format!(
                "{name} is a pre-defined network and cannot be created"
            )));
        }
        if !request.driver.is_empty() && request.driver != "bridge" {
            return Err(NetError::Invalid(format!(
                "network driver {:?} is not supported: this engine has bridge networks only",
                request.driver
            )));
        }
        if request.ipv6 {
            return Err(NetError::Invalid(
                "--ipv6: IPv6 networks are not supported by this engine".into(),
            ));
        }
        let mut interface = format!("br-{}", &id[..12]);
        let mut mtu = None;
        for (key, value) in &request.options {
            match key.as_str() {
                OPT_BRIDGE_NAME => {
                    let ok = !value.is_empty()
                        && value.len() <= 15
                        && value
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                    if !ok {
                        return Err(NetError::Invalid(format!(
                            "option {key}={value:?}: not an interface name (up to 15 letters, digits, '_', '.', '-')"
                        )));
                    }
                    interface = value.clone();
                }
                OPT_MTU => {
                    mtu = Some(
                        value
                            .parse::<u32>()
                            .ok()
                            .filter(|m| (68..=65535).contains(m))
                            .ok_or_else(|| {
                                NetError::Invalid(format!(
                                    "option {key}={value:?}: not an MTU (68 to 65535)"
                                ))
                            })?,
                    );
                }
                _ => {
                    return Err(NetError::Invalid(format!(
                        "option {key:?} is not supported by the bridge driver here (only {OPT_BRIDGE_NAME} and {OPT_MTU})"
                    )))
                }
            }
        }
        let configured = request.subnet.is_some();
        let subnet = match &request.subnet {
            Some(text) => {
                let net = parse_net("--subnet", text)?;
                if let Some(t) = taken.iter().find(|t| overlaps(t, &net)) {
                    return Err(NetError::Forbidden(format!(
                        "--subnet {net}: Pool overlaps with other one on this address space ({t})"
                    )));
                }
                net
            }
            None => {
                if request.gateway.is_some() || request.ip_range.is_some() {
                    return Err(NetError::Invalid(
                        "--gateway and --ip-range need --subnet".into(),
                    ));
                }
                default_pools()
                    .find(|p| !taken.iter().any(|t| overlaps(t, p)))
                    .ok_or_else(|| {
                        NetError::Forbidden(
                            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network (give one with --subnet)".into(),
                        )
                    })?
            }
        };
        let gateway = match &request.gateway {
            Some(text) => {
                let ip: Ipv4Addr = text.parse().map_err(|_| {
                    NetError::Invalid(format!("--gateway {text:?} is not an IPv4 address"))
                })?;
                if !is_host(&subnet, ip) {
                    return Err(NetError::Invalid(format!(
                        "--gateway {ip} is not a host address of --subnet {subnet}"
                    )));
                }
                ip
            }
            None => first_host(&subnet),
        };
        let ip_range = match &request.ip_range {
            Some(text) => {
                let range = parse_net("--ip-range", text)?;
                if !subnet.contains(&range) {
                    return Err(NetError::Invalid(format!(
                        "--ip-range {range} is not inside --subnet {subnet}"
                    )));
                }
                Some(range)
            }
            None => None,
        };
        Ok(Network {
            id,
            name,
            interface,
            subnet,
            gateway,
            ip_range,
            internal: request.internal,
            dns: true,
            configured,
            mtu,
            labels: request.labels,
            options: request.options,
            created,
        })
    }

    pub fn is_default(&self) -> bool {
        self.id == BRIDGE_ID
    }

    /// Whether `ip` can be a container's address here: in the subnet,
    /// neither its network nor broadcast address, not the gateway.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        is_host(&self.subnet, ip) && ip != self.gateway
    }

    /// The lowest free address (in `--ip-range` if given).
    pub fn allocate(&self, used: &[Ipv4Addr]) -> Result<Ipv4Addr, NetError> {
        let pool = self.ip_range.unwrap_or(self.subnet);
        pool.hosts()
            .find(|a| self.contains(*a) && !used.contains(a))
            .ok_or_else(|| {
                NetError::Exhausted(format!(
                    "network {} ({}) has no free address left",
                    self.name, pool
                ))
            })
    }
}

fn is_host(net: &Ipv4Net, ip: Ipv4Addr) -> bool {
    net.contains(&ip) && ip != net.network() && ip != net.broadcast()
}

fn first_host(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// The machine's routed subnets (not the default route), which a new
/// network's subnet must not overlap: a container address there would
/// hide a real host.
pub fn routed_subnets() -> Vec<Ipv4Net> {
    let Ok(routes) = procfs::net::route() else {
        return Vec::new();
    };
    routes
        .into_iter()
        .filter(|r| !r.destination.is_unspecified())
        .filter_map(|r| {
            let prefix = u32::from(r.mask).count_ones() as u8;
            Ipv4Net::new(r.destination, prefix).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn request(name: &str) -> Request {
        Request {
            name: name.into(),
            ..Default::default()
        }
    }

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    #[test]
    fn a_new_network_takes_the_first_free_default_pool() {
        let taken = [
            net("172.17.0.0/16"),
            net("172.18.5.0/24"),
            net("10.0.2.0/24"),
        ];
        let n = Network::new(ID.into(), request("web"), &taken, "t".into()).unwrap();
        assert_eq!(n.subnet, net("172.19.0.0/16"));
        assert_eq!(n.gateway, Ipv4Addr::new(172, 19, 0, 1));
        assert_eq!(n.interface, "br-0123456789ab");
        assert!(n.dns && !n.configured && !n.internal);
        let all: Vec<_> = default_pools().collect();
        assert_eq!(all.len(), 31);
        let e = Network::new(ID.into(), request("x"), &all, "t".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--subnet"), "{e}");
    }

    #[test]
    fn subnet_gateway_and_range_are_checked() {
        let r = Request {
            subnet: Some("10.10.0.0/24".into()),
            gateway: Some("10.10.0.254".into()),
            ip_range: Some("10.10.0.128/25".into()),
            ..request("app")
        };
        let n = Network::new(ID.into(), r.clone(), &[], "t".into()).unwrap();
        assert_eq!(n.gateway, Ipv4Addr::new(10, 10, 0, 254));
        assert!(n.configured);
        assert_eq!(n.allocate(&[]).unwrap(), Ipv4Addr::new(10, 10, 0, 129));
        let used = [Ipv4Addr::new(10, 10, 0, 129)];
        assert_eq!(n.allocate(&used).unwrap(), Ipv4Addr::new(10, 10, 0, 130));
        assert!(!n.contains(n.gateway));

        let e = |r: Request| {
            Network::new(ID.into(), r, &[net("10.10.0.0/16")], "t".into())
                .unwrap_err()
                .to_string()
        };
        let overlapping = e(Request {
            subnet: Some("10.10.3.0/24".into()),
            ..request("a")
        });
        assert!(overlapping.contains("Pool overlaps"), "{overlapping}");
        let not_base = e(Request {
            subnet: Some("10.20.0.5/24".into()),
            ..request("a")
        });
        assert!(not_base.contains("it should be 10.20.0.0/24"), "{not_base}");
        let outside = e(Request {
            subnet: Some("10.20.0.0/24".into()),
            gateway: Some("10.21.0.1".into()),
            ..request("a")
        });
        assert!(outside.contains("--gateway 10.21.0.1"), "{outside}");
        let bad = e(Request {
            subnet: Some("fd00::/64".into()),
            ..request("a")
        });
        assert!(bad.contains("--subnet \"fd00::/64\""), "{bad}");
        let gw_alone = e(Request {
            gateway: Some("10.20.0.1".into()),
            ..request("a")
        });
        assert!(gw_alone.contains("need --subnet"), "{gw_alone}");
    }

    #[test]
    fn names_drivers_and_options_are_checked() {
        let e = |r: Request| {
            Network::new(ID.into(), r, &[], "t".into())
                .unwrap_err()
                .to_string()
        };
        assert!(e(request("bridge")).contains("pre-defined"));
        assert!(e(request("-x")).contains("invalid"));
        assert!(e(Request {
            driver: "overlay".into(),
            ..request("a")
        })
        .contains("\"overlay\""));
        assert!(e(Request {
            ipv6: true,
            ..request("a")
        })
        .contains("IPv6"));
        let opt = |k: &str, v: &str| Request {
            options: BTreeMap::from([(k.to_owned(), v.to_owned())]),
            ..request("a")
        };
        assert!(e(opt("com.docker.network.bridge.enable_icc", "false")).contains("enable_icc"));
        assert!(e(opt(OPT_MTU, "9")).contains("not an MTU"));
        assert!(e(opt(OPT_BRIDGE_NAME, "a-name-far-too-long")).contains("interface name"));
        let n = Network::new(ID.into(), opt(OPT_BRIDGE_NAME, "corral1"), &[], "t".into()).unwrap();
        assert_eq!(n.interface, "corral1");
        let n = Network::new(ID.into(), opt(OPT_MTU, "1400"), &[], "t".into()).unwrap();
        assert_eq!(n.mtu, Some(1400));
    }

    #[test]
    fn the_default_bridge_has_its_gateway_first() {
        let b = Network::default_bridge(net("172.17.0.0/16"));
        assert_eq!(b.gateway, Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(b.allocate(&[]).unwrap(), Ipv4Addr::new(172, 17, 0, 2));
        assert!(!b.dns);
        let small = Network::default_bridge(net("192.168.9.0/30"));
        let one = small.allocate(&[]).unwrap();
        assert_eq!(one, Ipv4Addr::new(192, 168, 9, 2));
        assert!(small.contains(one));
        assert!(!small.contains(Ipv4Addr::new(192, 168, 9, 1)));
        assert!(!small.contains(Ipv4Addr::new(192, 168, 9, 3)), "broadcast");
        let e = small.allocate(&[one]).unwrap_err().to_string();
        assert!(e.contains("192.168.9.0/30"), "{e}");
    }
}
