//! Service definitions: the `[services.<name>]` tables of the system config
//! and the per-image defaults they are layered on.
//!
//! Every field is optional so a definition can be a partial override: the
//! engine starts from the image's own default definition (an image label),
//! lays the config's table over it field by field ([`ServiceDef::overlay`]),
//! and then fills what is still unset with the built-in defaults
//! documented on each field.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::types::{Duration, InvalidValue};

/// A service's name: the key of its `[services.<name>]` table, the
/// container's name, and its cgroup and state directory name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(String);

crate::types::validated_string!(ServiceName);

impl ServiceName {
    pub const MAX_LEN: usize = 63;
}

impl TryFrom<String> for ServiceName {
    type Error = InvalidValue;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let Some(first) = s.chars().next() else {
            return Err(InvalidValue::new("a service name cannot be empty"));
        };
        if s.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(format!(
                "service name {s:?} is longer than {} characters",
                Self::MAX_LEN
            )));
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(InvalidValue::new(format!(
                "service name {s:?} must start with a lowercase letter or a digit"
            )));
        }
        // No dots: the name is a path component and a dotted config key.
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(InvalidValue::new(format!(
                "service name {s:?} contains {c:?}; only a-z, 0-9, '-' and '_' are allowed"
            )));
        }
        Ok(Self(s))
    }
}

/// `onboot` entries run to completion, one at a time in dependency order,
/// before any `service` starts; `service` entries are long-running and
/// supervised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Onboot,
    #[default]
    Service,
}

/// When an exited container is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Whatever the exit status (the default for services); also after
    /// the engine restarts, even when it was stopped by hand.
    #[default]
    Always,
    /// As `always`, except that a container stopped by hand stays stopped
    /// when the engine (or the machine) starts again.
    UnlessStopped,
    /// Only after a non-zero exit or a signal, at most `max-retries` times
    /// in a row.
    OnFailure,
    /// Never.
    No,
}

impl Restart {
    /// As written in the config (and as Docker names the policy).
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::UnlessStopped => "unless-stopped",
            Restart::OnFailure => "on-failure",
            Restart::No => "no",
        }
    }
}

/// A namespace a container can share with the host instead of getting its
/// own. The mount namespace is never shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostNamespace {
    Net,
    Pid,
    Ipc,
    Uts,
    Cgroup,
}

impl HostNamespace {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Net => "net",
            Self::Pid => "pid",
            Self::Ipc => "ipc",
            Self::Uts => "uts",
            Self::Cgroup => "cgroup",
        }
    }
}

/// Linux capability names, without the `CAP_` prefix, as Docker writes
/// them (`NET_ADMIN`), plus `ALL`.
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// A capability name, normalised to upper case without `CAP_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CapName(String);

impl CapName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_all(&self) -> bool {
        self.0 == "ALL"
    }
}

impl TryFrom<String> for CapName {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let upper = s.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        if bare == "ALL" || CAPABILITIES.contains(&bare) {
            Ok(Self(bare.to_owned()))
        } else {
            Err(InvalidValue::new(format!(
                "unknown capability {s:?} (names are written like \"NET_ADMIN\", or \"ALL\")"
            )))
        }
    }
}

impl From<CapName> for String {
    fn from(c: CapName) -> Self {
        c.0
    }
}

/// A byte count: an integer, or a string with a binary unit suffix
/// (`"64M"`, `"1.5G"`, `"512k"`; `b`, `k`, `m`, `g`, `t`, case-insensitive,
/// an optional trailing `b`/`ib`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(u64);

