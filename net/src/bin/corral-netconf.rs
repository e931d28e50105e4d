//! `corral-netconf`: the network service's process.
//!
//! Run as the service (no arguments) it applies `[network]` and keeps one
//! `udhcpc` per DHCP interface running. Run by `udhcpc` as its event
//! script (through the `udhcpc-hook` link, with the event as argument) it
//! applies a lease over rtnetlink and rewrites resolv.conf.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use corral_config::{Config, NetworkConfig};
use corral_net::netlink::{Link, Netlink};
use corral_net::plan::{plan, Action};
use corral_net::resolv::{self, LeaseDns};
use corral_net::CONFIGURED;
use corral_net::{LEASE_DIR, RESOLV_CONF};
use log::{error, info, warn, LevelFilter};

/// The link udhcpc runs as its script.
const HOOK: &str = "/usr/libexec/corral/udhcpc-hook";

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!(
                "netconf: {}: {}",
                r.level().as_str().to_lowercase(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

fn main() {
    let _ = log::set_logger(&Stderr);
    log::set_max_level(LevelFilter::Info);
    let argv0 = std::env::args().next().unwrap_or_default();
    let result = if argv0.ends_with("udhcpc-hook") {
        let event = std::env::args().nth(1).unwrap_or_default();
        hook(&event)
    } else {
        serve()
    };
    if let Err(e) = result {
        error!("{e:#}");
        std::process::exit(1);
    }
}

fn config() -> NetworkConfig {
    match Config::load(corral_config::effective_path()) {
        Ok(c) => c.network,
        Err(e) => {
            error!("{e}");
            error!("using the default network settings (DHCP on every ethernet interface)");
            NetworkConfig::default()
        }
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    corral_config::fsutil::write_atomic(path, text.as_bytes(), 0o644, false)
        .with_context(|| format!("replacing {}", path.display()))
}

/// Rewrites resolv.conf from the config and every lease file.
fn write_resolv(config: &NetworkConfig) -> Result<()> {
    let mut leases = Vec::new();
    if let Ok(dir) = std::fs::read_dir(LEASE_DIR) {
        let mut paths: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if let Ok(text) = std::fs::read_to_string(&p) {
                leases.push(LeaseDns::parse(&text));
            }
        }
    }
    write_atomic(
        Path::new(RESOLV_CONF),
        &resolv::render(&config.dns, &leases),
    )
}

fn find_link(nl: &mut Netlink, name: &str) -> Result<Link> {
    nl.links()?
        .into_iter()
        .find(|l| l.name == name)
        .with_context(|| format!("{name}: no such interface"))
}

fn spawn_udhcpc(name: &str) -> Result<Child> {
    Command::new("udhcpc")
        // Foreground, keep trying forever (3 discovers 2 s apart, then a
        // 10 s pause), our hook, ask for the MTU too.
        .args([
            "-f", "-t", "3", "-T", "2", "-A", "10", "-O", "mtu", "-s", HOOK, "-i", name,
        ])
        .spawn()
        .with_context(|| format!("{name}: starting udhcpc"))
}

fn serve() -> Result<()> {
    let config = config();
    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    if let Some(lo) = links.iter().find(|l| l.name == "lo") {
        nl.set_up(lo, None)?;
    }
    std::fs::create_dir_all(LEASE_DIR).with_context(|| format!("creating {LEASE_DIR}"))?;
    // Leases of an earlier run are stale: udhcpc asks again.
    for e in std::fs::read_dir(LEASE_DIR)?.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    let _ = std::fs::remove_file(CONFIGURED);
    write_resolv(&config)?;

    let (steps, missing) = plan(&config, &links);
    for m in &missing {
        error!("{m}");
    }
    if steps.is_empty() {
        warn!("no interface to configure");
    }
    // What could not be applied: the network is not "configured" then.
    let mut failed: Vec<String> = missing.clone();
    let mut dhcp: BTreeMap<String, Option<Child>> = BTreeMap::new();
    for step in &steps {
        let name = &step.link.name;
        if let Err(e) = nl.set_up(&step.link, step.mtu) {
            error!("{e}");
            failed.push(name.clone());
            continue;
        }
        match &step.action {
            Action::Static { addresses, gateway } => {
                let keep: Vec<_> = addresses.iter().map(|a| a.addr).collect();
                let applied = nl
                    .flush_ipv4(&step.link, &keep)
                    .and_then(|_| {
                        addresses
                            .iter()
                            .try_for_each(|a| nl.add_address(&step.link, a.addr, a.prefix))
                    })
                    .and_then(|_| match gateway {
                        Some(g) => nl.default_route(&step.link, *g),
                        None => Ok(()),
                    });
                let shown: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                match applied {
                    Ok(()) => info!(
                        "{name}: static address{} {}{}",
                        if shown.len() == 1 { "" } else { "es" },
                        shown.join(", "),
                        gateway.map(|g| format!(" via {g}")).unwrap_or_default()
                    ),
                    Err(e) => {
                        error!("{e}");
                        failed.push(name.clone());
                    }
                }
            }
            Action::Dhcp => {
                info!("{name}: asking for a DHCP lease");
                match spawn_udhcpc(name) {
                    Ok(c) => {
                        dhcp.insert(name.clone(), Some(c));
                    }
                    Err(e) => {
                        error!("{e:#}");
                        failed.push(name.clone());
                    }
                }
            }
        }
    }
    supervise(dhcp, failed)
}

/// Writes [`CONFIGURED`] once nothing failed and every DHCP interface has
/// its lease; returns whether it is written.
fn mark_configured(dhcp: &BTreeMap<String, Option<Child>>, failed: &[String]) -> bool {
    if !failed.is_empty() {
        return false;
    }
    if dhcp
        .keys()
        .any(|name| !Path::new(LEASE_DIR).join(name).exists())
    {
        return false;
    }
    let mut names: Vec<&str> = dhcp.keys().map(String::as_str).collect();
    names.sort();
    match write_atomic(
        Path::new(CONFIGURED),
        &format!(
            "configured{}{}\n",
            if names.is_empty() {
                ""
            } else {
                ", DHCP leases on "
            },
            names.join(" ")
        ),
    ) {
        Ok(()) => {
            info!("every interface is configured");
            true
        }
        Err(e) => {
            error!("{e:#}");
            false
        }
    }
}

/// Keeps the DHCP clients running until SIGTERM.
fn supervise(mut dhcp: BTreeMap<String, Option<Child>>, failed: Vec<String>) -> Result<()> {
    let mut configured = false;
    use signal_hook::consts::{SIGINT, SIGTERM};
    let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register(sig, term.clone())?;
    }
    let mut restart_at: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        if term.load(std::sync::atomic::Ordering::Relaxed) {
            for c in dhcp.values_mut().flatten() {
                let _ = c.kill();
                let _ = c.wait();
            }
            info!("stopped");
            return Ok(());
        }
        for (name, child) in dhcp.iter_mut() {
            if let Some(c) = child {
                // An error means the catch-all reaper below got to this
                // child first (it exited between the two checks).
                let exited = match c.try_wait() {
                    Ok(Some(status)) => Some(status.to_string()),
                    Ok(None) => None,
                    Err(_) => Some("status unknown".to_owned()),
                };
                if let Some(status) = exited {
                    warn!("{name}: udhcpc exited ({status}); restarting it in 5 s");
                    *child = None;
                    restart_at.insert(name.clone(), Instant::now() + Duration::from_secs(5));
                }
            } else if restart_at.get(name).is_some_and(|t| Instant::now() >= *t) {
                restart_at.remove(name);
                match spawn_udhcpc(name) {
                    Ok(c) => *child = Some(c),
                    Err(e) => {
                        error!("{e:#}");
                        restart_at.insert(name.clone(), Instant::now() + Duration::from_secs(5));
                    }
                }
            }
        }
        if !configured {
            configured = mark_configured(&dhcp, &failed);
        }
        // Reap anything else (this is PID 1 of its container).
        while let Ok(
            nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..),
        ) = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(-1),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        ) {}
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Prefix length of a dotted netmask.
fn prefix_of(mask: &str) -> Option<u8> {
    let m: Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(m);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then_some(bits.leading_ones() as u8)
}

