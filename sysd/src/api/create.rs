//! `POST /containers/create`: the Docker API's create body (bollard's
//! `ContainerCreateBody`, the swagger's own model) into a [`ServiceDef`],
//! the definition every container of either role is made from.
//!
//! Nothing the client sends is silently dropped. A field the engine acts
//! on is translated; any other field must be at its default (what the CLI
//! sends for a flag not given: null, false, 0, "", [], {}), otherwise the
//! request is refused with a 400 naming the field and the value. A field
//! that is not in the model at all (an older API's, a typo) is judged the
//! same way.

use std::collections::BTreeMap;

use bollard_stubs::models::{ContainerCreateBody, HostConfig, RestartPolicyNameEnum};
use corral_config::service::{
    Bind, ByteSize, CapName, Cpus, Device, HostNamespace, Resources, Restart,
};
use corral_config::ServiceDef;
use serde_json::Value;

use super::ApiError;

mod mounts;
use crate::network::{Mode, PortMap};
use crate::state::ApiFields;

/// Fields translated into the definition; a prefix covers what is below.
const SUPPORTED: &[&str] = &[
    "Hostname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "HostConfig.ConsoleSize",
    "Env",
    "Cmd",
    "Entrypoint",
    "Image",
    "WorkingDir",
    "Labels",
    "StopTimeout",
    "HostConfig.Binds",
    "HostConfig.Mounts",
    "HostConfig.Tmpfs",
    "Volumes",
    "HostConfig.CapAdd",
    "HostConfig.CapDrop",
    "HostConfig.Privileged",
    "HostConfig.ReadonlyRootfs",
    "HostConfig.Init",
    "HostConfig.Memory",
    "HostConfig.PidsLimit",
    "HostConfig.Ulimits",
    "HostConfig.NanoCpus",
    "HostConfig.BlkioWeight",
    "HostConfig.NetworkMode",
    "HostConfig.PidMode",
    "HostConfig.IpcMode",
    "HostConfig.UTSMode",
    "HostConfig.RestartPolicy",
    "HostConfig.Devices",
    "HostConfig.SecurityOpt",
    "HostConfig.AutoRemove",
    "HostConfig.Dns",
    "HostConfig.DnsSearch",
    "HostConfig.DnsOptions",
    "HostConfig.ExtraHosts",
    "HostConfig.PortBindings",
    "HostConfig.PublishAllPorts",
    "ExposedPorts",
    "NetworkingConfig.EndpointsConfig",
];

/// Values the CLI sends for a flag not given that are not the type's zero.
fn client_default(path: &str, v: &Value) -> bool {
    match path {
        "HostConfig.MemorySwappiness" => v.as_i64() == Some(-1),
        "HostConfig.CgroupnsMode" => v.as_str() == Some("private"),
        _ => false,
    }
}

/// A create request, translated.
#[derive(Debug)]
pub struct Create {
    pub def: ServiceDef,
    pub fields: ApiFields,
    /// Shown by the CLI as `WARNING: ...`.
    pub warnings: Vec<String>,
}

/// The definition a create body asks for, or a 400 saying which field and
/// value this engine cannot honour.
pub fn parse(bytes: &[u8]) -> Result<Create, ApiError> {
    let mut raw: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad(format!("invalid container config: {e}")))?;
    // Docker's strslice: a string is a list of one.
    if let Some(obj) = raw.as_object_mut() {
        for key in ["Cmd", "Entrypoint"] {
            if let Some(Value::String(s)) = obj.get(key) {
                let one = Value::Array(vec![Value::String(s.clone())]);
                obj.insert(key.to_owned(), one);
            }
        }
    }
    let text = raw.to_string();
    let body: ContainerCreateBody = super::parse_json(text.as_bytes(), "invalid container config")?;
    let typed = serde_json::to_value(&body).map_err(ApiError::internal)?;
    if let Some((path, value)) = not_in_model(&raw, &typed, "") {
        return Err(ApiError::bad(format!(
            "{path}: {value} is not a field this engine knows (Docker Engine API {})",
            super::API_VERSION
        )));
    }
    if let Some((path, value)) = unsupported(&typed, "") {
        return Err(ApiError::bad(format!(
            "{path}: {value} is not supported by this engine"
        )));
    }
    translate(body)
}

/// A value a client sends when the flag is not given.
fn is_default(path: &str, v: &Value) -> bool {
    if client_default(path, v) {
        return true;
    }
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.iter().all(|x| is_default("", x)),
        Value::Object(o) => o.iter().all(|(k, x)| is_default(&join(path, k), x)),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A non-default field of `raw` that the model dropped.
fn not_in_model(raw: &Value, typed: &Value, prefix: &str) -> Option<(String, String)> {
    let (Value::Object(raw), Value::Object(typed)) = (raw, typed) else {
        return None;
    };
    for (k, v) in raw {
        let path = join(prefix, k);
        match typed.get(k) {
            None if !is_default(&path, v) => return Some((path, v.to_string())),
            None => {}
            Some(t) => {
                if let Some(found) = not_in_model(v, t, &path) {
                    return Some(found);
                }
            }
        }
    }
    None
}

/// The first non-default field outside [`SUPPORTED`].
fn unsupported(v: &Value, prefix: &str) -> Option<(String, String)> {
    let Value::Object(o) = v else {
        return None;
    };
    for (k, v) in o {
        let path = join(prefix, k);
        if SUPPORTED
            .iter()
            .any(|s| *s == path || path.starts_with(&format!("{s}.")))
        {
            continue;
        }
        if is_default(&path, v) {
            continue;
        }
        if v.is_object() {
            if let Some(found) = unsupported(v, &path) {
                return Some(found);
            }
            continue;
        }
        return Some((path, v.to_string()));
    }
    None
}

fn field<T, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::bad(format!("{name}: {e}")))
}