impl ByteSize {
    pub const fn bytes(n: u64) -> Self {
        Self(n)
    }
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            InvalidValue::new(format!(
                "invalid size {s:?}: write a number of bytes or a number with a unit, like \"64M\" or \"1G\""
            ))
        };
        let t = s.trim().to_ascii_lowercase();
        let t = t
            .strip_suffix("ib")
            .or_else(|| t.strip_suffix('b'))
            .unwrap_or(&t);
        let (num, mult) = match t.chars().last() {
            Some('k') => (&t[..t.len() - 1], 1u64 << 10),
            Some('m') => (&t[..t.len() - 1], 1 << 20),
            Some('g') => (&t[..t.len() - 1], 1 << 30),
            Some('t') => (&t[..t.len() - 1], 1 << 40),
            _ => (t, 1),
        };
        let value: f64 = num.trim().parse().map_err(|_| bad())?;
        if !value.is_finite() || value < 0.0 {
            return Err(bad());
        }
        let bytes = value * mult as f64;
        if bytes > u64::MAX as f64 {
            return Err(InvalidValue::new(format!("size {s:?} is too large")));
        }
        Ok(Self(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, shift) in [("G", 30), ("M", 20), ("k", 10)] {
            if n >= 1 << shift && n % (1 << shift) == 0 {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a size: a number of bytes or a string like \"64M\"")
        })? {
            Raw::Int(n) => Ok(Self(n)),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A bind mount, `"SOURCE:TARGET[:OPTIONS]"` as Docker writes it: both paths
/// absolute, options a comma-separated list of `ro`/`rw`, `norbind`, and
/// the propagation `rshared`/`rslave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Bind {
    pub source: String,
    pub target: String,
    pub readonly: bool,
    /// Without the mounts below the source (`norbind`): binding /sys
    /// then leaves out the host's cgroup tree.
    pub recursive: bool,
    /// Mounts made later under the source (or the target) also appear on
    /// the other side; `None` is Docker's default, `rprivate`.
    pub propagation: Option<Propagation>,
}

/// How mounts made after the container started travel through a bind, as
/// mount(8)'s shared subtrees define it. The source must be a shared
/// mount on the host (init makes `/mnt` and `/media` so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Both ways: what the container mounts there, the host sees too
    /// (the console, where an administrator mounts disks).
    Shared,
    /// Host to container only (the user engine, which binds on what the
    /// console mounted into its own containers).
    Slave,
}

impl Propagation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "rshared",
            Self::Slave => "rslave",
        }
    }
}

impl TryFrom<String> for Bind {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, opts) = match parts.as_slice() {
            [src, dst] => (*src, *dst, ""),
            [src, dst, opts] => (*src, *dst, *opts),
            _ => {
                return Err(InvalidValue::new(format!(
                    "bind {s:?} must be \"SOURCE:TARGET\" or \"SOURCE:TARGET:OPTIONS\" (ro, rw, norbind, rshared, rslave)"
                )))
            }
        };
        for (what, p) in [("source", source), ("target", target)] {
            if !p.starts_with('/') {
                return Err(InvalidValue::new(format!(
                    "bind {s:?}: the {what} {p:?} must be an absolute path"
                )));
            }
            if p.split('/').any(|c| c == "..") {
                return Err(InvalidValue::new(format!(
                    "bind {s:?}: the {what} {p:?} must not contain '..'"
                )));
            }
        }
        let mut readonly = false;
        let mut recursive = true;
        let mut propagation = None;
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            match opt {
                "ro" => readonly = true,
                "rw" => readonly = false,
                "norbind" => recursive = false,
                "rbind" => recursive = true,
                "rshared" => propagation = Some(Propagation::Shared),
                "rslave" => propagation = Some(Propagation::Slave),
                other => {
                    return Err(InvalidValue::new(format!(
                    "bind {s:?}: unknown option {other:?} (use ro, rw, norbind, rshared or rslave)"
                )))
                }
            }
        }
        if propagation.is_some() && !recursive {
            return Err(InvalidValue::new(format!(
                "bind {s:?}: rshared and rslave apply to a whole tree and cannot go with norbind"
            )));
        }
        Ok(Self {
            source: source.to_owned(),
            target: target.to_owned(),
            readonly,
            recursive,
            propagation,
        })
    }
}

impl From<Bind> for String {
    fn from(b: Bind) -> Self {
        let mut opts = Vec::new();
        if b.readonly {
            opts.push("ro");
        }
        if !b.recursive {
            opts.push("norbind");
        }
        if let Some(p) = b.propagation {
            opts.push(p.as_str());
        }
        if opts.is_empty() {
            format!("{}:{}", b.source, b.target)
        } else {
            format!("{}:{}:{}", b.source, b.target, opts.join(","))
        }
    }
}

/// Mount options a tmpfs may have (`--tmpfs /run:size=64m,mode=1777`),
/// shared by the system config's `tmpfs` and the Docker API's.
pub const TMPFS_OPTIONS: &[&str] = &[
    "rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime",
];
/// Options that take a value (`size=16m`).
pub const TMPFS_VALUES: &[&str] = &["size", "mode", "uid", "gid", "nr_inodes", "nr_blocks"];