fn hook(event: &str) -> Result<()> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(name) = env("interface") else {
        bail!("udhcpc-hook: no $interface (run by udhcpc only)");
    };
    let lease_file = Path::new(LEASE_DIR).join(&name);
    let config = config();
    let mut nl = Netlink::open()?;
    let link = find_link(&mut nl, &name)?;
    match event {
        "deconfig" => {
            nl.set_up(&link, None)?;
            nl.flush_ipv4(&link, &[])?;
            let _ = std::fs::remove_file(&lease_file);
            write_resolv(&config)?;
        }
        "bound" | "renew" => {
            let ip: IpAddr = env("ip")
                .context("no $ip in the lease")?
                .parse()
                .context("$ip")?;
            let prefix = env("mask")
                .and_then(|m| m.parse().ok())
                .or_else(|| env("subnet").and_then(|s| prefix_of(&s)))
                .unwrap_or(24);
            // The config's MTU wins over the one the DHCP server offers.
            let mtu = config
                .interfaces
                .get(name.as_str())
                .and_then(|i| i.mtu)
                .or_else(|| env("mtu").and_then(|m| m.parse().ok()));
            let router: Option<IpAddr> = env("router")
                .and_then(|r| r.split_whitespace().next().and_then(|r| r.parse().ok()));
            nl.set_up(&link, mtu)?;
            nl.flush_ipv4(&link, &[ip])?;
            nl.add_address(&link, ip, prefix)?;
            if let Some(r) = router {
                nl.default_route(&link, r)?;
            }
            let dns = LeaseDns::from_env(env("dns").as_deref(), env("domain").as_deref());
            write_atomic(&lease_file, &dns.render())?;
            write_resolv(&config)?;
            info!(
                "{name}: DHCP lease {ip}/{prefix}{}{} ({event})",
                router.map(|r| format!(" via {r}")).unwrap_or_default(),
                if dns.nameservers.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", nameservers {}",
                        dns.nameservers
                            .iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                }
            );
        }
        "leasefail" | "nak" => {
            warn!("{name}: no DHCP lease yet (no answer from a DHCP server); still trying");
        }
        other => info!("{name}: DHCP event {other}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks() {
        assert_eq!(prefix_of("255.255.255.0"), Some(24));
        assert_eq!(prefix_of("255.255.0.0"), Some(16));
        assert_eq!(prefix_of("255.0.255.0"), None);
        assert_eq!(prefix_of("0.0.0.0"), Some(0));
    }
}