fn translate(body: ContainerCreateBody) -> Result<Create, ApiError> {
    let image = body.image.unwrap_or_default();
    if image.is_empty() {
        return Err(ApiError::bad("Image: an image is required"));
    }
    let mut warnings = Vec::new();
    let mut def = ServiceDef {
        image: Some(image),
        restart: Some(Restart::No),
        ..Default::default()
    };
    def.command = body.cmd.filter(|c| !c.is_empty());
    // `--entrypoint ""` sends [""]: no entrypoint, and the image's is reset.
    def.entrypoint = body
        .entrypoint
        .map(|e| e.into_iter().filter(|a| !a.is_empty()).collect::<Vec<_>>());
    if let Some(env) = body.env {
        let mut map = BTreeMap::new();
        for kv in env {
            let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
            if k.is_empty() {
                return Err(ApiError::bad(format!("Env: {kv:?} has no variable name")));
            }
            map.insert(k.to_owned(), v.to_owned());
        }
        def.env = Some(map);
    }
    if let Some(dir) = body.working_dir.filter(|d| !d.is_empty()) {
        if !dir.starts_with('/') {
            return Err(ApiError::bad(format!(
                "WorkingDir: {dir:?} must be an absolute path"
            )));
        }
        def.working_dir = Some(dir);
    }
    def.user = body.user.filter(|u| !u.is_empty());
    if let Some(h) = body.hostname.filter(|h| !h.is_empty()) {
        field("Hostname", corral_config::Hostname::try_from(h.clone()))?;
        def.hostname = Some(h);
    }
    if let Some(t) = body.stop_timeout {
        let secs = u64::try_from(t)
            .map_err(|_| ApiError::bad(format!("StopTimeout: {t} must not be negative")))?;
        def.stop_timeout = Some(corral_config::Duration::from(
            std::time::Duration::from_secs(secs),
        ));
    }
    let mut fields = ApiFields {
        labels: body.labels.unwrap_or_default().into_iter().collect(),
        exposed_ports: body.exposed_ports.unwrap_or_default(),
        tty: body.tty.unwrap_or(false),
        open_stdin: body.open_stdin.unwrap_or(false),
        stdin_once: body.stdin_once.unwrap_or(false),
        attach: [
            body.attach_stdin.unwrap_or(false),
            body.attach_stdout.unwrap_or(false),
            body.attach_stderr.unwrap_or(false),
        ],
        ..Default::default()
    };
    for p in &fields.exposed_ports {
        port_key("ExposedPorts", p)?;
    }
    fields.network.mode = Mode::Bridge;
    fields.network.endpoints = vec![crate::network::Endpoint {
        name: crate::network::BRIDGE_NAME.into(),
        ..Default::default()
    }];
    if let Some(volumes) = body.volumes {
        // `-v /path`: a new anonymous volume there.
        let mut paths = volumes;
        paths.sort();
        for target in paths {
            fields.volumes.push(mounts::anonymous(&target)?);
        }
    }
    if let Some(h) = body.host_config {
        fields.auto_remove = h.auto_remove.unwrap_or(false);
        fields.console_size = match h.console_size.as_deref() {
            Some([rows, cols]) if *rows > 0 && *cols > 0 => Some((
                field("HostConfig.ConsoleSize", u16::try_from(*rows))?,
                field("HostConfig.ConsoleSize", u16::try_from(*cols))?,
            )),
            _ => None,
        };
        host_config(h, &mut def, &mut fields, &mut warnings)?;
    }
    mounts::check_targets(&def, &mut fields)?;
    if let Some(endpoints) = body.networking_config.and_then(|n| n.endpoints_config) {
        endpoints_config(&mut fields.network, endpoints)?;
    }
    Ok(Create {
        def,
        fields,
        warnings,
    })
}

/// `80/tcp` (or `80`, tcp) into the port and protocol.
fn port_key(name: &str, key: &str) -> Result<(u16, String), ApiError> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if proto != "tcp" && proto != "udp" {
        return Err(ApiError::bad(format!(
            "{name}: {key:?}: protocol {proto:?} is not supported by this engine (tcp or udp)"
        )));
    }
    if port.contains('-') {
        return Err(ApiError::bad(format!(
            "{name}: {key:?}: port ranges are not supported by this engine yet (publish each port)"
        )));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((p, proto)),
        _ => Err(ApiError::bad(format!(
            "{name}: {key:?} is not PORT/tcp or PORT/udp"
        ))),
    }
}

