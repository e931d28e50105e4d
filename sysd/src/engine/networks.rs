//! The networks as the API acts on them: create, remove and prune (never
//! one a container is on), connect and disconnect a container (at once
//! when it runs, at its next start when not), and what a restarted
//! engine redoes for them (isolation rules, aardvark-dns).

use std::collections::BTreeMap;
use std::sync::Arc;

use log::{info, warn};

use super::net::{attachments, place};
use super::{new_id, now, resolve_in, Engine, EngineError, Result};
use crate::network::{self, Endpoint, Mode, Network, NetworkStore, Request};

/// A container on a network, as inspect lists it.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub endpoint: Endpoint,
}

impl Engine {
    pub fn networks(&self) -> Option<&NetworkStore> {
        self.networks.as_ref()
    }

    /// The containers on network `id` (stopped ones too).
    pub fn network_members(&self, id: &str) -> Vec<Member> {
        self.lock()
            .containers
            .values()
            .filter(|c| c.record.api.network.mode == Mode::Bridge)
            .filter_map(|c| {
                Some(Member {
                    id: c.record.id.clone(),
                    name: c.record.name.clone(),
                    endpoint: c.record.api.network.endpoint(id)?.clone(),
                })
            })
            .collect()
    }

    fn network_event(&self, action: &str, n: &Network, container: Option<&str>) {
        let mut attrs = BTreeMap::from([
            ("name".to_owned(), n.name.clone()),
            ("type".to_owned(), "bridge".to_owned()),
        ]);
        if let Some(c) = container {
            attrs.insert("container".into(), c.to_owned());
        }
        self.events().emit("network", action, &n.id, attrs);
    }

    /// The machine's isolation rules for the current set of networks.
    fn isolate(&self, store: &NetworkStore) -> Result<()> {
        store.isolate().map_err(|e| {
            EngineError::Internal(format!(
                "{e} (containers on different networks could reach each other)"
            ))
        })
    }

    pub fn create_network(&self, request: Request) -> Result<Network> {
        let store = self.network_store()?;
        let n = store.create(new_id()?, request, now())?;
        if let Err(e) = self.isolate(store) {
            // Not kept without its rules: nothing half made.
            let _ = store.remove(&n.id);
            return Err(e);
        }
        info!("network {} made: {} on {}", n.name, n.subnet, n.interface);
        self.network_event("create", &n, None);
        Ok(n)
    }

