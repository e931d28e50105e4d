//! A container's volumes and tmpfs mounts: named volumes made when first
//! used (with Docker's copy-up of the image's files), anonymous ones
//! named at create, and which containers use a volume (`volume rm`
//! refuses one in use; `rm -v` and `--rm` remove a container's anonymous
//! volumes).

use std::collections::BTreeMap;
use std::path::PathBuf;

use log::warn;
use oci_spec::runtime::{MountBuilder, Spec};

use super::{new_id, Engine, EngineError, Result};
use crate::state::{ApiFields, VolumeMount};
use crate::volumes::VolumeError;

impl From<VolumeError> for EngineError {
    fn from(e: VolumeError) -> Self {
        match e {
            VolumeError::NotFound(_) => EngineError::NoSuchVolume(e.to_string()),
            VolumeError::InvalidName(_) | VolumeError::Driver(_) | VolumeError::Option(_) => {
                EngineError::Invalid(e.to_string())
            }
            VolumeError::Io(..) => EngineError::Internal(e.to_string()),
        }
    }
}

impl Engine {
    pub fn volumes(&self) -> &crate::volumes::VolumeStore {
        &self.volumes
    }

    /// The ids of the containers that mount volume `name`.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.lock()
            .containers
            .values()
            .filter(|c| c.record.api.volumes.iter().any(|v| v.name == name))
            .map(|c| c.record.id.clone())
            .collect()
    }

    /// Makes the container's volumes (new anonymous ones for the image's
    /// `VOLUME`s that nothing else covers), names them in `api`, and adds
    /// them and the tmpfs mounts to the spec. Err leaves no volume this
    /// call made behind.
    pub(super) fn mount_volumes(
        &self,
        api: &mut ApiFields,
        spec: &mut Spec,
        layers: &[PathBuf],
        image_volumes: &[String],
    ) -> Result<()> {
        let covered = |api: &ApiFields, spec: &Spec, t: &str| {
            let t = t.trim_end_matches('/');
            api.volumes
                .iter()
                .any(|v| v.target.trim_end_matches('/') == t)
                || api
                    .tmpfs
                    .iter()
                    .any(|m| m.target.trim_end_matches('/') == t)
                || spec
                    .mounts()
                    .iter()
                    .flatten()
                    .any(|m| m.destination().to_string_lossy().trim_end_matches('/') == t)
        };
        for target in image_volumes {
            if target.starts_with('/') && target != "/" && !covered(api, spec, target) {
                api.volumes.push(VolumeMount {
                    target: target.clone(),
                    anonymous: true,
                    ..Default::default()
                });
            }
        }
        let mut made = Vec::new();
        let result = (|| -> Result<()> {
            let mut mounts = spec.mounts().clone().unwrap_or_default();
            for v in &mut api.volumes {
                if v.name.is_empty() {
                    v.name = new_id()?;
                }
                let (_, created) = self.volumes.create(
                    &v.name,
                    "",
                    &BTreeMap::new(),
                    BTreeMap::new(),
                    v.anonymous,
                )?;
                let data = self.volumes.mountpoint(&v.name);
                if created {
                    made.push(v.name.clone());
                    if !v.nocopy {
                        crate::volumes::copy_up(layers, &v.target, &data).map_err(|e| {
                            EngineError::Internal(format!(
                                "copying the image's {} into volume {}: {e}",
                                v.target, v.name
                            ))
                        })?;
                    }
                }
                let mut options = vec!["rbind".to_owned(), "nosuid".to_owned(), "nodev".to_owned()];
                if v.readonly {
                    options.push("ro".to_owned());
                }
                mounts.push(
                    MountBuilder::default()
                        .destination(&v.target)
                        .typ("bind")
                        .source(data)
                        .options(options)
                        .build()
                        .map_err(|e| EngineError::Internal(e.to_string()))?,
                );
            }
            for t in &api.tmpfs {
                let mut options = vec!["nosuid".to_owned(), "nodev".to_owned()];
                options.extend(t.options.iter().cloned());
                mounts.push(
                    MountBuilder::default()
                        .destination(&t.target)
                        .typ("tmpfs")
                        .source("tmpfs")
                        .options(options)
                        .build()
                        .map_err(|e| EngineError::Internal(e.to_string()))?,
                );
            }
            // A parent before what is mounted inside it, as Docker orders
            // them (a stable sort keeps the runtime's own mounts first).
            mounts.sort_by_key(|m| m.destination().components().count());
            spec.set_mounts(Some(mounts));
            Ok(())
        })();
        if result.is_err() {
            for name in made {
                let _ = self.volumes.remove(&name);
            }
        }
        result
    }

    /// After a container is removed: its anonymous volumes, if asked.
    pub(super) fn remove_anonymous_volumes(&self, volumes: &[VolumeMount]) {
        for v in volumes.iter().filter(|v| v.anonymous) {
            if !self.volume_users(&v.name).is_empty() {
                continue;
            }
            if let Err(e) = self.volumes.remove(&v.name) {
                warn!("removing anonymous volume {}: {e}", v.name);
            }
        }
    }
}