/// Checks a tmpfs's comma-separated options, returning them as a list.
pub fn tmpfs_options(target: &str, options: &str) -> Result<Vec<String>, InvalidValue> {
    let mut out = Vec::new();
    for o in options.split(',').filter(|o| !o.is_empty()) {
        let key = o.split('=').next().unwrap_or(o);
        let ok = if o.contains('=') {
            TMPFS_VALUES.contains(&key)
        } else {
            TMPFS_OPTIONS.contains(&o)
        };
        if !ok {
            return Err(InvalidValue::new(format!(
                "{target}: the tmpfs option {o:?} is not supported ({}, {}=...)",
                TMPFS_OPTIONS.join(", "),
                TMPFS_VALUES.join("=..., ")
            )));
        }
        out.push(o.to_owned());
    }
    Ok(out)
}

/// A private tmpfs, `"TARGET[:OPTIONS]"` as Docker's `--tmpfs`: where a
/// service with a read-only root writes what it need not keep (always
/// `nosuid,nodev`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tmpfs {
    pub target: String,
    pub options: Vec<String>,
}

impl TryFrom<String> for Tmpfs {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let (target, opts) = s.split_once(':').unwrap_or((&s, ""));
        if !target.starts_with('/') || target.split('/').any(|c| c == "..") {
            return Err(InvalidValue::new(format!(
                "tmpfs {s:?}: the target {target:?} must be an absolute path without '..'"
            )));
        }
        let options = tmpfs_options(target, opts)
            .map_err(|e| InvalidValue::new(format!("tmpfs {s:?}: {e}")))?;
        Ok(Self {
            target: target.to_owned(),
            options,
        })
    }
}

impl From<Tmpfs> for String {
    fn from(t: Tmpfs) -> Self {
        if t.options.is_empty() {
            t.target
        } else {
            format!("{}:{}", t.target, t.options.join(","))
        }
    }
}

/// A host device made available in the container,
/// `"HOST_PATH[:CONTAINER_PATH][:PERMISSIONS]"` as Docker's `--device`:
/// permissions are a combination of `r`, `w` and `m` (default `rwm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Device {
    pub host: String,
    pub container: String,
    pub permissions: String,
}

impl TryFrom<String> for Device {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let is_perms = |p: &str| !p.is_empty() && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, permissions) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, p] if is_perms(p) => (*h, *h, *p),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => {
                return Err(InvalidValue::new(format!(
                    "device {s:?} must be \"HOST_PATH[:CONTAINER_PATH][:rwm]\""
                )))
            }
        };
        for p in [host, container] {
            if !p.starts_with("/dev/") || p.split('/').any(|c| c == "..") {
                return Err(InvalidValue::new(format!(
                    "device {s:?}: {p:?} must be a path under /dev/"
                )));
            }
        }
        if !is_perms(permissions) {
            return Err(InvalidValue::new(format!(
                "device {s:?}: permissions {permissions:?} must be made of r, w and m"
            )));
        }
        Ok(Self {
            host: host.to_owned(),
            container: container.to_owned(),
            permissions: permissions.to_owned(),
        })
    }
}

impl From<Device> for String {
    fn from(d: Device) -> Self {
        format!("{}:{}:{}", d.host, d.container, d.permissions)
    }
}

/// CPU limit in CPUs (`0.5` is half of one CPU), as Docker's `--cpus`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Cpus(f64);

impl Cpus {
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Cpus {
    type Error = InvalidValue;
    fn try_from(v: f64) -> Result<Self, Self::Error> {
        if v.is_finite() && (0.01..=1024.0).contains(&v) {
            Ok(Self(v))
        } else {
            Err(InvalidValue::new(format!(
                "cpus {v} must be between 0.01 and 1024"
            )))
        }
    }
}

impl From<Cpus> for f64 {
    fn from(c: Cpus) -> Self {
        c.0
    }
}

impl Eq for Cpus {}

/// Resource limits, enforced through the container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Resources {
    /// `memory.max`: the container is OOM-killed above it.
    pub memory: Option<ByteSize>,
    /// `pids.max`: fork fails above it.
    pub pids: Option<u32>,
    /// `cpu.max` as a number of CPUs.
    pub cpus: Option<Cpus>,
    /// Relative disk bandwidth, 10–1000 as Docker's `--blkio-weight`
    /// (default 500), written to `io.weight` on its 1–10000 scale.
    pub io_weight: Option<u16>,
}

