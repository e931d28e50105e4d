//! The `[network]`, `[ssh]`, `[syslog]`, `[state]` and `[console]` tables:
//! what the network service, the SSH console, the syslog service, init's
//! state-disk handling and the console service read.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::types::{Cidr, InterfaceName};

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct NetworkConfig {
    /// Interfaces by name. Empty: DHCP on every ethernet interface.
    pub interfaces: BTreeMap<InterfaceName, InterfaceConfig>,
    /// Resolver settings, added to what DHCP supplies (listed first).
    pub dns: DnsConfig,
}

/// `[network.interfaces.NAME]`: DHCP, or static addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", try_from = "RawInterfaceConfig")]
pub struct InterfaceConfig {
    pub dhcp: bool,
    /// `ADDRESS/PREFIX` each, e.g. `["192.168.1.10/24", "fd00::10/64"]`.
    pub addresses: Vec<Cidr>,
    /// Default gateway through this interface.
    pub gateway: Option<IpAddr>,
    pub mtu: Option<u32>,
}

/// What a file may say: also `address`, the single-address spelling of
/// earlier releases, so a config saved by one still boots.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct RawInterfaceConfig {
    dhcp: bool,
    addresses: Vec<Cidr>,
    address: Option<Cidr>,
    gateway: Option<IpAddr>,
    mtu: Option<u32>,
}

impl TryFrom<RawInterfaceConfig> for InterfaceConfig {
    type Error = crate::InvalidValue;

    fn try_from(r: RawInterfaceConfig) -> Result<Self, Self::Error> {
        let mut addresses = r.addresses;
        if let Some(a) = r.address {
            if !addresses.is_empty() {
                return Err(crate::InvalidValue::new(
                    "address is the old spelling of addresses: give only addresses",
                ));
            }
            addresses.push(a);
        }
        Ok(Self {
            dhcp: r.dhcp,
            addresses,
            gateway: r.gateway,
            mtu: r.mtu,
        })
    }
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
    /// A block device (`/dev/vdb`); unset: the ext4 filesystem labelled
    /// `label`.
    pub device: Option<String>,
    /// The label that finds the state filesystem, and that a blank disk is
    /// given when formatted.
    pub label: String,
    /// Format a blank disk (first MiB all zero) as ext4 with the label.
    pub autoformat: bool,
}

/// The state filesystem's default label.
pub const STATE_LABEL: &str = "CORRAL_STATE";

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            device: None,
            label: STATE_LABEL.to_owned(),
            autoformat: true,
        }
    }
}

impl NetworkConfig {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        for (name, i) in &self.interfaces {
            let base = crate::layers::join_key(&[
                "network".to_owned(),
                "interfaces".to_owned(),
                name.to_string(),
            ]);
            let key = |k: &str| format!("{base}{k}");
            match (i.addresses.is_empty(), i.dhcp) {
                (false, true) => {
                    return Err((
                        key(".addresses"),
                        "set either dhcp = true or addresses, not both".into(),
                    ))
                }
                (true, false) => return Err((key(""), "needs dhcp = true or addresses".into())),
                _ => {}
            }
            if let Some(g) = i.gateway {
                if i.addresses.is_empty() {
                    return Err((
                        key(".gateway"),
                        "DHCP supplies the gateway; give addresses to set one".into(),
                    ));
                }
                if !i.addresses.iter().any(|a| a.addr.is_ipv4() == g.is_ipv4()) {
                    return Err((
                        key(".gateway"),
                        format!("{g}: none of the addresses is of its address family"),
                    ));
                }
            }
            for (n, a) in i.addresses.iter().enumerate() {
                if i.addresses
                    .get(..n)
                    .is_some_and(|before| before.contains(a))
                {
                    return Err((
                        key(&format!(".addresses[{n}]")),
                        format!("{a} is listed twice"),
                    ));
                }
            }
            if let Some(m) = i.mtu {
                if !(68..=65535).contains(&m) {
                    return Err((key(".mtu"), format!("{m} is not between 68 and 65535")));
                }
            }
        }
        for (n, s) in self.dns.search.iter().enumerate() {
            let ok = !s.is_empty()
                && s.len() <= 253
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
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
        // ext4 keeps 16 bytes for the label (s_volume_name).
        if self.label.is_empty() || self.label.len() > 16 || self.label.contains(['/', '\0']) {
            return Err((
                "state.label".into(),
                format!(
                    "{:?} is not an ext4 label: 1 to 16 bytes, no '/'",
                    self.label
                ),
            ));
        }
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

/// `[user-engine]`: the user engine's own settings, read when it starts
/// (`sudo corral system restart user-engine` applies a change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct UserEngineConfig {
    /// The default bridge network's subnet (Docker's `bip`): the bridge
    /// takes its first address, containers the rest.
    pub bridge_subnet: Cidr,
    /// Registries (`host[:port]`) reached over plain HTTP, as Docker's
    /// `insecure-registries`.
    pub insecure_registries: Vec<String>,
    /// Mirrors of Docker Hub (`https://host[:port]`), tried in order
    /// before it, as Docker's `registry-mirrors`.
    pub registry_mirrors: Vec<String>,
    /// PEM certificates of CAs trusted for registries, besides the
    /// system's (a registry with its own CA).
    pub registry_cas: Vec<String>,
    /// The engine's own credentials, by registry `host[:port]`, used when
    /// a client sends none (images the engine pulls for compose or a
    /// build, machines provisioned without `docker login`).
    pub registry_auth: std::collections::BTreeMap<String, RegistryLogin>,
    /// DNS servers containers get instead of the machine's (Docker's
    /// `dns`).
    pub dns: Vec<std::net::IpAddr>,
}

/// `[user-engine.registry-auth."HOST"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    pub username: String,
    pub password: String,
}

