//! `/containers/...`: list, create, inspect, the lifecycle (start, stop,
//! restart, kill, wait, remove); logs, attach and resize are in
//! [`super::attach`], exec in [`super::exec`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard_stubs::models::{
    ContainerConfig, ContainerCreateResponse, ContainerInspectResponse, ContainerState,
    ContainerStateStatusEnum, ContainerSummary, ContainerSummaryHostConfig,
    ContainerSummaryNetworkSettings, ContainerSummaryStateEnum, ContainerWaitExitError,
    ContainerWaitResponse, HostConfig, RestartPolicy, RestartPolicyNameEnum,
};
use bytes::Bytes;
use corral_config::service::{HostNamespace, Restart};
use corral_config::ServiceDef;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::{json, Value};

mod inspect;

use super::networks;
use super::streams;
use super::{flag, json_response, parse_query, read_body, ApiError, ApiResult, Query};
use crate::engine::{Engine, Snapshot};
use crate::network::NetworkStore;
use crate::state::{RunState, Status};

pub async fn route(engine: &Arc<Engine>, req: Request<Incoming>, rest: &[&str]) -> ApiResult {
    let q = parse_query(req.uri().query());
    match (req.method().clone(), rest) {
        (Method::GET, ["json"]) => list(engine, &q),
        (Method::POST, ["create"]) => create(engine, req, &q).await,
        (Method::POST, ["prune"]) => prune(engine, &q).await,
        (method, [reference, action @ ..]) => {
            let id = engine.resolve(reference)?;
            match (&method, action) {
                (&Method::POST, ["attach"]) => super::attach::attach(engine, req, &id, &q),
                (&Method::POST, ["exec"]) => super::exec::create(engine, req, &id).await,
                (&Method::GET | &Method::HEAD | &Method::PUT, ["archive"]) => {
                    super::archive::route(engine, req, &id).await
                }
                _ => container_action(engine, &method, &id, action, &q).await,
            }
        }
        (m, _) => Err(super::no_route(&m, "containers")),
    }
}

async fn create(engine: &Arc<Engine>, req: Request<Incoming>, q: &Query) -> ApiResult {
    let body = read_body(req, 1 << 20).await?;
    let c = super::create::parse(&body)?;
    let name = q.get("name").map(String::as_str).filter(|n| !n.is_empty());
    let name = name.map(|n| n.strip_prefix('/').unwrap_or(n));
    let mut warnings = c.warnings;
    let id = engine.create(name, c.def, false, c.fields, &mut warnings)?;
    Ok(json_response(
        201,
        &ContainerCreateResponse { id, warnings },
    ))
}