    /// Removes a user-defined network no container is on (Docker allows
    /// stopped ones, which then cannot start; here they are named, to be
    /// removed or disconnected first).
    pub fn remove_network(&self, reference: &str) -> Result<Network> {
        let store = self.network_store()?;
        let n = store.find(reference)?;
        if n.is_default() {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let members = self.network_members(&n.id);
        if !members.is_empty() {
            let names: Vec<_> = members.iter().map(|m| m.name.as_str()).collect();
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints ({}: docker rm or docker network disconnect them first)",
                n.name,
                n.id,
                names.join(", ")
            )));
        }
        store.remove(&n.id)?;
        if let Err(e) = self.isolate(store) {
            warn!("network {} removed: {e}", n.name);
        }
        info!("network {} removed", n.name);
        self.network_event("destroy", &n, None);
        Ok(n)
    }

    /// Puts a container on a network: recorded at once, set up at once
    /// when the container runs. `endpoint` carries the aliases and the
    /// address asked for.
    pub async fn connect(
        self: &Arc<Self>,
        network: &str,
        container: &str,
        mut endpoint: Endpoint,
    ) -> Result<()> {
        let store = self.network_store()?;
        let n = store.find(network)?;
        let (id, name, running) = {
            let mut inner = self.lock();
            let id = resolve_in(&inner, container)?;
            let c = &inner.containers[&id];
            let name = c.record.name.clone();
            let net = &c.record.api.network;
            match &net.mode {
                Mode::Bridge => {}
                Mode::Host => {
                    return Err(EngineError::Forbidden(
                        "container cannot be disconnected from host network or connected to host network".into(),
                    ))
                }
                Mode::None | Mode::Container(_) => {
                    return Err(EngineError::Forbidden(format!(
                        "container {name} shares a network namespace with another container or has none (--network {}): it cannot be connected to any network",
                        net.mode.docker_name()
                    )))
                }
            }
            if net.endpoint(&n.id).is_some() {
                return Err(EngineError::Forbidden(format!(
                    "endpoint with name {name} already exists in network {}",
                    n.name
                )));
            }
            endpoint.interface = net.next_interface();
            place(&inner, &n, &mut endpoint, &id)?;
            let running = net.attached;
            let c = inner.containers.get_mut(&id).expect("resolved above");
            c.record.api.network.endpoints.push(endpoint.clone());
            self.states
                .save(&c.record)
                .map_err(|e| EngineError::Internal(format!("saving {name}: {e}")))?;
            (id, name, running)
        };
        if running {
            if let Err(e) = self.attach_one(&id, &name, &n, &endpoint).await {
                let mut inner = self.lock();
                if let Some(c) = inner.containers.get_mut(&id) {
                    c.record.api.network.endpoints.retain(|e| e.network != n.id);
                    let _ = self.states.save(&c.record);
                }
                return Err(e);
            }
            self.rewrite_etc_files(&id);
        }
        info!("{name}: connected to network {}", n.name);
        self.network_event("connect", &n, Some(&id));
        Ok(())
    }

    /// netavark for one more network of a running container.
    async fn attach_one(
        self: &Arc<Self>,
        id: &str,
        name: &str,
        n: &Network,
        endpoint: &Endpoint,
    ) -> Result<()> {
        let store = self.network_store()?;
        let (ports, api) = {
            let inner = self.lock();
            let c = inner
                .containers
                .get(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            (
                c.record.api.network.bound_ports.clone(),
                c.record.api.clone(),
            )
        };
        let dns = if api.network.dns.servers.is_empty() {
            self.cfg.dns.clone()
        } else {
            api.network.dns.servers.clone()
        };
        let networks = [n.clone()];
        let endpoints = [endpoint.clone()];
        let on = attachments(&networks, &endpoints);
        let c = network::Container {
            id,
            name,
            ports: &ports,
            dns_servers: &dns,
        };
        let macs = store.tool.setup(&self.netns_path(id), &c, &on).await?;
        let mut inner = self.lock();
        if let Some(c) = inner.containers.get_mut(id) {
            if let Some(e) = c
                .record
                .api
                .network
                .endpoints
                .iter_mut()
                .find(|e| e.network == n.id)
            {
                e.attached = true;
                e.mac = macs.get(&n.name).cloned();
            }
            let _ = self.states.save(&c.record);
        }
        Ok(())
    }

    /// Takes a container off a network (at once when it runs).
    pub async fn disconnect(self: &Arc<Self>, network: &str, container: &str) -> Result<()> {
        let store = self.network_store()?;
        let n = store.find(network)?;
        let (id, name, endpoint, ports) = {
            let inner = self.lock();
            let id = resolve_in(&inner, container)?;
            let c = &inner.containers[&id];
            let net = &c.record.api.network;
            if net.mode == Mode::Host {
                return Err(EngineError::Forbidden(
                    "container cannot be disconnected from host network or connected to host network".into(),
                ));
            }
            let endpoint = net.endpoint(&n.id).cloned().ok_or_else(|| {
                EngineError::Forbidden(format!(
                    "container {} is not connected to network {}",
                    c.record.name, n.name
                ))
            })?;
            (id, c.record.name.clone(), endpoint, net.bound_ports.clone())
        };
        if endpoint.attached {
            let networks = [n.clone()];
            let endpoints = [endpoint.clone()];
            let on = attachments(&networks, &endpoints);
            let c = network::Container {
                id: &id,
                name: &name,
                ports: &ports,
                dns_servers: &[],
            };
            store
                .tool
                .teardown(&self.netns_path(&id), &c, &on, false)
                .await?;
        }
        let running = endpoint.attached;
        {
            let mut inner = self.lock();
            if let Some(c) = inner.containers.get_mut(&id) {
                c.record.api.network.endpoints.retain(|e| e.network != n.id);
                self.states
                    .save(&c.record)
                    .map_err(|e| EngineError::Internal(format!("saving {name}: {e}")))?;
            }
        }
        if running {
            self.rewrite_etc_files(&id);
        }
        info!("{name}: disconnected from network {}", n.name);
        self.network_event("disconnect", &n, Some(&id));
        Ok(())
    }

    /// After start-up and adoption: the isolation rules (the machine's
    /// firewall may have been reset by a reboot), and aardvark-dns for
    /// the adopted containers' names if it ended with the last engine.
    pub fn restore_networks(&self) {
        let Some(store) = self.networks.as_ref() else {
            return;
        };
        if let Err(e) = self.isolate(store) {
            warn!("{e}");
        }
        match store.tool.ensure_dns() {
            Ok(true) => info!("aardvark-dns started again for the running containers' names"),
            Ok(false) => {}
            Err(e) => warn!("{e}: running containers cannot resolve each other's names"),
        }
    }
}
