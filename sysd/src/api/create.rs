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
use crate::state::ApiFields;

/// Fields translated into the definition; a prefix covers what is below.
const SUPPORTED: &[&str] = &[
    "Hostname",
    "User",
    "AttachStdout",
    "AttachStderr",
    "Env",
    "Cmd",
    "Entrypoint",
    "Image",
    "WorkingDir",
    "Labels",
    "StopTimeout",
    "HostConfig.Binds",
    "HostConfig.CapAdd",
    "HostConfig.CapDrop",
    "HostConfig.Privileged",
    "HostConfig.ReadonlyRootfs",
    "HostConfig.Init",
    "HostConfig.Memory",
    "HostConfig.PidsLimit",
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
];

/// Values the CLI sends for a flag not given that are not the type's zero.
fn client_default(path: &str, v: &Value) -> bool {
    match path {
        "HostConfig.MemorySwappiness" => v.as_i64() == Some(-1),
        "HostConfig.CgroupnsMode" => v.as_str() == Some("private"),
        _ => false,
    }
}

/// What the unsupported fields a user is likeliest to hit are for.
const WHY: &[(&str, &str)] = &[
    ("Tty", "a terminal (-t) is not supported by this engine yet"),
    (
        "OpenStdin",
        "input (-i) is not supported by this engine yet",
    ),
    (
        "AttachStdin",
        "input (-i) is not supported by this engine yet",
    ),
    (
        "StdinOnce",
        "input (-i) is not supported by this engine yet",
    ),
    (
        "HostConfig.PortBindings",
        "published ports (-p) need the bridge network, which this engine does not have yet",
    ),
    (
        "HostConfig.PublishAllPorts",
        "published ports (-P) need the bridge network, which this engine does not have yet",
    ),
    (
        "HostConfig.Mounts",
        "--mount is not supported by this engine yet (use -v)",
    ),
    (
        "HostConfig.Tmpfs",
        "--tmpfs is not supported by this engine yet",
    ),
    (
        "HostConfig.Ulimits",
        "--ulimit is not supported by this engine yet",
    ),
    (
        "Volumes",
        "anonymous volumes (-v /path) are not supported by this engine yet",
    ),
];

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
        let why = WHY
            .iter()
            .find(|(p, _)| *p == path || path.starts_with(&format!("{p}.")))
            .map(|(_, w)| format!(": {w}"))
            .unwrap_or_else(|| " is not supported by this engine".to_owned());
        return Err(ApiError::bad(format!("{path}: {value}{why}")));
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
        ..Default::default()
    };
    if let Some(h) = body.host_config {
        fields.auto_remove = h.auto_remove.unwrap_or(false);
        host_config(h, &mut def, &mut warnings)?;
    } else {
        warnings.push(NO_BRIDGE.into());
    }
    Ok(Create {
        def,
        fields,
        warnings,
    })
}

const NO_BRIDGE: &str = "this engine has no bridge network yet: the container gets only a loopback interface (use --network host to share the machine's)";

fn host_config(
    h: HostConfig,
    def: &mut ServiceDef,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if let Some(binds) = h.binds {
        def.binds = Some(
            binds
                .into_iter()
                .map(|b| field("HostConfig.Binds", Bind::try_from(b)))
                .collect::<Result<_, _>>()?,
        );
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
    match h.network_mode.as_deref().unwrap_or("") {
        "host" => host_ns.push(HostNamespace::Net),
        "none" => {}
        "" | "default" | "bridge" => warnings.push(NO_BRIDGE.into()),
        other => {
            return Err(ApiError::bad(format!(
                "HostConfig.NetworkMode: {other:?} is not supported by this engine (host, none, or the default)"
            )))
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
        assert_eq!(c.warnings, [NO_BRIDGE]);
    }

    #[test]
    fn unsupported_flags_are_named_with_their_value() {
        for (change, needle) in [
            (("\"Tty\":false", "\"Tty\":true"), "Tty: true: a terminal (-t)"),
            (
                ("\"KernelMemory\":0", "\"KernelMemory\":1048576"),
                "HostConfig.KernelMemory: 1048576 is not a field this engine knows",
            ),
            (
                ("\"OomScoreAdj\":0", "\"OomScoreAdj\":500"),
                "HostConfig.OomScoreAdj: 500 is not supported by this engine",
            ),
            (
                ("\"PortBindings\":{}", "\"PortBindings\":{\"80/tcp\":[{\"HostIp\":\"\",\"HostPort\":\"8080\"}]}"),
                "HostConfig.PortBindings.80/tcp: [{\"HostIp\":\"\",\"HostPort\":\"8080\"}]: published ports",
            ),
            (
                ("\"Dns\":[]", "\"Dns\":[\"1.1.1.1\"]"),
                "HostConfig.Dns: [\"1.1.1.1\"] is not supported",
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
                r#"{"Image":"b","HostConfig":{"Binds":["rel:/x"]}}"#,
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
                r#"{"Image":"b","HostConfig":{"NetworkMode":"container:x"}}"#,
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
            ("not json", "invalid container config"),
        ] {
            let e = def(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
    }
}
