//! A container's network across its life: planned at create (mode,
//! address, the /etc files), set up before each start, torn down after
//! each exit, pinned again when a restarted engine adopts it. The
//! networks themselves are `crate::network`'s; `networks.rs` has the
//! API's operations on them (create, connect, ...).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral_runtime::netns;
use log::{info, warn};
use oci_spec::runtime::{LinuxNamespaceType, MountBuilder, Spec};

use super::{internal, resolve_in, Engine, EngineError, Inner, Result};
use crate::network::{self, Attachment, Endpoint, Mode, NetError, Network, NetworkStore, PortMap};
use crate::state::ApiFields;

/// The /etc files every API container gets, written by the engine.
const ETC_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

/// The machine's resolver config, as the engine (a system container) sees
/// it: the network service's.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
const HOST_HOSTS: &str = "/etc/hosts";

impl From<NetError> for EngineError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::PortInUse(m) | NetError::Exists(m) => EngineError::Conflict(m),
            NetError::Invalid(m) => EngineError::Invalid(m),
            NetError::NotFound(m) => EngineError::NoSuchNetwork(m),
            NetError::Forbidden(m) => EngineError::Forbidden(m),
            other => EngineError::Internal(other.to_string()),
        }
    }
}

/// The addresses containers hold on network `id`.
pub(super) fn used_addresses(inner: &Inner, id: &str) -> Vec<Ipv4Addr> {
    inner
        .containers
        .values()
        .filter_map(|c| c.record.api.network.endpoint(id).and_then(|e| e.ip))
        .collect()
}

/// Gives `endpoint` its place on `network`: the address asked for (on a
/// network whose subnet was given, free) or the lowest free one, and on
/// a network with DNS the container's short id as an alias, Docker's.
pub(super) fn place(
    inner: &Inner,
    network: &Network,
    endpoint: &mut Endpoint,
    container_id: &str,
) -> Result<()> {
    endpoint.network = network.id.clone();
    endpoint.name = network.name.clone();
    if !network.dns && !endpoint.aliases.is_empty() {
        return Err(EngineError::Invalid(
            "network-scoped alias is supported only for containers in user defined networks".into(),
        ));
    }
    let used = used_addresses(inner, &network.id);
    match endpoint.ip {
        Some(ip) if endpoint.static_ip => {
            if !network.configured {
                return Err(EngineError::Invalid(format!(
                    "--ip {ip}: user specified IP address is supported only when connecting to networks with user configured subnets ({} has none)",
                    network.name
                )));
            }
            if !network.contains(ip) {
                return Err(EngineError::Invalid(format!(
                    "--ip {ip} is not a container address of network {} ({})",
                    network.name, network.subnet
                )));
            }
            if used.contains(&ip) {
                return Err(EngineError::Conflict(format!(
                    "--ip {ip}: Address already in use on network {}",
                    network.name
                )));
            }
        }
        _ => endpoint.ip = Some(network.allocate(&used)?),
    }
    let short = &container_id[..12];
    if network.dns && !endpoint.aliases.iter().any(|a| a == short) {
        endpoint.aliases.push(short.to_owned());
    }
    Ok(())
}

fn set_netns(spec: &mut Spec, path: Option<&Path>) {
    if let Some(linux) = spec.linux_mut() {
        if let Some(namespaces) = linux.namespaces_mut() {
            match path {
                Some(p) => {
                    for ns in namespaces.iter_mut() {
                        if ns.typ() == LinuxNamespaceType::Network {
                            ns.set_path(Some(p.to_owned()));
                        }
                    }
                }
                // The machine's: no network namespace of its own.
                None => namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network),
            }
        }
    }
}

fn c_hostname(inner: &super::Inner, id: &str) -> String {
    inner
        .containers
        .get(id)
        .and_then(|c| c.spec.hostname().clone())
        .unwrap_or_default()
}

impl Engine {
    /// Inspect's `SandboxKey`.
    pub fn netns_of(&self, id: &str) -> String {
        self.netns_path(id).display().to_string()
    }

    /// Where a container's network namespace is kept while it runs.
    pub(super) fn netns_path(&self, id: &str) -> PathBuf {
        self.cfg.run_root.join("netns").join(id)
    }

