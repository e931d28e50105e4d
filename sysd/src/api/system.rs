//! `_ping`, `version` and `info`: what every client asks first; and
//! `system df`.
//!
//! The CLI reads the API version and OS from `_ping`'s headers (set on
//! every answer by `api::handle`); without `API-Version` it falls back to
//! 1.24, without `OSType` `run --device` fails. docker-py refuses an engine
//! whose `version` has no `ApiVersion`; `docker info` exits 1 on
//! `SecurityOptions` not shaped `name=...,profile=...`.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{
    LocalNodeState, SwarmInfo, SystemInfo, SystemInfoCgroupDriverEnum, SystemInfoCgroupVersionEnum,
    SystemVersion, SystemVersionComponents, SystemVersionPlatform,
};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response};

use super::{full, json_response, ApiResult, API_VERSION, DOCKER_VERSION, MIN_API_VERSION};
use crate::engine::Engine;
use crate::state::Status;

/// `/_ping`, `/version`, `/info`; None for another method.
pub async fn route(
    engine: &Arc<Engine>,
    req: &Request<Incoming>,
    parts: &[&str],
) -> Option<ApiResult> {
    Some(match (req.method(), parts) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => {
            let mut r = Response::new(full("OK"));
            let h = r.headers_mut();
            h.insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            // The classic builder: no BuildKit session endpoints here.
            h.insert("Builder-Version", HeaderValue::from_static("1"));
            h.insert(
                hyper::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store, must-revalidate"),
            );
            Ok(r)
        }
        (&Method::GET, ["version"]) => Ok(json_response(200, &version())),
        (&Method::GET, ["info"]) => Ok(json_response(200, &info(engine))),
        _ => return None,
    })
}

fn kernel_and_host() -> (String, String) {
    nix::sys::utsname::uname()
        .map(|u| {
            (
                u.release().to_string_lossy().into_owned(),
                u.nodename().to_string_lossy().into_owned(),
            )
        })
        .unwrap_or_default()
}

pub fn version() -> SystemVersion {
    let (kernel, _) = kernel_and_host();
    let ours = env!("CARGO_PKG_VERSION");
    SystemVersion {
        platform: Some(SystemVersionPlatform {
            name: format!("Corral {ours}"),
        }),
        components: Some(vec![SystemVersionComponents {
            name: "Engine".into(),
            version: DOCKER_VERSION.into(),
            details: Some(HashMap::from([
                ("ApiVersion".to_owned(), API_VERSION.to_owned()),
                ("MinAPIVersion".to_owned(), MIN_API_VERSION.to_owned()),
                ("Os".to_owned(), "linux".to_owned()),
                ("Arch".to_owned(), "amd64".to_owned()),
                ("KernelVersion".to_owned(), kernel.clone()),
                ("GitCommit".to_owned(), format!("corral-{ours}")),
                ("GoVersion".to_owned(), "none (Rust)".to_owned()),
                ("Experimental".to_owned(), "false".to_owned()),
                ("Implementation".to_owned(), format!("corral-sysd {ours}")),
            ])),
        }]),
        version: Some(DOCKER_VERSION.into()),
        api_version: Some(API_VERSION.into()),
        min_api_version: Some(MIN_API_VERSION.into()),
        git_commit: Some(format!("corral-{ours}")),
        go_version: Some("none (Rust)".into()),
        os: Some("linux".into()),
        arch: Some("amd64".into()),
        kernel_version: Some(kernel),
        experimental: Some(false),
        build_time: None,
    }
}

fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub fn info(engine: &Arc<Engine>) -> SystemInfo {
    let list = engine.list();
    let count = |s: Status| list.iter().filter(|c| c.record.state.status == s).count() as i64;
    let paused = list.iter().filter(|c| c.record.state.paused).count() as i64;
    let running = count(Status::Running) + count(Status::Restarting) - paused;
    let images = engine.images().list().map(|l| l.len()).unwrap_or(0) as i64;
    let (kernel, host) = kernel_and_host();
    let cfg = engine.config();
    let cgroup = |name: &str| {
        std::fs::read_to_string(cfg.cgroup_root.join("cgroup.controllers"))
            .map(|c| c.split_whitespace().any(|x| x == name))
            .unwrap_or(false)
    };
    SystemInfo {
        id: Some(format!("corral-{}", cfg.role.name)),
        containers: Some(list.len() as i64),
        containers_running: Some(running),
        containers_paused: Some(paused),
        containers_stopped: Some(list.len() as i64 - running - paused),
        images: Some(images),
        driver: Some("overlay2".into()),
        driver_status: Some(vec![vec!["Backing Filesystem".into(), "overlayfs".into()]]),
        docker_root_dir: Some(cfg.data_root.display().to_string()),
        memory_limit: Some(cgroup("memory")),
        swap_limit: Some(false),
        cpu_cfs_period: Some(cgroup("cpu")),
        cpu_cfs_quota: Some(cgroup("cpu")),
        cpu_shares: Some(cgroup("cpu")),
        cpu_set: Some(cgroup("cpuset")),
        pids_limit: Some(cgroup("pids")),
        oom_kill_disable: Some(false),
        ipv4_forwarding: Some(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "1"),
        ),
        debug: Some(log::log_enabled!(log::Level::Debug)),
        logging_driver: Some("json-file".into()),
        cgroup_driver: Some(SystemInfoCgroupDriverEnum::CGROUPFS),
        cgroup_version: Some(SystemInfoCgroupVersionEnum::_2),
        kernel_version: Some(kernel),
        operating_system: Some("Corral".into()),
        os_version: Some(env!("CARGO_PKG_VERSION").into()),
        os_type: Some("linux".into()),
        architecture: Some(std::env::consts::ARCH.into()),
        ncpu: Some(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1) as i64,
        ),
        mem_total: Some(mem_total()),
        // The key the CLI files Docker Hub credentials under.
        index_server_address: Some("https://index.docker.io/v1/".into()),
        name: Some(host),
        labels: Some(vec![format!("io.corral.role={}", cfg.role.name)]),
        experimental_build: Some(false),
        server_version: Some(DOCKER_VERSION.into()),
        default_runtime: Some("corral".into()),
        swarm: Some(SwarmInfo {
            local_node_state: Some(LocalNodeState::INACTIVE),
            node_id: Some(String::new()),
            node_addr: Some(String::new()),
            control_available: Some(false),
            error: Some(String::new()),
            ..Default::default()
        }),
        // Containers keep running while the engine restarts, and the next
        // one re-attaches to them.
        live_restore_enabled: Some(true),
        init_binary: cfg.init_binary.as_ref().map(|p| p.display().to_string()),
        security_options: Some(vec![
            "name=seccomp,profile=default".into(),
            "name=cgroupns".into(),
        ]),
        ..Default::default()
    }
}

/// `GET /system/df` in API 1.41's shape (`types.DiskUsage`), which the
/// 20.10 CLI reads; newer models split it by type.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct DiskUsage {
    layers_size: i64,
    images: Vec<bollard_stubs::models::ImageSummary>,
    containers: Vec<bollard_stubs::models::ContainerSummary>,
    volumes: Vec<bollard_stubs::models::Volume>,
    /// The classic builder keeps no cache apart from images.
    build_cache: Vec<serde_json::Value>,
}

/// `docker system df`: images with how many containers use each and how
/// much of them is shared with other images, containers with what they
/// wrote, volumes with their size and users.
pub async fn df(engine: &Arc<Engine>) -> ApiResult {
    let engine = engine.clone();
    let usage = tokio::task::spawn_blocking(move || {
        let images = engine.images().list().map_err(super::ApiError::internal)?;
        let containers = engine.list();
        let mut layer_users: HashMap<&std::path::Path, usize> = HashMap::new();
        let mut layer_size: HashMap<&std::path::Path, u64> = HashMap::new();
        for i in &images {
            for l in &i.layers {
                *layer_users.entry(l).or_default() += 1;
                layer_size
                    .entry(l)
                    .or_insert_with(|| corral_image::dir_size(l));
            }
        }
        let image_summaries = images
            .iter()
            .map(|i| {
                let mut s = super::images::summary(i);
                s.containers = containers
                    .iter()
                    .filter(|c| c.record.image_id == i.id)
                    .count() as i64;
                s.shared_size = i
                    .layers
                    .iter()
                    .filter(|l| layer_users[l.as_path()] > 1)
                    .map(|l| layer_size[l.as_path()] as i64)
                    .sum();
                s
            })
            .collect();
        let bridge = engine.networks();
        let container_summaries = containers
            .iter()
            .map(|c| {
                let mounts = super::volumes::mount_points(&engine, &c.record);
                let mut s = super::containers::summary(c, bridge, mounts);
                let rw = engine.rw_size(&c.record.id) as i64;
                let image = images
                    .iter()
                    .find(|i| i.id == c.record.image_id)
                    .map(|i| i.size as i64)
                    .unwrap_or(0);
                s.size_rw = Some(rw);
                s.size_root_fs = Some(rw + image);
                s
            })
            .collect();
        let volumes = engine
            .volumes()
            .list()
            .iter()
            .map(|v| super::volumes::view(&engine, v, true))
            .collect();
        Ok::<_, super::ApiError>(DiskUsage {
            layers_size: layer_size.values().sum::<u64>() as i64,
            images: image_summaries,
            containers: container_summaries,
            volumes,
            build_cache: Vec::new(),
        })
    })
    .await
    .map_err(super::ApiError::internal)??;
    Ok(json_response(200, &usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_carries_what_clients_check() {
        let v = serde_json::to_value(version()).unwrap();
        assert_eq!(v["ApiVersion"], API_VERSION);
        assert_eq!(v["MinAPIVersion"], MIN_API_VERSION);
        assert_eq!(v["Os"], "linux");
        assert_eq!(v["Components"][0]["Name"], "Engine");
        assert_eq!(v["Components"][0]["Details"]["ApiVersion"], API_VERSION);
    }
}
