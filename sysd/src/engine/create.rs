//! Making a container: the definition over the image's default, the
//! runtime spec, the record, the directories and FIFOs.

use std::sync::Arc;

use corral_config::service::ServiceDef;
use log::info;
use tokio::sync::{broadcast, watch};

use super::{
    internal, merged_with_image_default, new_id, now, restart_policy, valid_name, Container,
    Engine, EngineError, Result,
};
use crate::restart::Backoff;
use crate::spec;
use crate::state::{ApiFields, Record, RunState};

impl Engine {
    /// Makes a container from a definition. `def.image` must be set.
    /// `service` containers come from the system config: their image's
    /// default definition is laid under `def`, and they are supervised.
    pub fn create(
        self: &Arc<Self>,
        name: Option<&str>,
        def: ServiceDef,
        service: bool,
        api: ApiFields,
        warnings: &mut Vec<String>,
    ) -> Result<String> {
        let image_ref = def
            .image
            .clone()
            .ok_or_else(|| EngineError::Invalid("no image given".into()))?;
        let image = self.images.get(&image_ref).map_err(|e| match e {
            corral_image::Error::NotFound(_) => EngineError::NoSuchImage(image_ref.clone()),
            other => EngineError::Invalid(other.to_string()),
        })?;
        let def = if service {
            merged_with_image_default(&image, def).map_err(EngineError::Invalid)?
        } else {
            def
        };
        let id = new_id()?;
        let mut def = def;
        if !service && def.hostname.is_none() {
            // Docker's default: the short id; on the host's network, the
            // machine's name.
            def.hostname = Some(match api.network.mode {
                crate::network::Mode::Host => nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| id[..12].to_owned()),
                _ => id[..12].to_owned(),
            });
        }
        let name = match name {
            Some(n) if !valid_name(n) => {
                return Err(EngineError::Invalid(format!(
                    "invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )))
            }
            Some(n) => n.to_owned(),
            None => self.random_name(&id),
        };
        {
            let inner = self.lock();
            if let Some(other) = inner.containers.values().find(|c| c.record.name == name) {
                return Err(EngineError::Conflict(format!(
                    "the container name {name:?} is already in use by container {}",
                    other.record.id
                )));
            }
        }
        let run_dir = self.run_dir(&id);
        let rootfs = run_dir.join("rootfs");
        let image_config = image.config.config().clone().unwrap_or_default();
        let mut spec = spec::build(
            &def,
            &spec::Context {
                name: &name,
                image: &image_config,
                layers: &image.layers,
                rootfs: &rootfs,
                cgroup: self.cgroup_rel(&id),
                init_binary: self.cfg.init_binary.as_deref(),
                system: self.cfg.role.system_containers,
            },
        )
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let mut api = api;
        if api.tty {
            terminal_spec(&mut spec);
        }
        ulimit_spec(&mut spec, &api.ulimits).map_err(EngineError::Invalid)?;

        let image_exposed = image_config.exposed_ports().clone().unwrap_or_default();
        self.plan_network(&id, &mut api, &mut spec, &image_exposed, warnings)?;
        for p in image_exposed {
            if !api.exposed_ports.contains(&p) {
                api.exposed_ports.push(p);
            }
        }
        let image_volumes = image_config.volumes().clone().unwrap_or_default();
        self.mount_volumes(&mut api, &mut spec, &image.layers, &image_volumes)?;

        let record = Record {
            id: id.clone(),
            name: name.clone(),
            image: image_ref,
            image_id: image.id.clone(),
            def: def.clone(),
            service,
            created: now(),
            restart_count: 0,
            state: RunState::default(),
            api,
            stopped_by_hand: false,
        };
        let made = (|| -> std::io::Result<()> {
            let data = self.data_dir(&id);
            for d in [data.join("upper"), data.join("work")] {
                std::fs::create_dir_all(d)?;
            }
            self.prepare_run_dir(&id)?;
            let hostname = spec.hostname().clone().unwrap_or_default();
            self.write_etc_files(&id, &record.api, &hostname)?;
            // A bind source that does not exist yet is made a directory,
            // as Docker does for -v: the syslog and resolver directories
            // every system container binds, /run/udev, a new volume.
            // One below the cgroup mount is a subtree delegated to the
            // container (the user engine's): made with every controller
            // its ancestors can pass on, so its limits can be enforced.
            for m in spec.mounts().iter().flatten() {
                if m.typ().as_deref() == Some("bind") {
                    if let Some(src) = m.source() {
                        if let Ok(rel) = src.strip_prefix(&self.cfg.cgroup_root) {
                            corral_runtime::cgroup::delegate(&self.cfg.cgroup_root, rel)
                                .map_err(std::io::Error::other)?;
                        } else if std::fs::symlink_metadata(src).is_err() {
                            std::fs::create_dir_all(src)?;
                        }
                        let options = m.options().iter().flatten();
                        if let Some(p) = options.clone().find(|o| *o == "rshared" || *o == "rslave")
                        {
                            joined_to_host(src, p)?;
                        }
                    }
                }
            }
            let json = serde_json::to_vec_pretty(&spec).map_err(std::io::Error::other)?;
            std::fs::create_dir_all(self.states.container_dir(&id))?;
            crate::state::write_atomic(&self.spec_path(&id), &json)?;
            self.states.save(&record)
        })();
        if let Err(e) = made {
            let _ = self.states.remove(&id);
            let _ = std::fs::remove_dir_all(self.run_dir(&id));
            let _ = std::fs::remove_dir_all(self.data_dir(&id));
            self.remove_anonymous_volumes(&record.api.volumes);
            return Err(internal(format!("creating container {name}: {e}")));
        }
        let container = Container {
            backoff: Backoff::new(restart_policy(&def, service), def.max_retries()),
            record,
            spec,
            layers: image.layers.clone(),
            process: None,
            generation: 0,
            started: None,
            stopping: false,
            exits: watch::channel(0).0,
            removed: watch::channel(None).0,
            logs: broadcast::channel(256).0,
            output: broadcast::channel(1024).0,
            fs_lock: Default::default(),
        };
        self.lock().containers.insert(id.clone(), container);
        self.container_event(&id, "create", &[]);
        info!("created container {name} ({}) from {}", &id[..12], image.id);
        Ok(id)
    }

    /// A name in Docker's shape (`adjective_noun`) no container has yet.
    fn random_name(&self, id: &str) -> String {
        let mut generator = names::Generator::default();
        let inner = self.lock();
        let taken = |n: &str| inner.containers.values().any(|c| c.record.name == n);
        for _ in 0..20 {
            if let Some(n) = generator.next().map(|n| n.replace('-', "_")) {
                if !taken(&n) {
                    return n;
                }
            }
        }
        format!("c_{}", &id[..12])
    }

    /// The run directory with the rootfs mountpoint and the output FIFOs;
    /// after a reboot (records on the state disk) they are made again.
    pub(super) fn prepare_run_dir(&self, id: &str) -> std::io::Result<()> {
        let run_dir = self.run_dir(id);
        std::fs::create_dir_all(run_dir.join("rootfs"))?;
        for stream in crate::monitor::FIFOS {
            match nix::unistd::mkfifo(
                &run_dir.join(stream),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            ) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// A process with a terminal, and `TERM` for it unless given (Docker
/// sets `xterm`, so that programs know what the client renders).
pub(super) fn terminal_spec(spec: &mut oci_spec::runtime::Spec) {
    if let Some(mut process) = spec.process().clone() {
        process.set_terminal(Some(true));
        let mut env = process.env().clone().unwrap_or_default();
        if !env.iter().any(|kv| kv.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        process.set_env(Some(env));
        spec.set_process(Some(process));
    }
}

/// `--ulimit`s as the process's rlimits, over any the spec had of the
/// same type.
pub(super) fn ulimit_spec(
    spec: &mut oci_spec::runtime::Spec,
    ulimits: &[crate::state::Ulimit],
) -> std::result::Result<(), String> {
    if ulimits.is_empty() {
        return Ok(());
    }
    if let Some(mut process) = spec.process().clone() {
        let mut rlimits = process.rlimits().clone().unwrap_or_default();
        for u in ulimits {
            let typ = u.rlimit_type()?;
            rlimits.retain(|r| r.typ() != typ);
            rlimits.push(
                oci_spec::runtime::PosixRlimitBuilder::default()
                    .typ(typ)
                    .soft(u.soft)
                    .hard(u.hard)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        process.set_rlimits(Some(rlimits));
        spec.set_process(Some(process));
    }
    Ok(())
}

/// A bind asked to propagate (`rshared`, `rslave`) only does if its source
/// is on a mount that has a peer group to join: otherwise it would quietly
/// act as a private bind. The mount of `source` is the deepest mount point
/// above it in this process's mountinfo.
fn joined_to_host(source: &std::path::Path, wanted: &str) -> std::io::Result<()> {
    use procfs::process::MountOptFields;
    let infos = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map_err(std::io::Error::other)?;
    let source = std::fs::canonicalize(source)?;
    let Some(mount) = infos
        .into_iter()
        .filter(|m| source.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
    else {
        return Ok(());
    };
    let shared = mount
        .opt_fields
        .iter()
        .any(|f| matches!(f, MountOptFields::Shared(_)));
    let slave = mount
        .opt_fields
        .iter()
        .any(|f| matches!(f, MountOptFields::Master(_)));
    if shared || (wanted == "rslave" && slave) {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "bind {}: {wanted} needs a shared mount, and {} (the mount it is on) is {}",
        source.display(),
        mount.mount_point.display(),
        if slave { "a slave only" } else { "private" }
    )))
}