    /// The mode, the address on the bridge, the published ports, and the
    /// /etc files bound into the container. System containers have their
    /// network from their definition and the host's resolver.
    pub(super) fn plan_network(
        &self,
        id: &str,
        api: &mut ApiFields,
        spec: &mut Spec,
        image_exposed: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<()> {
        if self.cfg.role.system_containers {
            return Ok(());
        }
        let inner = self.lock();
        let net = &mut api.network;
        let default_bridge = net
            .endpoints
            .first()
            .is_none_or(|e| e.name.is_empty() || e.name == network::BRIDGE_NAME);
        if net.mode == Mode::Bridge && self.networks.is_none() {
            if !default_bridge {
                return Err(EngineError::Invalid(
                    "this engine has no networks (netavark is missing): only --network host, none or container:NAME".into(),
                ));
            }
            warnings.push(
                "this engine has no bridge network: the container gets only a loopback interface (use --network host to share the machine's)".into(),
            );
            net.mode = Mode::None;
            net.endpoints.clear();
            net.ports.clear();
        }
        // `--add-host NAME:host-gateway`: the bridge's address, Docker's.
        for (_, ip) in net
            .extra_hosts
            .iter_mut()
            .filter(|(_, ip)| ip == "host-gateway")
        {
            let gateway = self.networks.as_ref().map(|n| n.bridge().gateway).ok_or_else(|| {
                EngineError::Invalid(
                    "--add-host ...:host-gateway needs the bridge network, which this engine does not have".into(),
                )
            })?;
            *ip = gateway.to_string();
        }
        let mut etc_source = self.data_dir(id);
        match net.mode.clone() {
            Mode::Bridge => {
                let store = self.network_store()?;
                if net.publish_all {
                    for key in api.exposed_ports.iter().chain(image_exposed) {
                        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
                        let Ok(port) = port.parse::<u16>() else {
                            continue;
                        };
                        let known = net
                            .ports
                            .iter()
                            .any(|p| p.container_port == port && p.protocol == proto);
                        if !known {
                            net.ports.push(PortMap {
                                host_ip: String::new(),
                                host_port: 0,
                                container_port: port,
                                protocol: proto.to_owned(),
                            });
                        }
                    }
                }
                if net.endpoints.is_empty() {
                    net.endpoints.push(Endpoint::default());
                }
                let endpoint = &mut net.endpoints[0];
                let network = if endpoint.name.is_empty() {
                    store.bridge().clone()
                } else {
                    // Not a 404: the CLI would take it for a missing
                    // image and try to pull one.
                    store.find(&endpoint.name).map_err(|e| match e {
                        NetError::NotFound(m) => EngineError::Invalid(m),
                        other => other.into(),
                    })?
                };
                place(&inner, &network, endpoint, id)?;
                endpoint.interface = "eth0".into();
                set_netns(spec, Some(&self.netns_path(id)));
            }
            Mode::Container(reference) => {
                let target = resolve_in(&inner, &reference)?;
                let t = &inner.containers[&target];
                if let Mode::Container(_) = t.record.api.network.mode {
                    return Err(EngineError::Invalid(format!(
                        "cannot join the network of {}: it joins another container's network itself",
                        t.record.name
                    )));
                }
                // Docker's: the other container's host name and files too.
                spec.set_hostname(t.spec.hostname().clone());
                etc_source = self.data_dir(&target);
                net.mode = Mode::Container(target);
            }
            Mode::Host => set_netns(spec, None),
            Mode::None => {}
        }
        drop(inner);
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for f in ETC_FILES {
            mounts.push(
                MountBuilder::default()
                    .destination(format!("/etc/{f}"))
                    .typ("bind")
                    .source(etc_source.join(f))
                    .options(vec!["rbind".to_owned(), "rprivate".to_owned()])
                    .build()
                    .map_err(internal)?,
            );
        }
        spec.set_mounts(Some(mounts));
        Ok(())
    }

    /// Writes the container's hosts, hostname and resolv.conf (again at
    /// each start: the machine's resolvers may have changed).
    pub(super) fn write_etc_files(
        &self,
        id: &str,
        api: &ApiFields,
        hostname: &str,
    ) -> std::io::Result<()> {
        if self.cfg.role.system_containers {
            return Ok(());
        }
        self.write_etc_files_to(&self.data_dir(id), api, hostname)
    }

    fn write_etc_files_to(
        &self,
        dir: &Path,
        api: &ApiFields,
        hostname: &str,
    ) -> std::io::Result<()> {
        let net = &api.network;
        std::fs::create_dir_all(dir)?;
        let host_resolv = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
        // The engine's default servers stand in for the machine's.
        let mut dns = net.dns.clone();
        if dns.servers.is_empty() {
            dns.servers = self.cfg.dns.clone();
        }
        let (hosts, resolv) = match net.mode {
            // Another container's files are bound instead.
            Mode::Container(_) => return Ok(()),
            Mode::Host => {
                let mut hosts = std::fs::read_to_string(HOST_HOSTS)
                    .unwrap_or_else(|_| network::hosts_file(hostname, None, &[]));
                for (name, ip) in &net.extra_hosts {
                    hosts.push_str(&format!("{ip}\t{name}\n"));
                }
                let resolv = if dns.is_empty() {
                    host_resolv
                } else {
                    network::resolv_conf(&host_resolv, &dns, &[])
                };
                (hosts, resolv)
            }
            Mode::Bridge | Mode::None => {
                let gateways: Vec<Ipv4Addr> = net
                    .endpoints
                    .iter()
                    .filter_map(|e| self.networks.as_ref()?.by_id(&e.network))
                    .filter(|n| n.dns)
                    .map(|n| n.gateway)
                    .collect();
                let ip = net.endpoints.first().and_then(|e| e.ip);
                (
                    network::hosts_file(hostname, ip, &net.extra_hosts),
                    network::resolv_conf(&host_resolv, &dns, &gateways),
                )
            }
        };
        for (name, text) in [
            ("hosts", hosts),
            ("hostname", format!("{hostname}\n")),
            ("resolv.conf", resolv),
        ] {
            crate::state::write_atomic(&dir.join(name), text.as_bytes())?;
        }
        Ok(())
    }

    /// A running container's resolv.conf and hosts after it joined or
    /// left a network: rewritten in place, as they are bound into it (a
    /// new file would not be seen).
    pub(super) fn rewrite_etc_files(&self, id: &str) {
        let Some((api, hostname, name)) = self.lock().containers.get(id).map(|c| {
            (
                c.record.api.clone(),
                c.spec.hostname().clone().unwrap_or_default(),
                c.record.name.clone(),
            )
        }) else {
            return;
        };
        let staged = self.cfg.run_root.join("etc-staging").join(id);
        let result = (|| -> std::io::Result<()> {
            let real = self.data_dir(id);
            std::fs::create_dir_all(&staged)?;
            // Written beside, then copied over the bound files' contents.
            let fields = api.clone();
            self.write_etc_files_to(&staged, &fields, &hostname)?;
            for f in ["hosts", "resolv.conf"] {
                let text = std::fs::read(staged.join(f))?;
                std::fs::write(real.join(f), text)?;
            }
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&staged);
        if let Err(e) = result {
            warn!("{name}: updating its /etc/hosts and /etc/resolv.conf: {e}");
        }
    }

    /// Before the process starts: a bridged container's namespace made
    /// and put on the bridge with its ports; a `container:` one pointed at
    /// the other container's namespace. Whatever an earlier run left set
    /// up is torn down first.
    pub(super) async fn network_up(self: &Arc<Self>, id: &str) -> Result<()> {
        let (api, name, hostname) = {
            let inner = self.lock();
            let c = inner
                .containers
                .get(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            (
                c.record.api.clone(),
                c.record.name.clone(),
                c.spec.hostname().clone().unwrap_or_default(),
            )
        };
        if self.cfg.role.system_containers {
            return Ok(());
        }
        self.write_etc_files(id, &api, &hostname)
            .map_err(|e| internal(format!("writing the /etc files of {name}: {e}")))?;
        match &api.network.mode {
            Mode::Bridge => self.bridge_up(id, &name, &api).await,
            Mode::Container(target) => self.join_up(id, target),
            Mode::Host | Mode::None => Ok(()),
        }
    }

    /// This engine's networks, or the error that it has none.
    pub(super) fn network_store(&self) -> Result<&NetworkStore> {
        self.networks.as_ref().ok_or_else(|| {
            EngineError::Invalid("this engine has no networks (netavark is missing)".into())
        })
    }

    /// Where aardvark-dns forwards a container's other queries: its own
    /// `--dns` servers, else the engine's (`[user-engine] dns`).
    fn upstream_dns(&self, api: &ApiFields) -> Vec<std::net::IpAddr> {
        if api.network.dns.servers.is_empty() {
            self.cfg.dns.clone()
        } else {
            api.network.dns.servers.clone()
        }
    }

    /// The container's namespace made and put on every one of its
    /// networks in one netavark call, with its ports.
    async fn bridge_up(self: &Arc<Self>, id: &str, name: &str, api: &ApiFields) -> Result<()> {
        let store = self.network_store()?;
        if api.network.attached {
            self.network_down(id).await;
        }
        // Each endpoint's network, and an address on it: a network whose
        // subnet changed (`[user-engine] bridge-subnet`) gives a new one.
        let (networks, endpoints) = {
            let mut inner = self.lock();
            let mut endpoints = api.network.endpoints.clone();
            let mut networks = Vec::new();
            let mut moved = false;
            for e in &mut endpoints {
                let network = store.by_id(&e.network).ok_or_else(|| {
                    EngineError::NoSuchNetwork(format!(
                        "network {} not found (it was removed while {name} was stopped: docker network disconnect {} {name})",
                        e.name, e.name
                    ))
                })?;
                if !e.ip.is_some_and(|ip| network.contains(ip)) {
                    e.static_ip = false;
                    e.ip = None;
                    place(&inner, &network, e, id)?;
                    moved = true;
                }
                networks.push(network);
            }
            if moved {
                if let Some(c) = inner.containers.get_mut(id) {
                    c.record.api.network.endpoints = endpoints.clone();
                    let _ = self.states.save(&c.record);
                }
                let hostname = c_hostname(&inner, id);
                drop(inner);
                let mut fields = api.clone();
                fields.network.endpoints = endpoints.clone();
                self.write_etc_files(id, &fields, &hostname)
                    .map_err(|e| internal(format!("writing the /etc files of {name}: {e}")))?;
            }
            (networks, endpoints)
        };
        let path = self.netns_path(id);
        netns::create(&path).map_err(|e| internal(format!("{name}: network namespace: {e}")))?;
        let taken: Vec<PortMap> = self
            .lock()
            .containers
            .values()
            .filter(|c| c.record.id != id && c.record.api.network.attached)
            .flat_map(|c| c.record.api.network.bound_ports.clone())
            .collect();
        let dns_servers = self.upstream_dns(api);
        let set_up = async {
            let ports = network::bind_ports(&api.network.ports, &taken)?;
            let on = attachments(&networks, &endpoints);
            let container = network::Container {
                id,
                name,
                ports: &ports,
                dns_servers: &dns_servers,
            };
            // Disconnected from every network: a loopback only.
            let macs = if on.is_empty() {
                Default::default()
            } else {
                store.tool.setup(&path, &container, &on).await?
            };
            Ok::<_, NetError>((ports, macs))
        }
        .await;
        match set_up {
            Ok((ports, macs)) => {
                let mut inner = self.lock();
                if let Some(c) = inner.containers.get_mut(id) {
                    let net = &mut c.record.api.network;
                    net.bound_ports = ports;
                    for e in &mut net.endpoints {
                        if let Some(n) = networks.iter().find(|n| n.id == e.network) {
                            e.mac = macs.get(&n.name).cloned();
                            e.attached = true;
                        }
                    }
                    net.attached = true;
                    let _ = self.states.save(&c.record);
                }
                Ok(())
            }
            Err(e) => {
                // netavark undoes its own half-done setup; the namespace
                // is ours to drop.
                let _ = netns::release(&path);
                Err(e.into())
            }
        }
    }

    /// `--network container:X`: X must run; its namespace, whether kept
    /// as a file (bridge) or only its process's (none).
    fn join_up(&self, id: &str, target: &str) -> Result<()> {
        let mut inner = self.lock();
        let t = inner.containers.get(target).ok_or_else(|| {
            EngineError::Invalid(format!(
                "the container whose network this one joins ({target}) was removed"
            ))
        })?;
        let Some(pid) = t.record.state.pid.filter(|_| t.process.is_some()) else {
            return Err(EngineError::Conflict(format!(
                "cannot join the network of container {}: it is not running",
                t.record.name
            )));
        };
        let path = match t.record.api.network.mode {
            Mode::Host => None,
            _ if netns::is_pinned(&self.netns_path(target)) => Some(self.netns_path(target)),
            _ => Some(PathBuf::from(format!("/proc/{pid}/ns/net"))),
        };
        let c = inner
            .containers
            .get_mut(id)
            .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
        set_netns(&mut c.spec, path.as_deref());
        let json = serde_json::to_vec_pretty(&c.spec).map_err(internal)?;
        crate::state::write_atomic(&self.spec_path(id), &json)
            .map_err(|e| internal(format!("writing the spec of {}: {e}", c.record.name)))
    }

    /// After the process ended (or before it starts again, or at removal):
    /// its ports and veths go, and the namespace file. When no engine held
    /// the namespace (it ended while the engine was down), an empty one
    /// stands in so the rules still go.
    pub(super) async fn network_down(self: &Arc<Self>, id: &str) {
        let Some((api, name)) = self
            .lock()
            .containers
            .get(id)
            .map(|c| (c.record.api.clone(), c.record.name.clone()))
        else {
            return;
        };
        let net = &api.network;
        let (Some(store), true) = (self.networks.as_ref(), net.attached) else {
            return;
        };
        let path = self.netns_path(id);
        let gone = !netns::is_pinned(&path);
        let scratch = self
            .cfg
            .run_root
            .join("netns")
            .join(format!("{id}.teardown"));
        let ns = if gone {
            if let Err(e) = netns::create(&scratch) {
                warn!("{name}: cannot tear its network down: {e}");
                return;
            }
            scratch.clone()
        } else {
            path.clone()
        };
        let attached: Vec<Endpoint> = net
            .endpoints
            .iter()
            .filter(|e| e.attached)
            .cloned()
            .collect();
        let networks: Vec<Network> = attached
            .iter()
            .filter_map(|e| store.by_id(&e.network))
            .collect();
        let on = attachments(&networks, &attached);
        if !on.is_empty() {
            let container = network::Container {
                id,
                name: &name,
                ports: &net.bound_ports,
                dns_servers: &[],
            };
            match store.tool.teardown(&ns, &container, &on, gone).await {
                Ok(()) => info!("{name}: off its networks"),
                Err(e) => warn!("{name}: {e}"),
            }
        }
        for p in [&path, &scratch] {
            if let Err(e) = netns::release(p) {
                warn!("{name}: {e}");
            }
        }
        let mut inner = self.lock();
        if let Some(c) = inner.containers.get_mut(id) {
            let net = &mut c.record.api.network;
            net.attached = false;
            for e in &mut net.endpoints {
                e.attached = false;
                e.mac = None;
            }
            net.bound_ports.clear();
            let _ = self.states.save(&c.record);
        }
    }

    /// A restarted engine sees the namespace files its predecessor made as
    /// empty files (the bind mounts were in its mount namespace): keep the
    /// running container's namespace again from its process.
    pub(super) fn repin(&self, id: &str, pid: i32) {
        let path = self.netns_path(id);
        let bridged = self
            .lock()
            .containers
            .get(id)
            .is_some_and(|c| c.record.api.network.attached);
        if bridged {
            if let Err(e) = netns::pin(Path::new(&format!("/proc/{pid}/ns/net")), &path) {
                warn!("{id}: keeping its network namespace: {e}");
            }
        }
    }
}

/// Each endpoint with its network (endpoints whose network is gone are
/// left out).
pub(super) fn attachments<'a>(
    networks: &'a [Network],
    endpoints: &'a [Endpoint],
) -> Vec<Attachment<'a>> {
    endpoints
        .iter()
        .filter_map(|e| {
            let network = networks.iter().find(|n| n.id == e.network)?;
            Some(Attachment {
                network,
                interface: &e.interface,
                ip: e.ip?,
                aliases: &e.aliases,
            })
        })
        .collect()
}