/// Docker's own default, clear of QEMU's user network (10.0.2.0/24).
pub const DEFAULT_BRIDGE_SUBNET: Cidr = Cidr {
    addr: std::net::IpAddr::V4(std::net::Ipv4Addr::new(172, 17, 0, 0)),
    prefix: 16,
};

impl Default for UserEngineConfig {
    fn default() -> Self {
        Self {
            bridge_subnet: DEFAULT_BRIDGE_SUBNET,
            insecure_registries: Vec::new(),
            registry_mirrors: Vec::new(),
            registry_cas: Vec::new(),
            registry_auth: Default::default(),
            dns: Vec::new(),
        }
    }
}

impl UserEngineConfig {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        self.validate_bridge()?;
        for (i, r) in self.insecure_registries.iter().enumerate() {
            check_registry_host(r)
                .map_err(|m| (format!("user-engine.insecure-registries[{i}]"), m))?;
        }
        for (i, m) in self.registry_mirrors.iter().enumerate() {
            let key = format!("user-engine.registry-mirrors[{i}]");
            let rest = m
                .strip_prefix("https://")
                .or_else(|| m.strip_prefix("http://"))
                .ok_or_else(|| {
                    (
                        key.clone(),
                        format!("{m:?} is not a URL (https://host[:port])"),
                    )
                })?;
            let host = rest.trim_end_matches('/');
            if host.contains('/') {
                return Err((
                    key,
                    format!("{m:?}: a mirror is a registry's root URL, without a path"),
                ));
            }
            check_registry_host(host).map_err(|e| (key, e))?;
        }
        for (i, pem) in self.registry_cas.iter().enumerate() {
            check_pem(pem).map_err(|m| (format!("user-engine.registry-cas[{i}]"), m))?;
        }
        for (host, login) in &self.registry_auth {
            let key = format!("user-engine.registry-auth.{host:?}");
            check_registry_host(host).map_err(|m| (key.clone(), m))?;
            if login.username.is_empty() {
                return Err((key, "username is empty".into()));
            }
        }
        for (i, d) in self.dns.iter().enumerate() {
            if d.is_unspecified() || d.is_multicast() {
                return Err((
                    format!("user-engine.dns[{i}]"),
                    format!("{d} is not a DNS server's address"),
                ));
            }
        }
        Ok(())
    }

    fn validate_bridge(&self) -> Result<(), (String, String)> {
        let key = || "user-engine.bridge-subnet".to_owned();
        let c = self.bridge_subnet;
        let std::net::IpAddr::V4(a) = c.addr else {
            return Err((
                key(),
                format!("{c} is not an IPv4 subnet (IPv6 bridges are not supported yet)"),
            ));
        };
        if !(8..=30).contains(&c.prefix) {
            return Err((
                key(),
                format!(
                    "{c}: the prefix must be from /8 to /30 (room for the bridge and containers)"
                ),
            ));
        }
        let host_bits = u32::from(a) & (u32::MAX >> c.prefix);
        if host_bits != 0 {
            let net = std::net::Ipv4Addr::from(u32::from(a) & !(u32::MAX >> c.prefix));
            return Err((
                key(),
                format!(
                    "{c} is not a network address (did you mean {net}/{}?)",
                    c.prefix
                ),
            ));
        }
        if a.is_loopback()
            || a.is_multicast()
            || a.is_broadcast()
            || a.is_unspecified()
            || a.is_link_local()
        {
            return Err((key(), format!("{c} is not a usable private subnet")));
        }
        Ok(())
    }
}