/// `HostConfig.PortBindings`: `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`.
fn port_bindings(map: bollard_stubs::models::PortMap) -> Result<Vec<PortMap>, ApiError> {
    const NAME: &str = "HostConfig.PortBindings";
    let mut out = Vec::new();
    let mut keys: Vec<_> = map.into_iter().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, bindings) in keys {
        let (container_port, protocol) = port_key(NAME, &key)?;
        for b in bindings.unwrap_or_default() {
            let host_ip = b.host_ip.unwrap_or_default();
            match host_ip.parse::<std::net::IpAddr>() {
                _ if host_ip.is_empty() => {}
                Ok(std::net::IpAddr::V4(_)) => {}
                Ok(_) => {
                    return Err(ApiError::bad(format!(
                        "{NAME}: {key}: host address {host_ip:?}: IPv6 is not supported by this engine yet"
                    )))
                }
                Err(_) => {
                    return Err(ApiError::bad(format!(
                        "{NAME}: {key}: {host_ip:?} is not an IP address"
                    )))
                }
            }
            let text = b.host_port.unwrap_or_default();
            let host_port = if text.is_empty() {
                0
            } else if text.contains('-') {
                return Err(ApiError::bad(format!(
                    "{NAME}: {key}: host port range {text:?} is not supported by this engine yet"
                )));
            } else {
                text.parse::<u16>().map_err(|_| {
                    ApiError::bad(format!("{NAME}: {key}: {text:?} is not a port number"))
                })?
            };
            out.push(PortMap {
                host_ip,
                host_port,
                container_port,
                protocol: protocol.clone(),
            });
        }
    }
    Ok(out)
}

/// `NetworkingConfig.EndpointsConfig`: the endpoint options (`--ip`,
/// `--network-alias`) of the network `--network` named, the only one a
/// container is created on (Docker 20.10's rule; `network connect` adds
/// more).
fn endpoints_config(
    net: &mut crate::network::Settings,
    endpoints: std::collections::HashMap<String, bollard_stubs::models::EndpointSettings>,
) -> Result<(), ApiError> {
    if endpoints.len() > 1 {
        let mut names: Vec<_> = endpoints.keys().cloned().collect();
        names.sort();
        return Err(ApiError::bad(format!(
            "Container cannot be connected to network endpoints: {} (a container is created on one network; docker network connect adds others)",
            names.join(", ")
        )));
    }
    for (name, settings) in endpoints {
        let primary = match (&net.mode, net.endpoints.first_mut()) {
            // The CLI keys the default network's options "default".
            (Mode::Bridge, Some(e))
                if e.name == name
                    || (name == "default" && e.name == crate::network::BRIDGE_NAME)
                    || settings.network_id.as_deref() == Some(e.name.as_str()) =>
            {
                e
            }
            _ => {
                return Err(ApiError::bad(format!(
                    "NetworkingConfig.EndpointsConfig: network {name:?} is not the one HostConfig.NetworkMode names ({})",
                    net.mode.docker_name()
                )))
            }
        };
        let mut v = serde_json::to_value(&settings).map_err(ApiError::internal)?;
        if let Value::Object(o) = &mut v {
            for k in ["Aliases", "IPAMConfig", "Links", "NetworkID"] {
                o.remove(k);
            }
        }
        if let Some((path, value)) = unsupported(&v, "") {
            return Err(ApiError::bad(format!(
                "NetworkingConfig.EndpointsConfig.{name}.{path}: {value} is not supported by this engine"
            )));
        }
        let asked = super::networks::endpoint_request(Some(settings))?;
        primary.aliases = asked.aliases;
        primary.ip = asked.ip;
        primary.static_ip = asked.static_ip;
    }
    Ok(())
}