impl Resources {
    fn overlay(&mut self, over: &Resources) {
        if over.memory.is_some() {
            self.memory = over.memory;
        }
        if over.pids.is_some() {
            self.pids = over.pids;
        }
        if over.cpus.is_some() {
            self.cpus = over.cpus;
        }
        if over.io_weight.is_some() {
            self.io_weight = over.io_weight;
        }
    }
}

/// One `[services.<name>]` table, or an image's default definition.
/// Unset fields inherit (image default, then the built-in default).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServiceDef {
    /// Whether the engine starts it at all (default true).
    pub enabled: Option<bool>,
    /// The image, by name (`busybox:latest`) or id.
    pub image: Option<String>,
    /// `onboot` or `service` (default `service`).
    pub kind: Option<Kind>,
    /// Replaces the image's entrypoint (Docker `--entrypoint`).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's command (Docker's arguments after the image).
    pub command: Option<Vec<String>>,
    /// Added to (and overriding) the image's environment.
    pub env: Option<BTreeMap<String, String>>,
    pub working_dir: Option<String>,
    /// `NAME`, `UID`, `UID:GID` or `NAME:GROUP`, resolved in the image.
    pub user: Option<String>,
    /// Defaults to the service name (unless the host's UTS namespace is shared).
    pub hostname: Option<String>,
    /// Namespaces shared with the host instead of private ones.
    pub host_namespaces: Option<Vec<HostNamespace>>,
    /// Capabilities on top of Docker's default set.
    pub cap_add: Option<Vec<CapName>>,
    /// Capabilities removed from the set (`ALL` removes every one).
    pub cap_drop: Option<Vec<CapName>>,
    /// Every capability, every device, no seccomp and writable /sys: only
    /// for services that really administer the machine. Logged at start.
    pub privileged: Option<bool>,
    /// Run under the default seccomp profile (default true).
    pub seccomp: Option<bool>,
    /// The kernel's `no_new_privs` (default true, false when privileged):
    /// no setuid program (sudo) can raise a process's privileges.
    pub no_new_privileges: Option<bool>,
    /// Mask and make read-only the /proc and /sys paths Docker does
    /// (default true); false is Docker's `systempaths=unconfined`: a
    /// writable /proc/sys, for a service that sets kernel parameters.
    pub confined_paths: Option<bool>,
    pub binds: Option<Vec<Bind>>,
    pub devices: Option<Vec<Device>>,
    /// Bind the host's whole /dev instead of a minimal private one.
    pub host_dev: Option<bool>,
    /// The image's files cannot be changed (default false; every built-in
    /// service has it, or a reason why not).
    pub readonly_rootfs: Option<bool>,
    /// Private tmpfs mounts (`"/run:mode=0755"`), for a read-only root.
    pub tmpfs: Option<Vec<Tmpfs>>,
    /// Run a minimal init (tini) as PID 1 that reaps zombies and forwards
    /// signals, like `docker run --init`.
    pub init: Option<bool>,
    pub resources: Option<Resources>,
    /// Default `always` for services and `no` for onboot entries.
    pub restart: Option<Restart>,
    /// With `restart = "on-failure"`: give up after this many failures in a
    /// row (default 5).
    pub max_retries: Option<u32>,
    /// Started after these (and stopped before them).
    pub depends_on: Option<Vec<ServiceName>>,
    /// Time between SIGTERM and SIGKILL when stopping (default 10s).
    pub stop_timeout: Option<Duration>,
}

macro_rules! overlay_fields {
    ($self:ident, $over:ident, $($f:ident),*) => {
        $( if $over.$f.is_some() { $self.$f = $over.$f.clone(); } )*
    };
}

impl ServiceDef {
    /// Lays `over` on top of `self`: every field `over` sets wins. `env`
    /// merges key by key and `resources` field by field, so a config can
    /// add one variable or one limit without repeating the image's.
    pub fn overlay(&mut self, over: &ServiceDef) {
        overlay_fields!(
            self,
            over,
            enabled,
            image,
            kind,
            entrypoint,
            command,
            working_dir,
            user,
            hostname,
            host_namespaces,
            cap_add,
            cap_drop,
            privileged,
            seccomp,
            no_new_privileges,
            confined_paths,
            binds,
            devices,
            host_dev,
            readonly_rootfs,
            tmpfs,
            init,
            restart,
            max_retries,
            depends_on,
            stop_timeout
        );
        if let Some(env) = &over.env {
            self.env
                .get_or_insert_with(BTreeMap::new)
                .extend(env.clone());
        }
        if let Some(r) = &over.resources {
            self.resources
                .get_or_insert_with(Resources::default)
                .overlay(r);
        }
    }