/// A registry as Docker names it: `host`, `host:port` or `[v6]:port`,
/// no scheme, no path.
fn check_registry_host(r: &str) -> Result<(), String> {
    if r.contains("://") {
        return Err(format!(
            "{r:?}: give the registry as host[:port], without a scheme"
        ));
    }
    let (host, port) = match r.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (r, None),
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("{r:?}: {p:?} is not a port"));
        }
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ok = !host.is_empty()
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            }));
    if ok {
        Ok(())
    } else {
        Err(format!("{r:?} is not a registry host[:port]"))
    }
}

/// One or more PEM certificates: each block well formed, base64 inside.
fn check_pem(pem: &str) -> Result<(), String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut rest = pem.trim();
    if rest.is_empty() {
        return Err("empty; give a PEM certificate (-----BEGIN CERTIFICATE-----...)".into());
    }
    let mut n = 0;
    while !rest.is_empty() {
        let body = rest
            .strip_prefix(BEGIN)
            .ok_or_else(|| format!("certificate {}: does not start with {BEGIN}", n + 1))?;
        let end = body
            .find(END)
            .ok_or_else(|| format!("certificate {}: no {END}", n + 1))?;
        let b64: String = body[..end].split_whitespace().collect();
        if b64.is_empty()
            || !b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        {
            return Err(format!("certificate {}: its body is not base64", n + 1));
        }
        n += 1;
        rest = body[end + END.len()..].trim_start();
    }
    Ok(())
}

/// Writes a kernel parameter's /proc/sys file, with an error that names it.
pub fn write_sysctl(key: &crate::SysctlKey, value: &crate::SysctlValue) -> Result<(), String> {
    let path = key.proc_path();
    std::fs::write(&path, value.as_str()).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!(
                "sysctl {key}: no such kernel parameter ({} does not exist)",
                path.display()
            )
        }
        _ => format!("sysctl {key} = {value}: {e}"),
    })
}

/// `[console]`: the shell on the system console and tty1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ConsoleConfig {
    /// A root shell without logging in (the console is physical access).
    /// Off: a login prompt; the accounts have no passwords, so the console
    /// is locked and the machine is administered over SSH.
    pub autologin: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { autologin: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_settings_are_checked() {
        let check = |f: &dyn Fn(&mut UserEngineConfig)| {
            let mut c = UserEngineConfig::default();
            f(&mut c);
            c.validate()
        };
        assert!(check(&|c| {
            c.insecure_registries = vec!["10.0.2.2:5000".into(), "reg.lan".into()];
            c.registry_mirrors = vec!["https://mirror.lan:5000/".into()];
            c.registry_cas =
                vec!["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()];
        })
        .is_ok());
        let e =
            check(&|c| c.insecure_registries = vec!["http://10.0.2.2:5000".into()]).unwrap_err();
        assert_eq!(e.0, "user-engine.insecure-registries[0]");
        assert!(e.1.contains("without a scheme"), "{}", e.1);
        let e = check(&|c| c.insecure_registries = vec!["a:0".into()]).unwrap_err();
        assert!(e.1.contains("not a port"), "{}", e.1);
        let e = check(&|c| c.registry_mirrors = vec!["mirror.lan".into()]).unwrap_err();
        assert_eq!(e.0, "user-engine.registry-mirrors[0]");
        let e = check(&|c| c.registry_mirrors = vec!["https://m/v2/".into()]).unwrap_err();
        assert!(e.1.contains("without a path"), "{}", e.1);
        let e = check(&|c| c.registry_cas = vec!["not a cert".into()]).unwrap_err();
        assert_eq!(e.0, "user-engine.registry-cas[0]");
        let e = check(&|c| {
            c.registry_auth.insert(
                "r:5000".into(),
                RegistryLogin {
                    username: String::new(),
                    password: "p".into(),
                },
            );
        })
        .unwrap_err();
        assert_eq!(e.0, "user-engine.registry-auth.\"r:5000\"");
        let e = check(&|c| c.dns = vec!["0.0.0.0".parse().unwrap()]).unwrap_err();
        assert_eq!(e.0, "user-engine.dns[0]");
    }

    #[test]
    fn bridge_subnets_are_checked() {
        let ok = |s: &str| {
            UserEngineConfig {
                bridge_subnet: s.parse().unwrap(),
                ..Default::default()
            }
            .validate()
        };
        assert!(ok("172.17.0.0/16").is_ok());
        assert!(ok("192.168.200.0/24").is_ok());
        assert!(UserEngineConfig::default().validate().is_ok());
        let e = ok("172.17.0.1/16").unwrap_err();
        assert_eq!(e.0, "user-engine.bridge-subnet");
        assert!(e.1.contains("did you mean 172.17.0.0/16"), "{}", e.1);
        assert!(ok("10.0.0.0/31").unwrap_err().1.contains("/30"));
        assert!(ok("fd00::/64").unwrap_err().1.contains("IPv4"));
        assert!(ok("127.0.0.0/8").unwrap_err().1.contains("usable"));
    }

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
}