fn host_config(
    h: HostConfig,
    def: &mut ServiceDef,
    fields: &mut ApiFields,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if let Some(binds) = h.binds {
        let mut host = Vec::new();
        for b in binds {
            match b.split_once(':') {
                // NAME:/path[:opts] is a named volume.
                Some((src, rest)) if !src.starts_with('/') => {
                    fields.volumes.push(mounts::volume_bind(src, rest)?)
                }
                _ => host.push(field("HostConfig.Binds", Bind::try_from(b))?),
            }
        }
        def.binds = Some(host);
    }
    if let Some(list) = h.mounts {
        for m in list {
            mounts::mount(m, def, fields)?;
        }
    }
    if let Some(tmpfs) = h.tmpfs {
        let mut tmpfs: Vec<_> = tmpfs.into_iter().collect();
        tmpfs.sort();
        for (target, options) in tmpfs {
            fields
                .tmpfs
                .push(mounts::tmpfs(&target, &options, "HostConfig.Tmpfs")?);
        }
    }
    let caps = |name: &str, v: Option<Vec<String>>| -> Result<Option<Vec<CapName>>, ApiError> {
        v.map(|v| {
            v.into_iter()
                .map(|c| field(name, CapName::try_from(c)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
    };
    def.cap_add = caps("HostConfig.CapAdd", h.cap_add)?;
    def.cap_drop = caps("HostConfig.CapDrop", h.cap_drop)?;
    def.privileged = h.privileged.filter(|p| *p);
    def.readonly_rootfs = h.readonly_rootfs.filter(|r| *r);
    def.init = h.init;

    let mut res = Resources::default();
    match h.memory.unwrap_or(0) {
        m if m < 0 => return Err(ApiError::bad("HostConfig.Memory: must not be negative")),
        0 => {}
        m if m < 6 << 20 => {
            return Err(ApiError::bad(
                "HostConfig.Memory: minimum memory limit allowed is 6MB",
            ))
        }
        m => res.memory = Some(ByteSize::bytes(m as u64)),
    }
    for u in h.ulimits.iter().flatten() {
        let (soft, hard) = (u.soft.unwrap_or(0), u.hard.unwrap_or(0));
        let name = u.name.clone().unwrap_or_default();
        if soft < 0 || hard < 0 || soft > hard {
            return Err(ApiError::bad(format!(
                "HostConfig.Ulimits: {name}: ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )));
        }
        let ulimit = crate::state::Ulimit {
            name,
            soft: soft as u64,
            hard: hard as u64,
        };
        ulimit
            .rlimit_type()
            .map_err(|e| ApiError::bad(format!("HostConfig.Ulimits: {e}")))?;
        fields.ulimits.retain(|x| x.name != ulimit.name);
        fields.ulimits.push(ulimit);
    }
    if let Some(p) = h.pids_limit.filter(|p| *p > 0) {
        res.pids =
            Some(u32::try_from(p).map_err(|_| ApiError::bad("HostConfig.PidsLimit: too large"))?);
    }
    match h.nano_cpus.unwrap_or(0) {
        n if n < 0 => return Err(ApiError::bad("HostConfig.NanoCpus: must not be negative")),
        0 => {}
        n => {
            res.cpus = Some(field(
                "HostConfig.NanoCpus",
                Cpus::try_from(n as f64 / 1e9),
            )?)
        }
    }
    match h.blkio_weight.unwrap_or(0) {
        0 => {}
        w if !(10..=1000).contains(&w) => {
            return Err(ApiError::bad(format!(
                "HostConfig.BlkioWeight: {w} is not between 10 and 1000"
            )))
        }
        w => res.io_weight = Some(w),
    }
    if res != Resources::default() {
        def.resources = Some(res);
    }

    let mut host_ns = Vec::new();
    let net = &mut fields.network;
    net.mode = match h.network_mode.as_deref().unwrap_or("") {
        "host" => {
            host_ns.push(HostNamespace::Net);
            Mode::Host
        }
        "none" => Mode::None,
        "" | "default" | "bridge" => {
            net.endpoints = vec![crate::network::Endpoint {
                name: crate::network::BRIDGE_NAME.into(),
                ..Default::default()
            }];
            Mode::Bridge
        }
        other => match other.strip_prefix("container:") {
            Some(c) if !c.is_empty() => Mode::Container(c.to_owned()),
            Some(_) => {
                return Err(ApiError::bad(
                    "HostConfig.NetworkMode: container: needs a container's name or id",
                ))
            }
            // A user-defined network, by name or id (the engine finds it).
            None => {
                net.endpoints = vec![crate::network::Endpoint {
                    name: other.to_owned(),
                    ..Default::default()
                }];
                Mode::Bridge
            }
        },
    };
    net.ports = port_bindings(h.port_bindings.unwrap_or_default())?;
    net.publish_all = h.publish_all_ports.unwrap_or(false);
    if !net.ports.is_empty() || net.publish_all {
        match &net.mode {
            Mode::Bridge => {}
            // Docker's words and behaviour for both.
            Mode::Host => {
                warnings.push("Published ports are discarded when using host network mode".into());
                net.ports.clear();
                net.publish_all = false;
            }
            m => {
                return Err(ApiError::bad(format!(
                    "HostConfig.PortBindings: conflicting options: port publishing and the {} network mode",
                    m.docker_name().split(':').next().unwrap_or_default()
                )))
            }
        }
    }
    for server in h.dns.into_iter().flatten() {
        net.dns.servers.push(server.parse().map_err(|_| {
            ApiError::bad(format!("HostConfig.Dns: {server:?} is not an IP address"))
        })?);
    }
    for (name, list, out) in [
        ("HostConfig.DnsSearch", h.dns_search, &mut net.dns.search),
        ("HostConfig.DnsOptions", h.dns_options, &mut net.dns.options),
    ] {
        for v in list.into_iter().flatten() {
            if v.is_empty() || v.contains(char::is_whitespace) {
                return Err(ApiError::bad(format!("{name}: {v:?} is not one word")));
            }
            out.push(v);
        }
    }
    for entry in h.extra_hosts.into_iter().flatten() {
        // NAME:IP, the IP possibly IPv6 (with colons of its own).
        let (name, ip) = entry.split_once(':').unwrap_or((&entry, ""));
        let ip_ok = ip == "host-gateway" || ip.parse::<std::net::IpAddr>().is_ok();
        if name.is_empty() || name.contains(char::is_whitespace) || !ip_ok {
            return Err(ApiError::bad(format!(
                "HostConfig.ExtraHosts: {entry:?} is not NAME:IP (or NAME:host-gateway)"
            )));
        }
        net.extra_hosts.push((name.to_owned(), ip.to_owned()));
    }
    if let Mode::Container(_) = net.mode {
        // Docker's words: the other container's files are used.
        if !net.dns.is_empty() {
            return Err(ApiError::bad(
                "HostConfig.Dns: conflicting options: dns and the network mode",
            ));
        }
        if !net.extra_hosts.is_empty() {
            return Err(ApiError::bad(
                "HostConfig.ExtraHosts: conflicting options: custom host-to-IP mapping and the network mode",
            ));
        }
        if def.hostname.is_some() {
            return Err(ApiError::bad(
                "Hostname: conflicting options: hostname and the network mode container:NAME (the container gets that container's)",
            ));
        }
    }
    for (name, value, ns, private) in [
        ("PidMode", &h.pid_mode, HostNamespace::Pid, &[""][..]),
        (
            "IpcMode",
            &h.ipc_mode,
            HostNamespace::Ipc,
            &["", "private", "shareable"][..],
        ),
        ("UTSMode", &h.uts_mode, HostNamespace::Uts, &[""][..]),
    ] {
        match value.as_deref().unwrap_or("") {
            "host" => host_ns.push(ns),
            v if private.contains(&v) => {}
            other => {
                return Err(ApiError::bad(format!(
                    "HostConfig.{name}: {other:?} is not supported by this engine (use \"host\" or leave it unset)"
                )))
            }
        }
    }
    if !host_ns.is_empty() {
        def.host_namespaces = Some(host_ns);
    }
    if let Some(rp) = h.restart_policy {
        let retries = rp.maximum_retry_count.unwrap_or(0);
        def.restart = Some(match rp.name.unwrap_or(RestartPolicyNameEnum::EMPTY) {
            RestartPolicyNameEnum::EMPTY | RestartPolicyNameEnum::NO => Restart::No,
            RestartPolicyNameEnum::ALWAYS => Restart::Always,
            RestartPolicyNameEnum::UNLESS_STOPPED => Restart::UnlessStopped,
            RestartPolicyNameEnum::ON_FAILURE => Restart::OnFailure,
        });
        if def.restart == Some(Restart::OnFailure) && retries > 0 {
            def.max_retries = Some(u32::try_from(retries).map_err(|_| {
                ApiError::bad(format!(
                    "HostConfig.RestartPolicy.MaximumRetryCount: {retries} is out of range"
                ))
            })?);
        }
    }
    if let Some(devices) = h.devices {
        let mut list = Vec::new();
        for d in devices {
            let host = d.path_on_host.unwrap_or_default();
            let container = d
                .path_in_container
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| host.clone());
            let perms = d
                .cgroup_permissions
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "rwm".to_owned());
            list.push(field(
                "HostConfig.Devices",
                Device::try_from(format!("{host}:{container}:{perms}")),
            )?);
        }
        def.devices = Some(list);
    }
    for opt in h.security_opt.into_iter().flatten() {
        match opt.replace(':', "=").as_str() {
            "seccomp=unconfined" => def.seccomp = Some(false),
            "systempaths=unconfined" => def.confined_paths = Some(false),
            "no-new-privileges" | "no-new-privileges=true" => {}
            other => {
                return Err(ApiError::bad(format!(
                    "HostConfig.SecurityOpt: {other:?} is not supported by this engine"
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    fn def(json: &str) -> Result<ServiceDef, ApiError> {
        parse(json.as_bytes()).map(|c| c.def)
    }

    /// What `docker create busybox echo hi` (CLI 20.10) sends: every field,
    /// mostly at its default.
    const CLI_BODY: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":[],"Cmd":["echo","hi"],"Image":"busybox","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"ConsoleSize":[0,0],"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":null,"BlkioDeviceWriteBps":null,"BlkioDeviceReadIOps":null,"BlkioDeviceWriteIOps":null,"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"KernelMemory":0,"KernelMemoryTCP":0,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":null,"Ulimits":null,"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},"NetworkingConfig":{"EndpointsConfig":{}}}"#;

    #[test]
    fn the_clis_defaults_are_not_errors() {
        let c = parse(CLI_BODY.as_bytes()).unwrap();
        assert_eq!(c.def.command.as_deref().unwrap(), ["echo", "hi"]);
        assert_eq!(c.def.restart, Some(Restart::No));
        assert!(!c.fields.auto_remove);
        assert_eq!(c.fields.network.mode, Mode::Bridge);
        assert!(c.fields.network.ports.is_empty());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn published_ports_are_read_as_the_cli_sends_them() {
        // docker run -p 8080:80 -p 127.0.0.1::53/udp --expose 9000
        let body = CLI_BODY
            .replacen(
                "\"PortBindings\":{}",
                r#""PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}],"53/udp":[{"HostIp":"127.0.0.1","HostPort":""}]}"#,
                1,
            )
            .replacen(
                "\"Volumes\":{}",
                r#""Volumes":{},"ExposedPorts":{"80/tcp":{},"53/udp":{},"9000/tcp":{}}"#,
                1,
            )
            .replacen(
                "\"EndpointsConfig\":{}",
                r#""EndpointsConfig":{"bridge":{"IPAMConfig":null,"Links":null,"Aliases":null}}"#,
                1,
            )
            .replacen("\"NetworkMode\":\"default\"", "\"NetworkMode\":\"bridge\"", 1);
        let c = parse(body.as_bytes()).unwrap();
        let n = &c.fields.network;
        assert_eq!(n.mode, Mode::Bridge);
        assert_eq!(
            n.ports,
            [
                PortMap {
                    host_ip: "127.0.0.1".into(),
                    host_port: 0,
                    container_port: 53,
                    protocol: "udp".into()
                },
                PortMap {
                    host_ip: String::new(),
                    host_port: 8080,
                    container_port: 80,
                    protocol: "tcp".into()
                },
            ]
        );
        assert_eq!(c.fields.exposed_ports.len(), 3);
    }

    #[test]
    fn resolver_settings_and_extra_hosts_are_read() {
        let c = parse(
            br#"{"Image":"b","HostConfig":{"Dns":["192.0.2.53"],"DnsSearch":["example.org"],"DnsOptions":["ndots:1"],"ExtraHosts":["db:192.0.2.7","gw:host-gateway","v6:fd00::1"]}}"#,
        )
        .unwrap();
        let n = &c.fields.network;
        assert_eq!(
            n.dns.servers,
            ["192.0.2.53".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(n.dns.search, ["example.org"]);
        assert_eq!(n.dns.options, ["ndots:1"]);
        assert_eq!(
            n.extra_hosts[1],
            ("gw".to_owned(), "host-gateway".to_owned())
        );
        assert_eq!(n.extra_hosts[2], ("v6".to_owned(), "fd00::1".to_owned()));
        for (body, needle) in [
            (
                r#"{"Dns":["nine"]}"#,
                "HostConfig.Dns: \"nine\" is not an IP address",
            ),
            (
                r#"{"ExtraHosts":["db"]}"#,
                "HostConfig.ExtraHosts: \"db\" is not NAME:IP",
            ),
            (
                r#"{"NetworkMode":"container:x","Dns":["192.0.2.1"]}"#,
                "conflicting options: dns and the network mode",
            ),
        ] {
            let body = format!(r#"{{"Image":"b","HostConfig":{body}}}"#);
            let e = parse(body.as_bytes()).unwrap_err().message;
            assert!(e.contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn network_modes_and_their_conflicts() {
        let mode = |m: &str| {
            let body = format!(r#"{{"Image":"b","HostConfig":{{"NetworkMode":"{m}"}}}}"#);
            parse(body.as_bytes()).map(|c| c.fields.network.mode)
        };
        assert_eq!(mode("none").unwrap(), Mode::None);
        assert_eq!(mode("host").unwrap(), Mode::Host);
        assert_eq!(
            mode("container:web").unwrap(),
            Mode::Container("web".into())
        );
        assert_eq!(mode("mynet").unwrap(), Mode::Bridge);
        assert!(mode("container:").is_err());
        let ports = r#""PortBindings":{"80/tcp":[{"HostPort":"8080"}]}"#;
        let with_ports = |m: &str| {
            let body = format!(r#"{{"Image":"b","HostConfig":{{"NetworkMode":"{m}",{ports}}}}}"#);
            parse(body.as_bytes())
        };
        let host = with_ports("host").unwrap();
        assert!(host.fields.network.ports.is_empty());
        assert!(host.warnings[0].contains("discarded"));
        let e = with_ports("none").unwrap_err().message;
        assert!(
            e.contains("port publishing and the none network mode"),
            "{e}"
        );
        let e = parse(br#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"web":{}}}}"#)
            .unwrap_err()
            .message;
        assert!(e.contains("network \"web\" is not the one"), "{e}");
        let e = parse(br#"{"Image":"b","HostConfig":{"NetworkMode":"app"},"NetworkingConfig":{"EndpointsConfig":{"app":{"MacAddress":"02:00:00:00:00:01"}}}}"#)
            .unwrap_err()
            .message;
        assert!(e.contains("EndpointsConfig.app.MacAddress"), "{e}");
        let e = parse(br#"{"Image":"b","HostConfig":{"NetworkMode":"app"},"NetworkingConfig":{"EndpointsConfig":{"app":{},"other":{}}}}"#)
            .unwrap_err()
            .message;
        assert!(e.contains("endpoints: app, other"), "{e}");
        // A user-defined network with its aliases and address: the engine
        // finds the network and checks the address at create.
        let c = parse(br#"{"Image":"b","HostConfig":{"NetworkMode":"app"},"NetworkingConfig":{"EndpointsConfig":{"app":{"Aliases":["db"],"IPAMConfig":{"IPv4Address":"10.1.0.9"}}}}}"#)
            .unwrap();
        let n = &c.fields.network;
        assert_eq!(n.mode, Mode::Bridge);
        assert_eq!(n.endpoints[0].name, "app");
        assert_eq!(n.endpoints[0].aliases, ["db"]);
        assert_eq!(n.endpoints[0].ip, Some("10.1.0.9".parse().unwrap()));
        assert!(n.endpoints[0].static_ip);
        for (bindings, needle) in [
            (r#"{"80-81/tcp":[{"HostPort":"1"}]}"#, "port ranges"),
            (r#"{"80/sctp":[{"HostPort":"1"}]}"#, "sctp"),
            (
                r#"{"80/tcp":[{"HostPort":"x"}]}"#,
                "\"x\" is not a port number",
            ),
            (r#"{"80/tcp":[{"HostIp":"::","HostPort":"1"}]}"#, "IPv6"),
        ] {
            let body = format!(r#"{{"Image":"b","HostConfig":{{"PortBindings":{bindings}}}}}"#);
            let e = parse(body.as_bytes()).unwrap_err().message;
            assert!(e.contains(needle), "{bindings}: {e}");
        }
    }

    #[test]
    fn unsupported_flags_are_named_with_their_value() {
        for (change, needle) in [
            (
                (
                    "\"Ulimits\":null",
                    "\"Ulimits\":[{\"Name\":\"nofile\",\"Soft\":3,\"Hard\":2}]",
                ),
                "HostConfig.Ulimits: nofile: ulimit soft limit must be less than or equal to hard limit: 3 > 2",
            ),
            (
                (
                    "\"Ulimits\":null",
                    "\"Ulimits\":[{\"Name\":\"nofiles\",\"Soft\":1,\"Hard\":2}]",
                ),
                "HostConfig.Ulimits: invalid ulimit type: nofiles",
            ),
            (
                ("\"KernelMemory\":0", "\"KernelMemory\":1048576"),
                "HostConfig.KernelMemory: 1048576 is not a field this engine knows",
            ),
            (
                ("\"OomScoreAdj\":0", "\"OomScoreAdj\":500"),
                "HostConfig.OomScoreAdj: 500 is not supported by this engine",
            ),
            (
                ("\"Links\":null", "\"Links\":[\"db:db\"]"),
                "HostConfig.Links: [\"db:db\"] is not supported",
            ),
        ] {
            let body = CLI_BODY.replacen(change.0, change.1, 1);
            assert_ne!(body, CLI_BODY, "{change:?}");
            let e = parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(needle), "{}", e.message);
        }
    }

    #[test]
    fn volumes_mounts_and_tmpfs_are_recorded() {
        let c = parse(
            br#"{"Image":"b","Volumes":{"/anon":{},"/data":{}},
            "HostConfig":{"Binds":["db:/data:ro,nocopy","/h:/h"],
            "Tmpfs":{"/run":"size=64m,mode=1777"},
            "Mounts":[{"Type":"volume","Source":"logs","Target":"/logs","ReadOnly":true},
                      {"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1048576}},
                      {"Type":"bind","Source":"/src","Target":"/dst"}]}}"#,
        )
        .unwrap();
        let v: Vec<(&str, &str, bool, bool)> = c
            .fields
            .volumes
            .iter()
            .map(|v| (v.name.as_str(), v.target.as_str(), v.readonly, v.anonymous))
            .collect();
        // The CLI sends `-v db:/data` in Volumes too: no second, anonymous one.
        assert_eq!(
            v,
            [
                ("", "/anon", false, true),
                ("db", "/data", true, false),
                ("logs", "/logs", true, false)
            ]
        );
        assert!(c.fields.volumes[1].nocopy);
        let t: Vec<(&str, String)> = c
            .fields
            .tmpfs
            .iter()
            .map(|t| (t.target.as_str(), t.options.join(",")))
            .collect();
        assert_eq!(
            t,
            [
                ("/t", "size=1048576".into()),
                ("/run", "size=64m,mode=1777".into())
            ]
        );
        let binds: Vec<&str> = c
            .def
            .binds
            .as_ref()
            .unwrap()
            .iter()
            .map(|b| b.target.as_str())
            .collect();
        assert_eq!(binds, ["/h", "/dst"]);
    }

    #[test]
    fn a_terminal_and_input_are_recorded() {
        let body = CLI_BODY
            .replacen("\"Tty\":false", "\"Tty\":true", 1)
            .replacen("\"OpenStdin\":false", "\"OpenStdin\":true", 1)
            .replacen("\"StdinOnce\":false", "\"StdinOnce\":true", 1)
            .replacen("\"AttachStdin\":false", "\"AttachStdin\":true", 1)
            .replacen("\"ConsoleSize\":[0,0]", "\"ConsoleSize\":[24,80]", 1);
        let f = parse(body.as_bytes()).unwrap().fields;
        assert!(f.tty && f.open_stdin && f.stdin_once);
        assert_eq!(f.attach, [true, true, true]);
        assert_eq!(f.console_size, Some((24, 80)));
        let plain = parse(CLI_BODY.as_bytes()).unwrap().fields;
        assert!(!plain.tty && !plain.open_stdin && plain.console_size.is_none());
    }

    #[test]
    fn create_body_maps_to_a_definition() {
        let c = parse(
            br#"{
            "Image": "busybox", "Cmd": ["sh", "-c", "true"], "Entrypoint": null,
            "Env": ["A=1", "B=x=y"], "WorkingDir": "/tmp", "User": "nobody",
            "Labels": {"a": "b"}, "AttachStdout": true, "StopTimeout": 3,
            "HostConfig": {
                "Binds": ["/data:/data:ro"], "CapAdd": ["NET_ADMIN"], "CapDrop": ["cap_mknod"],
                "Memory": 16777216, "PidsLimit": 32, "NanoCpus": 500000000, "BlkioWeight": 300,
                "NetworkMode": "host", "PidMode": "", "ReadonlyRootfs": true, "Init": true,
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                "SecurityOpt": ["seccomp=unconfined"], "AutoRemove": true
            }
        }"#,
        )
        .unwrap();
        let def = &c.def;
        assert_eq!(def.image.as_deref(), Some("busybox"));
        assert_eq!(def.command.as_deref().unwrap(), ["sh", "-c", "true"]);
        assert_eq!(def.env.as_ref().unwrap()["B"], "x=y");
        assert_eq!(def.user.as_deref(), Some("nobody"));
        assert!(def.binds.as_ref().unwrap()[0].readonly);
        assert_eq!(def.cap_drop.as_ref().unwrap()[0].as_str(), "MKNOD");
        let r = def.resources.as_ref().unwrap();
        assert_eq!(r.memory.unwrap().get(), 16 << 20);
        assert_eq!(r.pids, Some(32));
        assert_eq!(r.cpus.unwrap().get(), 0.5);
        assert_eq!(r.io_weight, Some(300));
        assert_eq!(
            def.host_namespaces.as_deref(),
            Some(&[HostNamespace::Net][..])
        );
        assert_eq!(def.restart, Some(Restart::OnFailure));
        assert_eq!(def.max_retries, Some(2));
        assert_eq!(def.seccomp, Some(false));
        assert_eq!(def.readonly_rootfs, Some(true));
        assert_eq!(def.init, Some(true));
        assert_eq!(def.stop_timeout().as_secs(), 3);
        assert!(c.fields.auto_remove);
        assert_eq!(c.fields.labels["a"], "b");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn strings_are_strslices() {
        let d = def(r#"{"Image": "busybox", "Entrypoint": "/bin/sh -c", "Cmd": "true"}"#).unwrap();
        assert_eq!(d.restart, Some(Restart::No));
        // As Docker: a string is one argument, not split.
        assert_eq!(d.entrypoint.as_deref().unwrap(), ["/bin/sh -c"]);
        assert_eq!(d.command.as_deref().unwrap(), ["true"]);
        let d = def(r#"{"Image": "busybox", "Entrypoint": [""]}"#).unwrap();
        assert_eq!(d.entrypoint.as_deref(), Some(&[][..]));
    }

    #[test]
    fn bad_create_bodies_name_the_field() {
        for (body, needle) in [
            (r#"{}"#, "Image: an image is required"),
            (
                r#"{"Image":"b","HostConfig":{"Binds":["./rel:/x"]}}"#,
                "HostConfig.Binds",
            ),
            (
                r#"{"Image":"b","HostConfig":{"CapAdd":["NET_ADMN"]}}"#,
                "HostConfig.CapAdd: unknown capability",
            ),
            (
                r#"{"Image":"b","HostConfig":{"Memory":1024}}"#,
                "minimum memory",
            ),
            (
                r#"{"Image":"b","HostConfig":{"NetworkMode":"container:"}}"#,
                "HostConfig.NetworkMode",
            ),
            (
                r#"{"Image":"b","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#,
                "HostConfig.RestartPolicy.Name",
            ),
            (r#"{"Image":"b","Env":["=x"]}"#, "Env:"),
            (r#"{"Image":"b","WorkingDir":"tmp"}"#, "WorkingDir"),
            (
                r#"{"Image":"b","HostConfig":{"SecurityOpt":["apparmor=x"]}}"#,
                "SecurityOpt",
            ),
            (
                r#"{"Image": 5}"#,
                "invalid container config: Image: invalid type",
            ),
            (
                r#"{"Image":"b","HostConfig":{"Binds":["data:/x:z"]}}"#,
                "the volume option \"z\" is not supported",
            ),
            (
                r#"{"Image":"b","HostConfig":{"Binds":["/a:/x"],"Tmpfs":{"/x":""}}}"#,
                "Duplicate mount point: /x",
            ),
            (
                r#"{"Image":"b","HostConfig":{"Tmpfs":{"/t":"size=1m,weird"}}}"#,
                "the tmpfs option \"weird\"",
            ),
            (
                r#"{"Image":"b","HostConfig":{"Mounts":[{"Type":"npipe","Target":"/p"}]}}"#,
                "HostConfig.Mounts: /p: Type",
            ),
            ("not json", "invalid container config"),
        ] {
            let e = def(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
    }
}