    /// Parses a definition on its own, e.g. from an image label.
    pub fn parse(text: &str) -> Result<Self, String> {
        let de = toml::de::Deserializer::parse(text).map_err(|e| e.to_string())?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.inner().message())
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or_default()
    }

    pub fn restart(&self) -> Restart {
        self.restart.unwrap_or(match self.kind() {
            Kind::Service => Restart::Always,
            Kind::Onboot => Restart::No,
        })
    }

    pub fn max_retries(&self) -> u32 {
        self.max_retries.unwrap_or(5)
    }

    pub fn stop_timeout(&self) -> std::time::Duration {
        self.stop_timeout
            .map(Duration::get)
            .unwrap_or(std::time::Duration::from_secs(10))
    }

    pub fn depends_on(&self) -> &[ServiceName] {
        self.depends_on.as_deref().unwrap_or_default()
    }

    /// Rules on single fields that serde cannot express. Returns the field
    /// (kebab-case) and the reason.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, argv) in [("entrypoint", &self.entrypoint), ("command", &self.command)] {
            if let Some(argv) = argv {
                if argv.iter().any(|a| a.contains('\0')) {
                    return Err((field, "arguments cannot contain NUL bytes".into()));
                }
            }
        }
        if let Some(env) = &self.env {
            for key in env.keys() {
                if key.is_empty() || key.contains('=') || key.contains('\0') {
                    return Err((
                        "env",
                        format!("{key:?} is not a valid environment variable name"),
                    ));
                }
            }
        }
        if let Some(dir) = &self.working_dir {
            if !dir.starts_with('/') {
                return Err(("working-dir", format!("{dir:?} must be an absolute path")));
            }
        }
        if let Some(h) = &self.hostname {
            crate::Hostname::try_from(h.clone()).map_err(|e| ("hostname", e.to_string()))?;
        }
        if let Some(w) = self.resources.as_ref().and_then(|r| r.io_weight) {
            if !(10..=1000).contains(&w) {
                return Err(("resources.io-weight", format!("{w} must be 10–1000")));
            }
        }
        if self.restart != Some(Restart::OnFailure) && self.max_retries.is_some() {
            return Err((
                "max-retries",
                "only applies with restart = \"on-failure\"".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        for ok in ["web", "syslog-ng", "a1", "0", "user_engine"] {
            assert!(ok.parse::<ServiceName>().is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("Web", "start with a lowercase"),
            ("a.b", "contains '.'"),
            ("a/b", "contains '/'"),
            ("-x", "start with"),
        ] {
            let e = bad.parse::<ServiceName>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!("a".repeat(64).parse::<ServiceName>().is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!("64M".parse::<ByteSize>().unwrap().get(), 64 << 20);
        assert_eq!("64mib".parse::<ByteSize>().unwrap().get(), 64 << 20);
        assert_eq!("1.5g".parse::<ByteSize>().unwrap().get(), 3 << 29);
        assert_eq!("512k".parse::<ByteSize>().unwrap().get(), 512 << 10);
        assert_eq!("100".parse::<ByteSize>().unwrap().get(), 100);
        assert_eq!(ByteSize::bytes(64 << 20).to_string(), "64M");
        assert_eq!(ByteSize::bytes(1000).to_string(), "1000");
        for bad in ["", "M", "-1M", "12 parsecs", "1e400"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tmpfs_mounts() {
        let t = Tmpfs::try_from("/run:mode=0755,size=16m".to_owned()).unwrap();
        assert_eq!(t.target, "/run");
        assert_eq!(t.options, ["mode=0755", "size=16m"]);
        assert_eq!(String::from(t), "/run:mode=0755,size=16m");
        assert_eq!(
            String::from(Tmpfs::try_from("/tmp".to_owned()).unwrap()),
            "/tmp"
        );
        for (bad, why) in [
            ("tmp", "absolute"),
            ("/a/../b", "'..'"),
            ("/tmp:exec,bogus", "\"bogus\" is not supported"),
            ("/tmp:colour=red", "\"colour=red\" is not supported"),
        ] {
            let e = Tmpfs::try_from(bad.to_owned()).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn binds() {
        let b = Bind::try_from("/run/corral:/run/corral:ro".to_owned()).unwrap();
        assert_eq!(
            (b.source.as_str(), b.target.as_str(), b.readonly),
            ("/run/corral", "/run/corral", true)
        );
        assert_eq!(String::from(b), "/run/corral:/run/corral:ro");
        assert!(!Bind::try_from("/a:/b".to_owned()).unwrap().readonly);
        assert!(Bind::try_from("/a:/b".to_owned()).unwrap().recursive);
        let sys = Bind::try_from("/sys:/sys:norbind".to_owned()).unwrap();
        assert!(!sys.recursive && !sys.readonly);
        assert_eq!(String::from(sys), "/sys:/sys:norbind");
        let both = Bind::try_from("/a:/b:norbind,ro".to_owned()).unwrap();
        assert_eq!(String::from(both), "/a:/b:ro,norbind");
        let shared = Bind::try_from("/mnt:/mnt:rshared".to_owned()).unwrap();
        assert_eq!(shared.propagation, Some(Propagation::Shared));
        assert_eq!(String::from(shared), "/mnt:/mnt:rshared");
        let slave = Bind::try_from("/mnt:/mnt:ro,rslave".to_owned()).unwrap();
        assert_eq!(slave.propagation, Some(Propagation::Slave));
        assert_eq!(String::from(slave), "/mnt:/mnt:ro,rslave");
        for (bad, why) in [
            ("/a", "SOURCE:TARGET"),
            ("a:/b", "absolute"),
            ("/a:b", "absolute"),
            ("/a:/b/../c", "'..'"),
            ("/a:/b:rx", "unknown option"),
            ("/a:/b:norbind,rshared", "cannot go with norbind"),
        ] {
            let e = Bind::try_from(bad.to_owned()).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn devices() {
        let d = Device::try_from("/dev/kmsg".to_owned()).unwrap();
        assert_eq!(
            (
                d.host.as_str(),
                d.container.as_str(),
                d.permissions.as_str()
            ),
            ("/dev/kmsg", "/dev/kmsg", "rwm")
        );
        let d = Device::try_from("/dev/ttyS0:r".to_owned()).unwrap();
        assert_eq!(
            (d.container.as_str(), d.permissions.as_str()),
            ("/dev/ttyS0", "r")
        );
        let d = Device::try_from("/dev/vda:/dev/disk0:rw".to_owned()).unwrap();
        assert_eq!(
            (d.container.as_str(), d.permissions.as_str()),
            ("/dev/disk0", "rw")
        );
        assert!(Device::try_from("/etc/passwd".to_owned()).is_err());
        assert!(Device::try_from("/dev/a:/dev/b:x".to_owned()).is_err());
    }

    #[test]
    fn capabilities_are_normalised_and_checked() {
        assert_eq!(
            CapName::try_from("cap_net_admin".to_owned())
                .unwrap()
                .as_str(),
            "NET_ADMIN"
        );
        assert!(CapName::try_from("all".to_owned()).unwrap().is_all());
        let e = CapName::try_from("NET_ADMN".to_owned())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown capability \"NET_ADMN\""), "{e}");
    }

    #[test]
    fn overlay_replaces_fields_and_merges_env_and_resources() {
        let image = ServiceDef::parse(
            r#"
command = ["syslogd", "-n"]
env = { A = "1", B = "2" }
cap-add = ["SYSLOG"]
[resources]
memory = "32M"
pids = 100
"#,
        )
        .unwrap();
        let config = ServiceDef::parse(
            r#"
image = "corral/syslog:1"
env = { B = "3" }
[resources]
memory = "64M"
"#,
        )
        .unwrap();
        let mut merged = image.clone();
        merged.overlay(&config);
        assert_eq!(merged.image.as_deref(), Some("corral/syslog:1"));
        assert_eq!(merged.command, image.command);
        let env = merged.env.unwrap();
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "3");
        let r = merged.resources.unwrap();
        assert_eq!(r.memory, Some(ByteSize::bytes(64 << 20)));
        assert_eq!(r.pids, Some(100));
    }

    #[test]
    fn defaults_depend_on_kind() {
        let s = ServiceDef::default();
        assert_eq!(s.kind(), Kind::Service);
        assert_eq!(s.restart(), Restart::Always);
        assert!(s.is_enabled());
        let o = ServiceDef {
            kind: Some(Kind::Onboot),
            ..Default::default()
        };
        assert_eq!(o.restart(), Restart::No);
        assert_eq!(o.stop_timeout(), std::time::Duration::from_secs(10));
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = ServiceDef::parse("restart = \"sometimes\"").unwrap_err();
        assert!(e.starts_with("restart: unknown variant `sometimes`"), "{e}");
        let e = ServiceDef::parse("[resources]\nmemroy = 1").unwrap_err();
        assert!(e.contains("memroy"), "{e}");
    }
}

/// Corral's built-in system services, under which the config's
/// `[services]` are laid (see `builtin-services.toml`).
pub fn builtin() -> BTreeMap<ServiceName, ServiceDef> {
    // The file is part of the build and a unit test parses it, so this
    // cannot fail at run time; an empty set is the safe answer anyway.
    toml::from_str(include_str!("builtin-services.toml")).unwrap_or_default()
}

/// The built-in services with the config's laid over them.
pub fn merged(config: &BTreeMap<ServiceName, ServiceDef>) -> BTreeMap<ServiceName, ServiceDef> {
    let mut all = builtin();
    for (name, def) in config {
        all.entry(name.clone()).or_default().overlay(def);
    }
    all
}

/// Why a set of services cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("service {service} depends on {dependency}, which is not defined")]
    Unknown {
        service: ServiceName,
        dependency: ServiceName,
    },
    #[error("dependency cycle: {}", cycle.iter().map(ServiceName::as_str).collect::<Vec<_>>().join(" → "))]
    Cycle { cycle: Vec<ServiceName> },
    #[error(
        "onboot entry {service} depends on {dependency}, a long-running service; onboot entries all finish before services start"
    )]
    OnbootOnService {
        service: ServiceName,
        dependency: ServiceName,
    },
}

impl OrderError {
    /// The service whose `depends-on` is to blame.
    pub fn service(&self) -> &ServiceName {
        match self {
            Self::Unknown { service, .. } | Self::OnbootOnService { service, .. } => service,
            // Blame the first name of the cycle: deterministic (smallest
            // name) and part of the loop.
            Self::Cycle { cycle } => &cycle[0],
        }
    }
}

/// The start order: every enabled `onboot` entry, then every enabled
/// `service`, each after everything it depends on. Among entries whose
/// dependencies are met, names sort alphabetically, so the order is the
/// same on every boot. A dependency on a disabled service is satisfied
/// (it will not run); one on a name that is not defined is an error, as is
/// a cycle. Stop order is the reverse.
pub fn start_order(
    services: &BTreeMap<ServiceName, ServiceDef>,
) -> Result<Vec<ServiceName>, OrderError> {
    for (name, def) in services {
        for dep in def.depends_on() {
            let Some(target) = services.get(dep) else {
                return Err(OrderError::Unknown {
                    service: name.clone(),
                    dependency: dep.clone(),
                });
            };
            if def.kind() == Kind::Onboot && target.kind() == Kind::Service && target.is_enabled() {
                return Err(OrderError::OnbootOnService {
                    service: name.clone(),
                    dependency: dep.clone(),
                });
            }
        }
    }
    if let Some(cycle) = find_cycle(services) {
        return Err(OrderError::Cycle { cycle });
    }
    let mut order = Vec::new();
    for kind in [Kind::Onboot, Kind::Service] {
        let mut pending: Vec<&ServiceName> = services
            .iter()
            .filter(|(_, d)| d.is_enabled() && d.kind() == kind)
            .map(|(n, _)| n)
            .collect();
        while !pending.is_empty() {
            // Cycles were ruled out, so some entry is always ready.
            let Some(i) = pending.iter().position(|n| {
                services[*n].depends_on().iter().all(|d| {
                    !services[d].is_enabled() || order.contains(d) || services[d].kind() != kind
                })
            }) else {
                break;
            };
            order.push(pending.remove(i).clone());
        }
    }
    Ok(order)
}

/// A dependency cycle, if any, starting from its smallest name.
fn find_cycle(services: &BTreeMap<ServiceName, ServiceDef>) -> Option<Vec<ServiceName>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit<'a>(
        name: &'a ServiceName,
        services: &'a BTreeMap<ServiceName, ServiceDef>,
        marks: &mut BTreeMap<&'a ServiceName, Mark>,
        stack: &mut Vec<&'a ServiceName>,
    ) -> Option<Vec<ServiceName>> {
        match marks.get(name).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::Active => {
                let start = stack.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<ServiceName> =
                    stack[start..].iter().map(|n| (*n).clone()).collect();
                cycle.push(name.clone());
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks.insert(name, Mark::Active);
        stack.push(name);
        if let Some(def) = services.get(name) {
            for dep in def.depends_on() {
                if let Some(c) = visit(dep, services, marks, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in services.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(name, services, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn builtin_services_parse_and_validate() {
        let text = include_str!("builtin-services.toml");
        let parsed: BTreeMap<ServiceName, ServiceDef> = toml::from_str(text).unwrap();
        assert_eq!(parsed, builtin());
        assert!(builtin().contains_key(&"console".parse::<ServiceName>().unwrap()));
        for def in parsed.values() {
            def.validate().unwrap();
        }
        start_order(&parsed).unwrap();
    }

    #[test]
    fn config_overlays_builtins() {
        let mut config = BTreeMap::new();
        config.insert(
            "console".parse::<ServiceName>().unwrap(),
            ServiceDef {
                enabled: Some(false),
                ..Default::default()
            },
        );
        config.insert(
            "web".parse::<ServiceName>().unwrap(),
            ServiceDef {
                image: Some("nginx".into()),
                ..Default::default()
            },
        );
        let m = merged(&config);
        let console = &m[&"console".parse::<ServiceName>().unwrap()];
        assert!(!console.is_enabled());
        assert_eq!(console.image.as_deref(), Some("console:latest"));
        assert!(m.contains_key(&"web".parse::<ServiceName>().unwrap()));
    }

    fn set(defs: &[(&str, &str, &[&str])]) -> BTreeMap<ServiceName, ServiceDef> {
        defs.iter()
            .map(|(name, kind, deps)| {
                let def = ServiceDef {
                    kind: Some(if *kind == "onboot" {
                        Kind::Onboot
                    } else {
                        Kind::Service
                    }),
                    depends_on: Some(deps.iter().map(|d| d.parse().unwrap()).collect()),
                    ..Default::default()
                };
                (name.parse().unwrap(), def)
            })
            .collect()
    }

    fn names(order: &[ServiceName]) -> Vec<&str> {
        order.iter().map(ServiceName::as_str).collect()
    }

    #[test]
    fn dependencies_first_then_alphabetical() {
        let s = set(&[
            ("console", "service", &["network", "syslog"]),
            ("network", "service", &["udev", "syslog"]),
            ("udev", "service", &["syslog"]),
            ("syslog", "service", &[]),
            ("extra", "service", &[]),
            ("modules", "onboot", &[]),
            ("fsck", "onboot", &["modules"]),
        ]);
        assert_eq!(
            names(&start_order(&s).unwrap()),
            ["modules", "fsck", "extra", "syslog", "udev", "network", "console"]
        );
    }

    #[test]
    fn services_may_depend_on_onboot_entries() {
        let s = set(&[("web", "service", &["setup"]), ("setup", "onboot", &[])]);
        assert_eq!(names(&start_order(&s).unwrap()), ["setup", "web"]);
    }

    #[test]
    fn onboot_cannot_wait_for_a_service() {
        let s = set(&[("web", "service", &[]), ("setup", "onboot", &["web"])]);
        let e = start_order(&s).unwrap_err();
        assert_eq!(e.service().as_str(), "setup");
        assert!(
            e.to_string()
                .contains("onboot entries all finish before services start"),
            "{e}"
        );
    }

    #[test]
    fn unknown_dependency_is_named() {
        let s = set(&[("web", "service", &["db"])]);
        assert_eq!(
            start_order(&s).unwrap_err().to_string(),
            "service web depends on db, which is not defined"
        );
    }

    #[test]
    fn cycles_are_spelled_out() {
        let s = set(&[
            ("a", "service", &["b"]),
            ("b", "service", &["c"]),
            ("c", "service", &["a"]),
            ("d", "service", &[]),
        ]);
        assert_eq!(
            start_order(&s).unwrap_err().to_string(),
            "dependency cycle: a → b → c → a"
        );
        let s = set(&[("self", "service", &["self"])]);
        assert_eq!(
            start_order(&s).unwrap_err().to_string(),
            "dependency cycle: self → self"
        );
    }

    #[test]
    fn disabled_services_are_skipped_and_satisfy_dependencies() {
        let mut s = set(&[("web", "service", &["db"]), ("db", "service", &[])]);
        s.get_mut(&"db".parse::<ServiceName>().unwrap())
            .unwrap()
            .enabled = Some(false);
        assert_eq!(names(&start_order(&s).unwrap()), ["web"]);
    }
}