async fn container_action(
    engine: &Arc<Engine>,
    method: &Method,
    id: &str,
    rest: &[&str],
    q: &Query,
) -> ApiResult {
    let timeout = match q.get("t") {
        Some(t) => {
            let secs = t
                .parse::<i64>()
                .map_err(|_| ApiError::bad(format!("t={t:?} is not a number of seconds")))?;
            // -1 is Docker's "wait forever".
            Some(if secs < 0 {
                Duration::from_secs(u64::from(u32::MAX))
            } else {
                Duration::from_secs(secs as u64)
            })
        }
        None => None,
    };
    match (method, rest) {
        (&Method::GET, ["json"]) => {
            let snap = engine.inspect(id)?;
            let image = engine.images().get(&snap.record.image_id).ok();
            let reasons = image.as_ref().and_then(|image| {
                image
                    .label(corral_image::labels::REASONS)
                    .map(str::to_owned)
            });
            let net = inspect::NetView {
                networks: engine.networks(),
                netns: engine.netns_of(id),
            };
            let mut v = inspect::inspect(&snap, reasons.as_deref(), &net);
            // Docker's Config has the image's defaults merged in: its
            // ENTRYPOINT unless one was given, its CMD unless a command or
            // an entrypoint was (what `docker-compose ps` shows).
            if let Some(c) = image.as_ref().and_then(|i| i.config.config().clone()) {
                let d = &snap.record.def;
                if d.entrypoint.is_none() {
                    v["Config"]["Entrypoint"] = json!(c.entrypoint());
                    if d.command.is_none() {
                        v["Config"]["Cmd"] = json!(c.cmd());
                    }
                }
            }
            v["Mounts"] = serde_json::to_value(super::volumes::mount_points(engine, &snap.record))
                .unwrap_or_default();
            Ok(json_response(200, &v))
        }
        (&Method::POST, ["start"]) => {
            engine.start(id).await?;
            Ok(super::empty(204))
        }
        (&Method::POST, ["stop"]) => {
            engine.stop(id, timeout).await?;
            Ok(super::empty(204))
        }
        (&Method::POST, ["restart"]) => {
            engine.restart(id, timeout).await?;
            Ok(super::empty(204))
        }
        (&Method::POST, ["kill"]) => {
            let signal = parse_signal(q.get("signal").map(String::as_str).unwrap_or("SIGKILL"))?;
            engine.kill(id, signal)?;
            Ok(super::empty(204))
        }
        (&Method::POST, [action @ ("pause" | "unpause")]) => {
            engine.pause(id, *action == "pause").await?;
            Ok(super::empty(204))
        }
        (&Method::POST, ["wait"]) => wait(engine, id, q),
        (&Method::GET, ["logs"]) => super::attach::logs(engine, id, q),
        (&Method::POST, ["resize"]) => super::attach::resize(engine, id, q),
        (&Method::GET, ["stats"]) => super::stats::stats(engine, id, q),
        (&Method::GET, ["top"]) => super::top::top(engine, id, q),
        (&Method::POST, ["rename"]) => {
            let name = q.get("name").map(String::as_str).unwrap_or("");
            if name.is_empty() {
                return Err(ApiError::bad("rename: name= is required"));
            }
            engine.rename(id, name)?;
            Ok(super::empty(204))
        }
        (&Method::DELETE, []) => {
            if flag(q, "link") {
                return Err(ApiError::bad(
                    "link=1: links are not supported by this engine",
                ));
            }
            engine
                .remove_with(id, flag(q, "force"), flag(q, "v"))
                .await?;
            Ok(super::empty(204))
        }
        (_, [action])
            if [
                "top", "archive", "pause", "unpause", "export", "changes", "update",
            ]
            .contains(action) =>
        {
            Err(super::not_yet(
                method,
                &format!("/containers/{id}/{action}"),
            ))
        }
        _ => Err(super::no_route(
            method,
            &format!("containers/{id}/{}", rest.join("/")),
        )),
    }
}

/// `wait`: the headers go out at once, the exit code when it comes.
fn wait(engine: &Arc<Engine>, id: &str, q: &Query) -> ApiResult {
    let condition = q
        .get("condition")
        .map(String::as_str)
        .filter(|c| !c.is_empty())
        .unwrap_or("not-running")
        .to_owned();
    if !matches!(condition.as_str(), "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad(format!(
            "condition={condition:?}: use not-running, next-exit or removed"
        )));
    }
    let engine = engine.clone();
    let id = id.to_owned();
    Ok(streams::later(
        "application/json",
        move |mut tx| async move {
            let code = match condition.as_str() {
                "next-exit" => engine.wait(&id, true).await,
                "removed" => engine.wait_removed(&id).await,
                _ => engine.wait(&id, false).await,
            };
            let answer = match code {
                Ok(code) => ContainerWaitResponse {
                    status_code: code,
                    error: None,
                },
                Err(e) => ContainerWaitResponse {
                    status_code: -1,
                    error: Some(ContainerWaitExitError {
                        message: Some(e.to_string()),
                    }),
                },
            };
            let text = serde_json::to_string(&answer).unwrap_or_default() + "\n";
            let _ = tx.send_data(Bytes::from(text)).await;
        },
    ))
}

pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, ApiError> {
    use std::str::FromStr;
    let bad = || ApiError::bad(format!("invalid signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| bad())
}

// What the listing and inspect show.

fn human_ago(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

fn since(t: Option<&str>) -> Option<Duration> {
    let t = humantime::parse_rfc3339_weak(t?).ok()?;
    SystemTime::now().duration_since(t).ok()
}

/// Docker's human status line: "Up 5 minutes", "Exited (0) 3 seconds ago".
pub fn status_line(s: &RunState) -> String {
    match s.status {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}{}",
            human_ago(since(s.started_at.as_deref()).unwrap_or_default()),
            if s.paused { " (Paused)" } else { "" }
        ),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code.unwrap_or(0),
            human_ago(since(s.finished_at.as_deref()).unwrap_or_default())
        ),
        Status::Exited => format!(
            "Exited ({}){} {} ago",
            s.exit_code.unwrap_or(0),
            if s.oom_killed { " OOM killed" } else { "" },
            human_ago(since(s.finished_at.as_deref()).unwrap_or_default())
        ),
    }
}

