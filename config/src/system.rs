//! The `[network]`, `[ssh]` and `[state]` tables: what the network service,
//! the SSH console and init's state-disk handling read.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct NetworkConfig {
    /// Interfaces by name. Empty: DHCP on every ethernet interface.
    pub interfaces: BTreeMap<String, InterfaceConfig>,
    /// Resolver settings, added to what DHCP supplies (listed first).
    pub dns: DnsConfig,
}

/// `[network.interfaces.NAME]`: DHCP, or a static address.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct InterfaceConfig {
    pub dhcp: bool,
    /// `ADDRESS/PREFIX`, e.g. `192.168.1.10/24`.
    pub address: Option<String>,
    /// Default gateway through this interface.
    pub gateway: Option<IpAddr>,
    pub mtu: Option<u32>,
}

/// `[network.dns]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct DnsConfig {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

/// `[ssh]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SshConfig {
    /// Public keys allowed to log in as `corral`, one OpenSSH
    /// `authorized_keys` line each.
    pub authorized_keys: Vec<String>,
}

/// `[syslog]`: the syslog service's file and forwarding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SyslogConfig {
    /// Also send every message to `udp://HOST[:PORT]` or
    /// `tcp://HOST[:PORT]` (port 514 by default).
    pub remote: Option<String>,
    /// /var/log/messages is rotated when it passes this size.
    pub max_size: crate::service::ByteSize,
    /// Rotated files kept (messages.1 ... messages.N).
    pub keep: u32,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            remote: None,
            max_size: crate::service::ByteSize::bytes(1 << 20),
            keep: 5,
        }
    }
}

impl SyslogConfig {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if let Some(r) = &self.remote {
            let rest = r
                .strip_prefix("udp://")
                .or_else(|| r.strip_prefix("tcp://"))
                .unwrap_or("");
            let (host, port) = match rest.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
                _ => (rest, None),
            };
            let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
            if host.is_empty() || host.contains('/') || !port_ok {
                return Err((
                    "syslog.remote".into(),
                    format!("{r:?} is not udp://HOST[:PORT] or tcp://HOST[:PORT]"),
                ));
            }
        }
        if self.max_size.get() < 4096 {
            return Err((
                "syslog.max-size".into(),
                format!("{} is too small: at least 4k", self.max_size),
            ));
        }
        if self.keep == 0 || self.keep > 100 {
            return Err((
                "syslog.keep".into(),
                format!("{} is not between 1 and 100", self.keep),
            ));
        }
        Ok(())
    }
}

/// `[state]`: the disk that keeps data across reboots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct StateConfig {
    /// A block device (`/dev/vdb`); unset: the filesystem labelled
    /// [`STATE_LABEL`].
    pub device: Option<String>,
    /// Format a blank disk (first MiB all zero) as ext4 with the label.
    pub autoformat: bool,
}

/// The state filesystem's label.
pub const STATE_LABEL: &str = "CORRAL_STATE";

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            device: None,
            autoformat: true,
        }
    }
}

/// Splits `ADDRESS/PREFIX` and checks the prefix fits the address family.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX (e.g. 192.168.1.10/24)"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("prefix {prefix:?} is not a number from 0 to {max}"))?;
    Ok((addr, prefix))
}

impl NetworkConfig {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        for (name, i) in &self.interfaces {
            let key = |k: &str| format!("network.interfaces.{name}{k}");
            if name.is_empty()
                || name.len() > 15
                || name
                    .chars()
                    .any(|c| c == '/' || c == ':' || c.is_whitespace())
            {
                return Err((
                    key(""),
                    "an interface name has 1 to 15 characters, no '/', ':' or spaces".into(),
                ));
            }
            match (&i.address, i.dhcp) {
                (Some(_), true) => {
                    return Err((
                        key(".address"),
                        "set either dhcp = true or address, not both".into(),
                    ))
                }
                (None, false) => return Err((key(""), "needs dhcp = true or an address".into())),
                _ => {}
            }
            if let Some(a) = &i.address {
                let (addr, _) = parse_cidr(a).map_err(|m| (key(".address"), m))?;
                if let Some(g) = i.gateway {
                    if g.is_ipv4() != addr.is_ipv4() {
                        return Err((
                            key(".gateway"),
                            format!("{g} is not of the same address family as {addr}"),
                        ));
                    }
                }
            } else if i.gateway.is_some() {
                return Err((
                    key(".gateway"),
                    "DHCP supplies the gateway; set address to give one".into(),
                ));
            }
            if let Some(m) = i.mtu {
                if !(68..=65535).contains(&m) {
                    return Err((key(".mtu"), format!("{m} is not between 68 and 65535")));
                }
            }
        }
        for (n, s) in self.dns.search.iter().enumerate() {
            if s.is_empty() || s.len() > 253 || s.chars().any(|c| c.is_whitespace()) {
                return Err((
                    format!("network.dns.search[{n}]"),
                    format!("{s:?} is not a domain name"),
                ));
            }
        }
        Ok(())
    }
}

impl SshConfig {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        for (n, k) in self.authorized_keys.iter().enumerate() {
            let mut words = k.split_whitespace();
            let ok = match (words.next(), words.next()) {
                (Some(t), Some(b64)) => {
                    (t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-"))
                        && b64.starts_with("AAAA")
                }
                _ => false,
            };
            if !ok || k.contains('\n') {
                return Err((
                    format!("ssh.authorized-keys[{n}]"),
                    "not a public key line (\"ssh-ed25519 AAAA... comment\"); is it the .pub file?"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

impl StateConfig {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if let Some(d) = &self.device {
            if !d.starts_with("/dev/") || d.contains("..") {
                return Err((
                    "state.device".into(),
                    format!("{d:?} is not a device path under /dev"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_remote() {
        let ok = |r: &str| {
            SyslogConfig {
                remote: Some(r.into()),
                ..Default::default()
            }
            .validate()
            .is_ok()
        };
        assert!(ok("udp://10.0.2.2:5514"));
        assert!(ok("tcp://logs.example.com"));
        assert!(!ok("10.0.2.2:514"));
        assert!(!ok("udp://"));
        assert!(!ok("udp://host:99999"));
        assert!(!ok("http://host"));
    }

    #[test]
    fn cidr() {
        assert_eq!(parse_cidr("10.0.0.2/24").unwrap().1, 24);
        assert!(parse_cidr("10.0.0.2")
            .unwrap_err()
            .contains("ADDRESS/PREFIX"));
        assert!(parse_cidr("10.0.0.2/33").unwrap_err().contains("0 to 32"));
        assert!(parse_cidr("fd00::1/64").is_ok());
        assert!(parse_cidr("fd00::x/64").unwrap_err().contains("not an IP"));
    }
}
