//! `/volumes`: create, list (with filters), inspect, remove and prune
//! named volumes (Docker's `local` driver: plain directories).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bollard_stubs::models::{
    MountPoint, Volume as ApiVolume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse,
    VolumeScopeEnum,
};
use hyper::body::Incoming;
use hyper::{Method, Request};

use super::containers::Filters;
use super::{flag, json_response, parse_json, parse_query, read_body, ApiError, ApiResult};
use crate::engine::Engine;
use crate::volumes::Volume;

pub async fn route(engine: &Arc<Engine>, req: Request<Incoming>, rest: &[&str]) -> ApiResult {
    let q = parse_query(req.uri().query());
    match (req.method().clone(), rest) {
        (Method::GET, []) => list(engine, q.get("filters").map(String::as_str)),
        (Method::POST, ["create"]) => {
            let body = read_body(req, 1 << 20).await?;
            let c: VolumeCreateRequest = parse_json(&body, "invalid volume config")?;
            if c.cluster_volume_spec.is_some() {
                return Err(ApiError::bad(
                    "ClusterVolumeSpec: cluster volumes need swarm, which this engine has not",
                ));
            }
            let name = match c.name.filter(|n| !n.is_empty()) {
                Some(n) => n,
                None => hex::encode(random_bytes()?),
            };
            let options: BTreeMap<_, _> = c.driver_opts.unwrap_or_default().into_iter().collect();
            let labels: BTreeMap<_, _> = c.labels.unwrap_or_default().into_iter().collect();
            let (v, made) = engine.volumes().create(
                &name,
                c.driver.as_deref().unwrap_or(""),
                &options,
                labels,
                false,
            )?;
            if made {
                volume_event(engine, "create", &v.name);
            }
            Ok(json_response(201, &view(engine, &v, false)))
        }
        (Method::POST, ["prune"]) => prune(engine, q.get("filters").map(String::as_str)),
        (Method::GET, [name]) => {
            let v = engine.volumes().get(name)?;
            Ok(json_response(200, &view(engine, &v, false)))
        }
        (Method::DELETE, [name]) => {
            match engine.volumes().get(name) {
                Err(_) if flag(&q, "force") => return Ok(super::empty(204)),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            let users = engine.volume_users(name);
            if !users.is_empty() {
                return Err(ApiError::new(
                    409,
                    format!("remove {name}: volume is in use - [{}]", users.join(", ")),
                ));
            }
            engine.volumes().remove(name)?;
            volume_event(engine, "destroy", name);
            Ok(super::empty(204))
        }
        (m, _) => Err(super::no_route(&m, &format!("volumes/{}", rest.join("/")))),
    }
}

fn volume_event(engine: &Engine, action: &str, name: &str) {
    let attrs = BTreeMap::from([("driver".to_owned(), "local".to_owned())]);
    engine.events().emit("volume", action, name, attrs);
}

fn random_bytes() -> Result<[u8; 32], ApiError> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(ApiError::internal)?;
    Ok(buf)
}

/// A volume as the API shows it; with `usage`, its size and users.
pub fn view(engine: &Engine, v: &Volume, usage: bool) -> ApiVolume {
    ApiVolume {
        name: v.name.clone(),
        driver: "local".into(),
        mountpoint: engine.volumes().mountpoint(&v.name).display().to_string(),
        created_at: Some(v.created.clone()),
        labels: v.labels.clone().into_iter().collect(),
        scope: Some(VolumeScopeEnum::LOCAL),
        options: HashMap::new(),
        usage_data: usage.then(|| bollard_stubs::models::VolumeUsageData {
            size: engine.volumes().size(&v.name) as i64,
            ref_count: engine.volume_users(&v.name).len() as i64,
        }),
        ..Default::default()
    }
}

