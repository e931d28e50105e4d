//! resolv.conf from the config's resolvers and the DHCP leases'.

use std::net::IpAddr;

/// A lease's resolver settings, as udhcpc hands them to its hook
/// (`dns`: space-separated servers, `domain`: the search domain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseDns {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

impl LeaseDns {
    pub fn from_env(dns: Option<&str>, domain: Option<&str>) -> Self {
        Self {
            nameservers: dns
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect(),
            search: domain
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        }
    }

    /// The lease file: `nameserver X` and `search Y` lines.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for n in &self.nameservers {
            s.push_str(&format!("nameserver {n}\n"));
        }
        for d in &self.search {
            s.push_str(&format!("search {d}\n"));
        }
        s
    }

    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("nameserver", v)) => out.nameservers.extend(v.trim().parse::<IpAddr>().ok()),
                Some(("search", v)) => out.search.push(v.trim().to_owned()),
                _ => {}
            }
        }
        out
    }
}

/// resolv.conf: the configured servers first, then the leases', without
/// duplicates; glibc reads at most three nameservers and one search line.
pub fn render(config: &corral_config::DnsConfig, leases: &[LeaseDns]) -> String {
    let mut servers: Vec<IpAddr> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    for s in config
        .nameservers
        .iter()
        .chain(leases.iter().flat_map(|l| l.nameservers.iter()))
    {
        if !servers.contains(s) {
            servers.push(*s);
        }
    }
    for d in config
        .search
        .iter()
        .chain(leases.iter().flat_map(|l| l.search.iter()))
    {
        if !search.contains(d) {
            search.push(d.clone());
        }
    }
    let mut out =
        String::from("# Written by Corral's network service from [network.dns] and DHCP.\n");
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers.iter().take(3) {
        out.push_str(&format!("nameserver {s}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_first_then_leases_without_duplicates() {
        let config = corral_config::DnsConfig {
            nameservers: vec!["1.1.1.1".parse().unwrap()],
            search: vec!["corp".into()],
        };
        let lease = LeaseDns::from_env(Some("10.0.2.3 1.1.1.1"), Some("lan"));
        let back = LeaseDns::parse(&lease.render());
        assert_eq!(back, lease);
        let text = render(&config, &[back]);
        assert!(
            text.ends_with("search corp lan\nnameserver 1.1.1.1\nnameserver 10.0.2.3\n"),
            "{text}"
        );
    }

    #[test]
    fn at_most_three_nameservers() {
        let lease = LeaseDns::from_env(Some("10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4 junk"), None);
        assert_eq!(lease.nameservers.len(), 4);
        let text = render(&Default::default(), &[lease]);
        assert_eq!(text.matches("nameserver").count(), 3);
        assert!(!text.contains("search"));
    }
}