fn shares(def: &ServiceDef, ns: HostNamespace) -> bool {
    def.host_namespaces.iter().flatten().any(|n| *n == ns)
}

pub(super) fn labels(snap: &Snapshot) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = snap.record.api.labels.clone().into_iter().collect();
    if snap.record.service {
        l.insert("io.corral.service".into(), snap.record.name.clone());
    }
    l
}

pub(super) fn summary(
    snap: &Snapshot,
    bridge: Option<&NetworkStore>,
    mounts: Vec<bollard_stubs::models::MountPoint>,
) -> ContainerSummary {
    let r = &snap.record;
    let running = r.state.status == Status::Running;
    let argv = crate::spec::argv(&r.def, &oci_spec::image::Config::default());
    ContainerSummary {
        id: Some(r.id.clone()),
        names: Some(vec![format!("/{}", r.name)]),
        image: Some(r.image.clone()),
        image_id: Some(r.image_id.clone()),
        command: Some(argv.join(" ")),
        created: Some(super::images::unix_time(Some(&r.created))),
        ports: Some(networks::summary_ports(r, running)),
        labels: Some(labels(snap)),
        state: Some(match r.state.status {
            Status::Created => ContainerSummaryStateEnum::CREATED,
            Status::Running if r.state.paused => ContainerSummaryStateEnum::PAUSED,
            Status::Running => ContainerSummaryStateEnum::RUNNING,
            Status::Restarting => ContainerSummaryStateEnum::RESTARTING,
            Status::Exited => ContainerSummaryStateEnum::EXITED,
        }),
        status: Some(status_line(&r.state)),
        host_config: Some(ContainerSummaryHostConfig {
            network_mode: Some(networks::network_mode(r)),
            ..Default::default()
        }),
        network_settings: Some(ContainerSummaryNetworkSettings {
            networks: Some(networks::networks(r, bridge, running)),
        }),
        mounts: Some(mounts),
        ..Default::default()
    }
}

/// `docker ps --filter` as maps (`{"status":{"exited":true}}`, the CLI)
/// or lists (`{"label":["k=v"]}`, docker-py and compose).
#[derive(Debug, Default)]
pub struct Filters(HashMap<String, Vec<String>>);

impl Filters {
    pub fn parse(text: Option<&str>, known: &[&str]) -> Result<Self, ApiError> {
        let Some(text) = text.filter(|t| !t.is_empty()) else {
            return Ok(Self::default());
        };
        let v: Value =
            serde_json::from_str(text).map_err(|e| ApiError::bad(format!("filters: {e}")))?;
        let Value::Object(o) = v else {
            return Err(ApiError::bad("filters: not a JSON object"));
        };
        let mut out = HashMap::new();
        for (k, v) in o {
            if !known.contains(&k.as_str()) {
                return Err(ApiError::bad(format!(
                    "filters: {k:?} is not a filter this engine supports ({})",
                    known.join(", ")
                )));
            }
            let values: Vec<String> = match v {
                Value::Object(m) => m
                    .into_iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(true))
                    .map(|(k, _)| k)
                    .collect(),
                Value::Array(a) => a
                    .into_iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .collect(),
                Value::String(s) => vec![s],
                other => {
                    return Err(ApiError::bad(format!(
                        "filters: {k}: {other} is not a list or a map"
                    )))
                }
            };
            out.insert(k, values);
        }
        Ok(Self(out))
    }

    /// Every value of `key` must be satisfied by one of `got`... as
    /// Docker: values of one key are alternatives, keys must all hold.
    pub fn matches(&self, key: &str, test: impl Fn(&str) -> bool) -> bool {
        match self.0.get(key) {
            None => true,
            Some(values) => values.iter().any(|v| test(v)),
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// The values given for `key`.
    pub fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or_default()
    }
}

const PS_FILTERS: &[&str] = &["id", "name", "label", "status", "exited"];