/// A container's mounts as inspect and `ps` show them: binds, volumes,
/// tmpfs.
pub fn mount_points(engine: &Engine, r: &crate::state::Record) -> Vec<MountPoint> {
    let mut out = Vec::new();
    for b in r.def.binds.iter().flatten() {
        out.push(MountPoint {
            typ: Some("bind".into()),
            source: Some(b.source.clone()),
            destination: Some(b.target.clone()),
            mode: Some(if b.readonly { "ro" } else { "" }.into()),
            rw: Some(!b.readonly),
            propagation: Some("rprivate".into()),
            ..Default::default()
        });
    }
    for v in &r.api.volumes {
        out.push(MountPoint {
            typ: Some("volume".into()),
            name: Some(v.name.clone()),
            source: Some(engine.volumes().mountpoint(&v.name).display().to_string()),
            destination: Some(v.target.clone()),
            driver: Some("local".into()),
            mode: Some(if v.readonly { "ro" } else { "z" }.into()),
            rw: Some(!v.readonly),
            propagation: Some(String::new()),
        });
    }
    for t in &r.api.tmpfs {
        let ro = t.options.iter().any(|o| o == "ro");
        out.push(MountPoint {
            typ: Some("tmpfs".into()),
            source: Some(String::new()),
            destination: Some(t.target.clone()),
            mode: Some(t.options.join(",")),
            rw: Some(!ro),
            propagation: Some(String::new()),
            ..Default::default()
        });
    }
    out
}

/// Docker's `label` filter: `KEY` or `KEY=VALUE` (`label!=` for prune).
pub(super) fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(filter),
    }
}

fn dangling(engine: &Engine, name: &str) -> bool {
    engine.volume_users(name).is_empty()
}

fn list(engine: &Arc<Engine>, filters: Option<&str>) -> ApiResult {
    let f = Filters::parse(filters, &["name", "label", "dangling", "driver"])?;
    let volumes = engine
        .volumes()
        .list()
        .into_iter()
        .filter(|v| f.matches("name", |n| v.name.contains(n)))
        .filter(|v| f.matches("label", |l| label_matches(&v.labels, l)))
        .filter(|_| f.matches("driver", |d| d == "local"))
        .filter(|v| {
            f.matches("dangling", |d| {
                let want = matches!(d, "1" | "true");
                dangling(engine, &v.name) == want
            })
        })
        .map(|v| view(engine, &v, false))
        .collect();
    Ok(json_response(
        200,
        &VolumeListResponse {
            volumes: Some(volumes),
            warnings: Some(Vec::new()),
        },
    ))
}

/// `volume prune`: unused volumes; as Docker 23's default, anonymous ones
/// only unless `all=true` is among the filters (Docker 20.10's CLI sends
/// no such filter and its daemon prunes every unused volume: so does this
/// one when the filter is absent).
fn prune(engine: &Arc<Engine>, filters: Option<&str>) -> ApiResult {
    let f = Filters::parse(filters, &["label", "label!", "all"])?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for v in engine.volumes().list() {
        if !dangling(engine, &v.name)
            || !f.matches("label", |l| label_matches(&v.labels, l))
            || (f.has("label!") && f.matches("label!", |l| label_matches(&v.labels, l)))
            || (f.has("all") && f.matches("all", |a| matches!(a, "0" | "false")) && !v.anonymous)
        {
            continue;
        }
        let size = engine.volumes().size(&v.name);
        if engine.volumes().remove(&v.name).is_ok() {
            volume_event(engine, "destroy", &v.name);
            reclaimed += size;
            deleted.push(v.name);
        }
    }
    Ok(json_response(
        200,
        &VolumePruneResponse {
            volumes_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed as i64),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_filters_match_keys_and_pairs() {
        let labels = BTreeMap::from([("app".to_owned(), "web".to_owned())]);
        assert!(label_matches(&labels, "app"));
        assert!(label_matches(&labels, "app=web"));
        assert!(!label_matches(&labels, "app=db"));
        assert!(!label_matches(&labels, "tier"));
    }
}
