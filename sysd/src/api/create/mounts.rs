//! The mounts of a create request: `-v NAME:/path[:ro]`, `-v /path`
//! (anonymous), `--mount type=bind|volume|tmpfs,...` and `--tmpfs
//! /path[:opts]`, as Docker reads them.

use bollard_stubs::models::{Mount, MountBindOptionsPropagationEnum, MountType};
use corral_config::service::Bind;
use corral_config::ServiceDef;

use super::ApiError;
use crate::state::{ApiFields, TmpfsMount, VolumeMount};

fn absolute(what: &str, target: &str) -> Result<(), ApiError> {
    if !target.starts_with('/') {
        return Err(ApiError::bad(format!(
            "{what}: the mount point {target:?} must be an absolute path"
        )));
    }
    if target == "/" {
        return Err(ApiError::bad(format!(
            "{what}: cannot mount a volume over /"
        )));
    }
    Ok(())
}

fn volume_name(what: &str, name: &str) -> Result<(), ApiError> {
    if crate::volumes::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "{what}: {name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; if you intended to pass a host directory, use an absolute path"
        )))
    }
}

/// `NAME:TARGET[:OPTIONS]` from `HostConfig.Binds`, `rest` after the name.
pub fn volume_bind(name: &str, rest: &str) -> Result<VolumeMount, ApiError> {
    let what = "HostConfig.Binds";
    volume_name(what, name)?;
    let (target, opts) = rest.split_once(':').unwrap_or((rest, ""));
    absolute(what, target)?;
    let mut v = VolumeMount {
        name: name.to_owned(),
        target: target.to_owned(),
        ..Default::default()
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => v.readonly = true,
            "rw" => v.readonly = false,
            "nocopy" => v.nocopy = true,
            other => {
                return Err(ApiError::bad(format!(
                    "{what}: {name}:{rest}: the volume option {other:?} is not supported (ro, rw, nocopy)"
                )))
            }
        }
    }
    Ok(v)
}

/// `-v /path` (`Config.Volumes`): a new anonymous volume.
pub fn anonymous(target: &str) -> Result<VolumeMount, ApiError> {
    absolute("Volumes", target)?;
    Ok(VolumeMount {
        target: target.to_owned(),
        anonymous: true,
        ..Default::default()
    })
}

pub fn tmpfs(target: &str, options: &str, what: &str) -> Result<TmpfsMount, ApiError> {
    absolute(what, target)?;
    let out = corral_config::service::tmpfs_options(target, options)
        .map_err(|e| ApiError::bad(format!("{what}: {e}")))?;
    Ok(TmpfsMount {
        target: target.to_owned(),
        options: out,
    })
}

/// One `--mount`.
pub fn mount(m: Mount, def: &mut ServiceDef, fields: &mut ApiFields) -> Result<(), ApiError> {
    let what = "HostConfig.Mounts";
    let target = m.target.clone().unwrap_or_default();
    absolute(what, &target)?;
    let readonly = m.read_only.unwrap_or(false);
    let refuse = |field: &str, value: String| {
        Err(ApiError::bad(format!(
            "{what}: {target}: {field}: {value} is not supported by this engine"
        )))
    };
    if m.image_options.is_some() {
        return refuse("ImageOptions", "an image mount".into());
    }
    match m.typ {
        Some(MountType::BIND) => {
            if m.volume_options.is_some() || m.tmpfs_options.is_some() {
                return refuse("VolumeOptions/TmpfsOptions", "with type=bind".into());
            }
            let mut recursive = true;
            if let Some(o) = m.bind_options {
                match o.propagation {
                    None | Some(MountBindOptionsPropagationEnum::EMPTY) => {}
                    Some(p) => return refuse("BindOptions.Propagation", format!("{p:?}")),
                }
                recursive = !o.non_recursive.unwrap_or(false);
                if o.create_mountpoint == Some(true) {
                    return refuse("BindOptions.CreateMountpoint", "true".into());
                }
            }
            let source = m.source.unwrap_or_default();
            let bind = Bind::try_from(format!("{source}:{target}"))
                .map_err(|e| ApiError::bad(format!("{what}: {e}")))?;
            def.binds.get_or_insert_with(Vec::new).push(Bind {
                readonly,
                recursive,
                ..bind
            });
        }
        Some(MountType::VOLUME) => {
            if m.bind_options.is_some() || m.tmpfs_options.is_some() {
                return refuse("BindOptions/TmpfsOptions", "with type=volume".into());
            }
            let name = m.source.unwrap_or_default();
            let mut nocopy = false;
            if let Some(o) = m.volume_options {
                nocopy = o.no_copy.unwrap_or(false);
                if let Some(d) = o
                    .driver_config
                    .and_then(|d| d.name)
                    .filter(|n| n != "local")
                {
                    return refuse("VolumeOptions.DriverConfig.Name", format!("{d:?}"));
                }
                if let Some(s) = o.subpath.filter(|s| !s.is_empty()) {
                    return refuse("VolumeOptions.Subpath", format!("{s:?}"));
                }
                if o.labels.is_some_and(|l| !l.is_empty()) {
                    return refuse("VolumeOptions.Labels", "labels".into());
                }
            }
            if name.is_empty() {
                let mut v = anonymous(&target)?;
                v.readonly = readonly;
                v.nocopy = nocopy;
                fields.volumes.push(v);
            } else {
                volume_name(what, &name)?;
                fields.volumes.push(VolumeMount {
                    name,
                    target,
                    readonly,
                    anonymous: false,
                    nocopy,
                });
            }
        }
        Some(MountType::TMPFS) => {
            if m.source.as_deref().is_some_and(|s| !s.is_empty()) {
                return refuse("Source", "a source for type=tmpfs".into());
            }
            let mut options = Vec::new();
            if readonly {
                options.push("ro".to_owned());
            }
            if let Some(o) = m.tmpfs_options {
                if let Some(size) = o.size_bytes.filter(|s| *s > 0) {
                    options.push(format!("size={size}"));
                }
                if let Some(mode) = o.mode.filter(|m| *m > 0) {
                    options.push(format!("mode={mode:o}"));
                }
                for kv in o.options.into_iter().flatten() {
                    options.push(kv.join("="));
                }
            }
            fields.tmpfs.push(tmpfs(&target, &options.join(","), what)?);
        }
        other => return refuse("Type", format!("{other:?}")),
    }
    Ok(())
}

/// Docker's rules across all of a container's mounts: an anonymous
/// volume where something else is mounted is dropped (the CLI sends `-v
/// /path` both ways), and two mounts on one path are refused.
pub fn check_targets(def: &ServiceDef, fields: &mut ApiFields) -> Result<(), ApiError> {
    let norm = |t: &str| t.trim_end_matches('/').to_owned();
    let mut explicit: Vec<String> = def
        .binds
        .iter()
        .flatten()
        .map(|b| norm(&b.target))
        .collect();
    explicit.extend(
        fields
            .volumes
            .iter()
            .filter(|v| !v.anonymous)
            .map(|v| norm(&v.target)),
    );
    explicit.extend(fields.tmpfs.iter().map(|t| norm(&t.target)));
    fields
        .volumes
        .retain(|v| !v.anonymous || !explicit.contains(&norm(&v.target)));
    let mut all = explicit;
    all.extend(
        fields
            .volumes
            .iter()
            .filter(|v| v.anonymous)
            .map(|v| norm(&v.target)),
    );
    all.sort();
    if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
        return Err(ApiError::bad(format!("Duplicate mount point: {}", w[0])));
    }
    Ok(())
}