fn list(engine: &Arc<Engine>, q: &Query) -> ApiResult {
    let filters = Filters::parse(q.get("filters").map(String::as_str), PS_FILTERS)?;
    let all = flag(q, "all") || filters.has("status") || filters.has("exited");
    let limit = match q.get("limit").map(String::as_str) {
        None | Some("") | Some("-1") | Some("0") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::bad(format!("limit={n:?} is not a number")))?,
        ),
    };
    let mut list: Vec<ContainerSummary> = engine
        .list()
        .iter()
        .filter(|s| all || s.record.state.status == Status::Running)
        .filter(|s| {
            let r = &s.record;
            let labels = labels(s);
            filters.matches("id", |v| r.id.starts_with(v))
                && filters.matches("name", |v| r.name.contains(v.trim_start_matches('/')))
                && filters.matches("status", |v| v == r.state.docker_status())
                && filters.matches("exited", |v| {
                    r.state.status == Status::Exited && v.parse::<i32>().ok() == r.state.exit_code
                })
                && filters.0.get("label").is_none_or(|wanted| {
                    wanted.iter().all(|l| match l.split_once('=') {
                        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                        None => labels.contains_key(l.as_str()),
                    })
                })
        })
        .map(|s| {
            let mounts = super::volumes::mount_points(engine, &s.record);
            summary(s, engine.networks(), mounts)
        })
        .collect();
    if let Some(n) = limit {
        list.truncate(n);
    }
    Ok(json_response(200, &list))
}

/// The `until` of a prune filter as Docker's daemon reads it: a
/// duration back from now (`24h`), Unix seconds, or an RFC 3339 time.
pub fn until(value: &str) -> Result<SystemTime, ApiError> {
    if let Ok(d) = humantime::parse_duration(value) {
        return Ok(SystemTime::now() - d);
    }
    if let Ok(secs) = value.parse::<f64>() {
        if secs >= 0.0 {
            return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_rfc3339_weak(value).map_err(|_| {
        ApiError::bad(format!(
            "until={value:?}: not a duration (24h), a Unix time or an RFC 3339 time"
        ))
    })
}

/// Whether something created at `created` (RFC 3339) and labelled
/// `labels` is kept out of a prune by its `until`, `label` and `label!`
/// filters.
pub fn prune_spares(
    f: &Filters,
    created: Option<&str>,
    labels: &HashMap<String, String>,
) -> Result<bool, ApiError> {
    let label = |l: &str| match l.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(l),
    };
    if !f.matches("label", label) || (f.has("label!") && f.matches("label!", label)) {
        return Ok(true);
    }
    if let Some(bounds) = f.0.get("until") {
        let created = created
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for b in bounds {
            if created >= until(b)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

pub const PRUNE_FILTERS: &[&str] = &["until", "label", "label!"];

/// `container prune`: every container not running (created or exited),
/// with its filesystem; not the system config's services.
async fn prune(engine: &Arc<Engine>, q: &Query) -> ApiResult {
    let f = Filters::parse(q.get("filters").map(String::as_str), PRUNE_FILTERS)?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for snap in engine.list() {
        let r = &snap.record;
        if r.service || matches!(r.state.status, Status::Running | Status::Restarting) {
            continue;
        }
        if prune_spares(&f, Some(&r.created), &labels(&snap))? {
            continue;
        }
        let size = engine.rw_size(&r.id);
        match engine.remove(&r.id, false).await {
            Ok(()) => {
                reclaimed += size;
                deleted.push(r.id.clone());
            }
            // Started meanwhile, or gone: not pruned, as with Docker.
            Err(e) => log::debug!("prune: {}: {e}", r.name),
        }
    }
    Ok(json_response(
        200,
        &bollard_stubs::models::ContainerPruneResponse {
            containers_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed as i64),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn filters_come_as_maps_and_lists() {
        let f = Filters::parse(Some(r#"{"status":{"exited":true}}"#), PS_FILTERS).unwrap();
        assert!(f.matches("status", |v| v == "exited"));
        assert!(!f.matches("status", |v| v == "running"));
        let f = Filters::parse(Some(r#"{"label":["a=b","c"]}"#), PS_FILTERS).unwrap();
        assert_eq!(f.0["label"], ["a=b", "c"]);
        assert!(f.matches("name", |_| false), "an absent key holds");
        let e = Filters::parse(Some(r#"{"ancestor":["x"]}"#), PS_FILTERS).unwrap_err();
        assert!(
            e.message.contains("\"ancestor\" is not a filter"),
            "{}",
            e.message
        );
    }

    #[test]
    fn status_lines() {
        let mut s = RunState::default();
        assert_eq!(status_line(&s), "Created");
        s.status = Status::Exited;
        s.exit_code = Some(137);
        s.oom_killed = true;
        s.finished_at = Some(
            humantime::format_rfc3339(SystemTime::now() - Duration::from_secs(125)).to_string(),
        );
        assert_eq!(status_line(&s), "Exited (137) OOM killed 2 minutes ago");
    }
}
