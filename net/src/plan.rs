//! What to do with each interface, from the config and the links present.

use std::net::IpAddr;

use corral_config::{Cidr, NetworkConfig};

use crate::netlink::Link;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Dhcp,
    Static {
        addresses: Vec<Cidr>,
        gateway: Option<IpAddr>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub link: Link,
    pub mtu: Option<u32>,
    pub action: Action,
}

/// The steps, and a message for each configured interface that does not
/// exist (the others go ahead).
pub fn plan(config: &NetworkConfig, links: &[Link]) -> (Vec<Step>, Vec<String>) {
    let mut steps = Vec::new();
    let mut missing = Vec::new();
    if config.interfaces.is_empty() {
        // The default: DHCP on every ethernet interface.
        for l in links.iter().filter(|l| l.ethernet) {
            steps.push(Step {
                link: l.clone(),
                mtu: None,
                action: Action::Dhcp,
            });
        }
        return (steps, missing);
    }
    for (name, i) in &config.interfaces {
        let Some(link) = links.iter().find(|l| l.name == name.as_str()) else {
            let have: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
            missing.push(format!(
                "network.interfaces.{name}: no such interface (this machine has {})",
                have.join(", ")
            ));
            continue;
        };
        // The config was validated: dhcp or addresses, not both.
        let action = if i.dhcp {
            Action::Dhcp
        } else {
            Action::Static {
                addresses: i.addresses.clone(),
                gateway: i.gateway,
            }
        };
        steps.push(Step {
            link: link.clone(),
            mtu: i.mtu,
            action,
        });
    }
    (steps, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> Vec<Link> {
        let l = |index, name: &str, ethernet| Link {
            index,
            name: name.into(),
            ethernet,
            up: false,
        };
        vec![l(1, "lo", false), l(2, "eth0", true), l(3, "eth1", true)]
    }

    #[test]
    fn default_is_dhcp_on_every_ethernet_interface() {
        let (steps, missing) = plan(&NetworkConfig::default(), &links());
        let names: Vec<&str> = steps.iter().map(|s| s.link.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert!(steps.iter().all(|s| s.action == Action::Dhcp));
        assert!(missing.is_empty());
    }

    #[test]
    fn configured_interfaces_only_and_missing_ones_named() {
        let c: corral_config::Config = corral_config::Config::parse(
            "[network.interfaces.eth1]\naddresses = [\"192.168.9.2/24\", \"fd00::2/64\"]\ngateway = \"192.168.9.1\"\nmtu = 1400\n[network.interfaces.wlan0]\ndhcp = true\n",
            "t",
        )
        .unwrap();
        let (steps, missing) = plan(&c.network, &links());
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].link.name, "eth1");
        assert_eq!(steps[0].mtu, Some(1400));
        assert_eq!(
            steps[0].action,
            Action::Static {
                addresses: vec![
                    "192.168.9.2/24".parse().unwrap(),
                    "fd00::2/64".parse().unwrap()
                ],
                gateway: Some("192.168.9.1".parse().unwrap())
            }
        );
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0].starts_with(
                "network.interfaces.wlan0: no such interface (this machine has lo, eth0, eth1)"
            ),
            "{}",
            missing[0]
        );
    }
}
