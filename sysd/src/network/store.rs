//! The engine's networks: the default bridge from the config, and the
//! user-defined ones, each kept as `<data root>/networks/<id>.json`
//! (written atomically: a network is there whole or not at all).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use ipnet::Ipv4Net;
use log::error;

use super::{isolation, routed_subnets, NetError, Netavark, Network, Request};

pub struct NetworkStore {
    dir: PathBuf,
    /// netavark and aardvark-dns, which act on them.
    pub tool: Netavark,
    bridge: Network,
    /// The user-defined networks, by id.
    user: Mutex<BTreeMap<String, Network>>,
}

impl NetworkStore {
    /// Reads the networks kept in `dir`; an unreadable file is reported
    /// and left alone (its network is not listed).
    pub fn open(dir: PathBuf, tool: Netavark, bridge_subnet: Ipv4Net) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut user = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|d| serde_json::from_slice::<Network>(&d).map_err(|e| e.to_string()))
            {
                Ok(n) => {
                    user.insert(n.id.clone(), n);
                }
                Err(e) => error!("ignoring the unreadable network {}: {e}", path.display()),
            }
        }
        Ok(Self {
            dir,
            tool,
            bridge: Network::default_bridge(bridge_subnet),
            user: Mutex::new(user),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Network>> {
        self.user.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn bridge(&self) -> &Network {
        &self.bridge
    }

    /// Every network: the default bridge first, then by name.
    pub fn list(&self) -> Vec<Network> {
        let mut user: Vec<Network> = self.lock().values().cloned().collect();
        user.sort_by(|a, b| a.name.cmp(&b.name));
        std::iter::once(self.bridge.clone()).chain(user).collect()
    }

    pub fn by_id(&self, id: &str) -> Option<Network> {
        if id == self.bridge.id {
            return Some(self.bridge.clone());
        }
        self.lock().get(id).cloned()
    }

    /// A network by full id, name, or unique id prefix, in Docker's order.
    pub fn find(&self, reference: &str) -> Result<Network, NetError> {
        let all = self.list();
        if let Some(n) = all.iter().find(|n| n.id == reference) {
            return Ok(n.clone());
        }
        if let Some(n) = all.iter().find(|n| n.name == reference) {
            return Ok(n.clone());
        }
        let matches: Vec<_> = all
            .iter()
            .filter(|n| !reference.is_empty() && n.id.starts_with(reference))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(NetError::NotFound(format!("network {reference} not found"))),
            many => Err(NetError::Invalid(format!(
                "network {reference} is ambiguous ({} matches found based on ID prefix)",
                many.len()
            ))),
        }
    }

    /// Makes and keeps a user-defined network. Its subnet may not overlap
    /// another network's or a route of the machine.
    pub fn create(
        &self,
        id: String,
        request: Request,
        created: String,
    ) -> Result<Network, NetError> {
        let mut user = self.lock();
        if request.name == self.bridge.name || user.values().any(|n| n.name == request.name) {
            return Err(NetError::Exists(format!(
                "network with name {} already exists",
                request.name
            )));
        }
        let mut taken: Vec<Ipv4Net> = user.values().map(|n| n.subnet).collect();
        taken.push(self.bridge.subnet);
        let own: Vec<_> = user.values().map(|n| n.subnet).collect();
        taken.extend(
            routed_subnets()
                .into_iter()
                .filter(|r| *r != self.bridge.subnet && !own.contains(r)),
        );
        let network = Network::new(id, request, &taken, created)?;
        if let Some(other) = user
            .values()
            .find(|n| n.interface == network.interface)
            .or((self.bridge.interface == network.interface).then_some(&self.bridge))
        {
            return Err(NetError::Exists(format!(
                "bridge interface {} is network {}'s",
                network.interface, other.name
            )));
        }
        let json = serde_json::to_vec_pretty(&network).map_err(|e| NetError::Io(e.to_string()))?;
        crate::state::write_atomic(&self.dir.join(format!("{}.json", network.id)), &json)
            .map_err(|e| NetError::Io(format!("keeping network {}: {e}", network.name)))?;
        user.insert(network.id.clone(), network.clone());
        Ok(network)
    }

    /// Forgets a user-defined network (the caller checked that no
    /// container is on it).
    pub fn remove(&self, id: &str) -> Result<(), NetError> {
        if id == self.bridge.id {
            return Err(NetError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                self.bridge.name
            )));
        }
        let mut user = self.lock();
        let Some(n) = user.get(id) else {
            return Err(NetError::NotFound(format!("network {id} not found")));
        };
        let path = self.dir.join(format!("{id}.json"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(NetError::Io(format!("removing network {}: {e}", n.name))),
        }
        user.remove(id);
        Ok(())
    }

    /// Makes the machine's isolation rules those of the current networks.
    pub fn isolate(&self) -> Result<(), NetError> {
        let all = self.list();
        isolation::apply(&all.iter().collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> NetworkStore {
        NetworkStore::open(
            dir.join("networks"),
            Netavark {
                netavark: "/x".into(),
                aardvark: "/y".into(),
                config_dir: dir.join("nv"),
            },
            "172.17.0.0/16".parse().unwrap(),
        )
        .unwrap()
    }

    fn id(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    #[test]
    fn networks_are_kept_found_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let req = |name: &str, subnet: Option<&str>| Request {
            name: name.into(),
            subnet: subnet.map(str::to_owned),
            ..Default::default()
        };
        let a = s.create(id('a'), req("front", None), "t".into()).unwrap();
        assert!(!overlaps_17(&a.subnet));
        let b = s
            .create(id('b'), req("back", Some("10.99.0.0/24")), "t".into())
            .unwrap();
        let e = s
            .create(id('c'), req("front", None), "t".into())
            .unwrap_err();
        assert!(matches!(e, NetError::Exists(_)), "{e}");
        let e = s
            .create(id('c'), req("other", Some("10.99.0.128/25")), "t".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlaps"), "{e}");

        // Read back as a restarted engine would.
        let again = store(dir.path());
        let names: Vec<_> = again.list().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "back", "front"]);
        assert_eq!(again.find("back").unwrap(), b);
        assert_eq!(again.find(&id('a')).unwrap(), a);
        assert_eq!(again.find("aaaa").unwrap(), a);
        assert_eq!(again.find("bridge").unwrap().id, crate::network::BRIDGE_ID);
        assert!(matches!(again.find("nope"), Err(NetError::NotFound(_))));
        assert!(matches!(
            again.remove(crate::network::BRIDGE_ID),
            Err(NetError::Forbidden(_))
        ));
        again.remove(&a.id).unwrap();
        assert!(again.find("front").is_err());
        assert!(store(dir.path()).find("front").is_err());
    }

    fn overlaps_17(n: &Ipv4Net) -> bool {
        crate::network::overlaps(n, &"172.17.0.0/16".parse().unwrap())
    }
}
