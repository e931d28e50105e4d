//! From a service definition and its image to an OCI runtime spec.
//!
//! Every container, whether a service from the system config or one made
//! through the API, is described by a [`ServiceDef`] (the API's create body
//! is translated into one) and turned into an `oci_spec::runtime::Spec`
//! here. This is pure: no file is touched except the image's `/etc/passwd`
//! and `/etc/group`, read to resolve `user`, so every rule is unit tested.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use corral_config::service::{HostNamespace, Propagation, ServiceDef, CAPABILITIES};
use oci_spec::runtime::{
    Capability, LinuxBlockIoBuilder, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

/// Where `--init` puts the container init (tini) inside the container.
pub const INIT_PATH: &str = "/sbin/corral-init";

/// Used when neither the image nor the definition sets `PATH`.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the engine knows about the container besides its definition.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The container's name (service name, or API name).
    pub name: &'a str,
    /// The image's runtime config (entrypoint, cmd, env, user...).
    pub image: &'a oci_spec::image::Config,
    /// The image's unpacked layers, bottom first: `user` is resolved in
    /// them.
    pub layers: &'a [PathBuf],
    /// The rootfs mountpoint (the spec's `root.path`).
    pub rootfs: &'a Path,
    /// cgroup path relative to the cgroup root, e.g. `corral/system/web`.
    pub cgroup: String,
    /// The host's tini binary, bind-mounted at [`INIT_PATH`] when the
    /// definition asks for an init.
    pub init_binary: Option<&'a Path>,
    /// A system container: it gets the host's syslog socket as /dev/log
    /// and the resolver config the network service writes.
    pub system: bool,
}

/// The host directory holding the syslog socket ([`SYSLOG_SOCKET`]).
pub const SYSLOG_DIR: &str = "/run/corral/syslog";
/// The socket the syslog service listens on; /dev/log points here.
pub const SYSLOG_SOCKET: &str = "/run/corral/syslog/log";
/// The host directory with `resolv.conf`, written by the network service;
/// images link /etc/resolv.conf here.
pub const NET_DIR: &str = "/run/corral/net";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("nothing to run: the image has no entrypoint or command and the definition sets none")]
    NoCommand,
    #[error("user {0:?}: {1}")]
    User(String, String),
    #[error("device {0}: {1}")]
    Device(String, String),
    #[error("init = true, but the container init (tini) is not installed on this system")]
    NoInit,
    #[error("building the runtime spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// The argv: the definition's entrypoint/command over the image's, with
/// Docker's rule that setting an entrypoint drops the image's command.
pub fn argv(def: &ServiceDef, image: &oci_spec::image::Config) -> Vec<String> {
    let entrypoint = def
        .entrypoint
        .clone()
        .or_else(|| image.entrypoint().clone())
        .unwrap_or_default();
    let command = match (&def.command, &def.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd().clone().unwrap_or_default(),
    };
    entrypoint.into_iter().chain(command).collect()
}

/// The environment: image first, then the definition's variables (which
/// win), `PATH` guaranteed, `HOSTNAME` as Docker sets it.
pub fn environment(
    def: &ServiceDef,
    image: &oci_spec::image::Config,
    hostname: &str,
) -> Vec<String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |k: &str, v: &str, env: &mut BTreeMap<String, String>| {
        if env.insert(k.to_owned(), v.to_owned()).is_none() {
            order.push(k.to_owned());
        }
    };
    for kv in image.env().iter().flatten() {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v, &mut env);
    }
    if !env.contains_key("PATH") {
        let (k, v) = DEFAULT_PATH.split_once('=').unwrap_or_default();
        set(k, v, &mut env);
    }
    set("HOSTNAME", hostname, &mut env);
    for (k, v) in def.env.iter().flatten() {
        set(k, v, &mut env);
    }
    order
        .iter()
        .map(|k| format!("{k}={}", env.get(k).map(String::as_str).unwrap_or_default()))
        .collect()
}

/// The capability set: Docker's default, plus `cap-add`, minus `cap-drop`
/// (`ALL` in either means every capability); every one for privileged.
pub fn capabilities(def: &ServiceDef) -> Vec<Capability> {
    let all = || {
        CAPABILITIES
            .iter()
            .filter_map(|c| parse_cap(c))
            .collect::<Vec<_>>()
    };
    if def.privileged.unwrap_or(false) {
        return all();
    }
    // Docker's rules (moby's TweakCapabilities): `cap-add = ["ALL"]` is
    // every capability but those dropped; `cap-drop = ["ALL"]` leaves only
    // those added; otherwise the default set minus the dropped, plus the
    // added.
    let named = |list: &Option<Vec<corral_config::service::CapName>>| -> Vec<Capability> {
        list.iter()
            .flatten()
            .filter(|c| !c.is_all())
            .filter_map(|c| parse_cap(c.as_str()))
            .collect()
    };
    let (added, dropped) = (named(&def.cap_add), named(&def.cap_drop));
    let mut caps = if def.cap_add.iter().flatten().any(|c| c.is_all()) {
        let mut caps = all();
        caps.retain(|c| !dropped.contains(c));
        caps
    } else if def.cap_drop.iter().flatten().any(|c| c.is_all()) {
        added
    } else {
        let mut caps = corral_runtime::defaults::capabilities();
        caps.retain(|c| !dropped.contains(c));
        caps.extend(added);
        caps
    };
    caps.sort_by_key(|c| c.to_string());
    caps.dedup();
    caps
}

fn parse_cap(name: &str) -> Option<Capability> {
    name.parse().ok()
}

/// Resolves `user` (`NAME`, `UID`, `UID:GID`, `NAME:GROUP`) to numbers
/// with the image's passwd and group files. The primary group of a named
/// user comes from passwd; supplementary groups from the group file.
pub fn resolve_user(user: &str, layers: &[PathBuf]) -> Result<(u32, u32, Vec<u32>), SpecError> {
    let err = |why: String| SpecError::User(user.to_owned(), why);
    if user.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_image_file(layers, "etc/passwd").unwrap_or_default();
    let group = read_image_file(layers, "etc/group").unwrap_or_default();
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == u || f[2] == u));
    let (uid, name, primary) = match (u.parse::<u32>(), entry) {
        (_, Some(f)) => (
            f[2].parse::<u32>()
                .map_err(|_| err(format!("bad uid {:?} in the image's /etc/passwd", f[2])))?,
            Some(f[0].to_owned()),
            f[3].parse::<u32>().ok(),
        ),
        (Ok(uid), None) => (uid, None, None),
        (Err(_), None) => return Err(err(format!("no user {u:?} in the image's /etc/passwd"))),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| err(format!("no group {g:?} in the image's /etc/group")))?,
        },
        None => primary.unwrap_or(0),
    };
    let mut additional = Vec::new();
    if let (Some(name), None) = (&name, g) {
        for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(id) = f[2].parse::<u32>() {
                    if id != gid && !additional.contains(&id) {
                        additional.push(id);
                    }
                }
            }
        }
    }
    Ok((uid, gid, additional))
}

/// A file as the container will see it: from the topmost layer that has
/// it (none if that layer deleted it). Only used for small text files.
/// Paths are resolved inside each layer: an image whose `/etc` is a
/// symlink to `/` cannot make the engine read the host's files.
fn read_image_file(layers: &[PathBuf], rel: &str) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    for layer in layers.iter().rev() {
        // Opened as a plain directory fd, so `/proc/PID/root` (exec's
        // running container) works too: pathrs refuses magic links.
        let Ok(fd) = nix::fcntl::open(
            layer.as_path(),
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) else {
            continue;
        };
        let root = pathrs::Root::from_fd(fd);
        let Ok(handle) = root.resolve_nofollow(rel) else {
            continue;
        };
        let md = crate::archive::fd_metadata(&handle)?;
        if md.file_type().is_char_device() {
            return None; // a whiteout: deleted here
        }
        if !md.is_file() {
            continue;
        }
        let file = handle.reopen(pathrs::flags::OpenFlags::O_RDONLY).ok()?;
        let mut text = String::new();
        file.take(1 << 20).read_to_string(&mut text).ok()?;
        return Some(text);
    }
    None
}

fn bind(source: &str, target: &str, readonly: bool) -> Result<Mount, SpecError> {
    bind_with(source, target, readonly, true, None)
}

fn bind_with(
    source: &str,
    target: &str,
    readonly: bool,
    recursive: bool,
    propagation: Option<Propagation>,
) -> Result<Mount, SpecError> {
    let kind = if recursive { "rbind" } else { "bind" };
    let mut options = vec![kind.to_owned(), "nosuid".to_owned()];
    if readonly {
        options.push("ro".to_owned());
    }
    if let Some(p) = propagation {
        options.push(p.as_str().to_owned());
    }
    Ok(MountBuilder::default()
        .destination(target)
        .typ("bind")
        .source(source)
        .options(options)
        .build()?)
}

/// Builds the spec. `hostname` defaults to the container's name.
pub fn build(def: &ServiceDef, ctx: &Context<'_>) -> Result<Spec, SpecError> {
    let privileged = def.privileged.unwrap_or(false);
    let host_ns = def.host_namespaces.clone().unwrap_or_default();
    let shares = |ns: HostNamespace| host_ns.contains(&ns);

    let mut args = argv(def, ctx.image);
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let use_init = def.init.unwrap_or(false);
    if use_init {
        if ctx.init_binary.is_none() {
            return Err(SpecError::NoInit);
        }
        args.splice(0..0, [INIT_PATH.to_owned(), "--".to_owned()]);
    }

    let hostname = def.hostname.clone().unwrap_or_else(|| {
        let mut h: String = ctx
            .name
            .chars()
            .map(|c| if c == '_' { '-' } else { c })
            .take(63)
            .collect();
        if h.ends_with('-') {
            h.push('0');
        }
        h
    });
    let env = environment(def, ctx.image, &hostname);

    let user = def
        .user
        .clone()
        .or_else(|| ctx.image.user().clone())
        .unwrap_or_default();
    let (uid, gid, additional) = resolve_user(&user, ctx.layers)?;

    let caps = capabilities(def);
    let cap_set: std::collections::HashSet<Capability> = caps.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(cap_set.clone())
        .effective(cap_set.clone())
        .permitted(cap_set)
        .inheritable(std::collections::HashSet::new())
        .ambient(std::collections::HashSet::new())
        .build()?;

    let cwd = def
        .working_dir
        .clone()
        .or_else(|| ctx.image.working_dir().clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".to_owned());

    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(uid)
                .gid(gid)
                .additional_gids(additional)
                .build()?,
        )
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        // A privileged service (the console's sudo, say) may need setuid
        // binaries to gain privileges; otherwise only one whose definition
        // says so (ssh's sudo, bounded by its capabilities).
        .no_new_privileges(def.no_new_privileges.unwrap_or(!privileged))
        .build()?;

    // Mounts: the runtime's standard set, then the host's /dev if asked,
    // the container init, and the configured binds in order.
    let host_dev = def.host_dev.unwrap_or(false) || privileged;
    let mut mounts: Vec<Mount> = corral_runtime::defaults::mounts()
        .into_iter()
        .filter(|m| {
            let d = m.destination().to_string_lossy();
            // With the host's /dev, its devpts, shm and mqueue come along.
            !(host_dev && d.starts_with("/dev"))
        })
        .map(|m| {
            // A privileged container administers the machine: /sys and its
            // cgroups are writable.
            if privileged && m.destination().starts_with("/sys") {
                let mut m = m;
                let opts: Vec<String> = m
                    .options()
                    .iter()
                    .flatten()
                    .filter(|o| o.as_str() != "ro")
                    .cloned()
                    .collect();
                m.set_options(Some(opts));
                m
            } else {
                m
            }
        })
        .collect();
    if host_dev {
        mounts.push(
            MountBuilder::default()
                .destination("/dev")
                .typ("bind")
                .source("/dev")
                .options(vec!["rbind".to_owned(), "nosuid".to_owned()])
                .build()?,
        );
    }
    if let (true, Some(init)) = (use_init, ctx.init_binary) {
        mounts.push(bind(&init.to_string_lossy(), INIT_PATH, true)?);
    }
    // Before the binds and the host's sockets, which may lie below them
    // (a tmpfs on /run, then /run/corral/... bound in it).
    for t in def.tmpfs.iter().flatten() {
        let mut options = vec!["nosuid".to_owned(), "nodev".to_owned()];
        options.extend(t.options.iter().cloned());
        mounts.push(
            MountBuilder::default()
                .destination(&t.target)
                .typ("tmpfs")
                .source("tmpfs")
                .options(options)
                .build()?,
        );
    }
    if ctx.system {
        // Read-only: connecting to a socket needs no write access to the
        // mount. The services that write here bind them again, writable.
        mounts.push(bind(SYSLOG_DIR, SYSLOG_DIR, true)?);
        mounts.push(bind(NET_DIR, NET_DIR, true)?);
    }
    for b in def.binds.iter().flatten() {
        mounts.push(bind_with(
            &b.source,
            &b.target,
            b.readonly,
            b.recursive,
            b.propagation,
        )?);
    }
    // A bind can only keep its link to the host's mount if the copy of
    // that mount in the new namespace is still joined to it: the root's
    // propagation is the strongest any bind asks for (runc's rule, which
    // Docker applies for `-v SRC:DST:rshared`).
    let binds = def.binds.iter().flatten();
    let root_propagation = if binds
        .clone()
        .any(|b| b.propagation == Some(Propagation::Shared))
    {
        "rshared"
    } else if binds
        .clone()
        .any(|b| b.propagation == Some(Propagation::Slave))
    {
        "rslave"
    } else {
        "rprivate"
    };

    let mut namespaces = vec![LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::Mount)
        .build()?];
    for (ns, typ) in [
        (HostNamespace::Pid, LinuxNamespaceType::Pid),
        (HostNamespace::Net, LinuxNamespaceType::Network),
        (HostNamespace::Ipc, LinuxNamespaceType::Ipc),
        (HostNamespace::Uts, LinuxNamespaceType::Uts),
        (HostNamespace::Cgroup, LinuxNamespaceType::Cgroup),
    ] {
        if !shares(ns) {
            namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
        }
    }

    let mut devices = Vec::new();
    if !host_dev {
        for d in def.devices.iter().flatten() {
            devices.push(device(&d.host, &d.container)?);
        }
    }

    let r = def.resources.clone().unwrap_or_default();
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(m) = r.memory {
        let limit = i64::try_from(m.get()).unwrap_or(i64::MAX);
        // Swap is counted against the same limit, as `docker run -m`
        // without `--memory-swap` allows twice the memory: here swap is
        // simply not allowed, the OS has none.
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(limit)
                .build()?,
        );
    }
    if let Some(p) = r.pids {
        resources = resources.pids(LinuxPidsBuilder::default().limit(i64::from(p)).build()?);
    }
    if let Some(c) = r.cpus {
        let period: u64 = 100_000;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .period(period)
                .quota((c.get() * period as f64).round() as i64)
                .build()?,
        );
    }
    if let Some(w) = r.io_weight {
        resources = resources.block_io(LinuxBlockIoBuilder::default().weight(w).build()?);
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(format!("/{}", ctx.cgroup)))
        .rootfs_propagation(root_propagation)
        .devices(devices);
    if !privileged && def.confined_paths.unwrap_or(true) {
        linux = linux
            .masked_paths(corral_runtime::defaults::masked_paths())
            .readonly_paths(corral_runtime::defaults::readonly_paths());
    } else {
        // oci-spec's builder starts from its own default lists.
        linux = linux.masked_paths(Vec::new()).readonly_paths(Vec::new());
    }
    if !privileged && def.seccomp.unwrap_or(true) {
        linux = linux.seccomp(corral_runtime::defaults::seccomp());
    }

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(ctx.rootfs)
                .readonly(def.readonly_rootfs.unwrap_or(false))
                .build()?,
        )
        .mounts(mounts)
        .process(process)
        .linux(linux.build()?)
        .build()?;
    if !shares(HostNamespace::Uts) {
        spec.set_hostname(Some(hostname));
    } else {
        spec.set_hostname(None);
    }
    if ctx.system && !host_dev {
        let mut a = std::collections::HashMap::new();
        a.insert(
            corral_runtime::DEV_LOG_ANNOTATION.to_owned(),
            SYSLOG_SOCKET.to_owned(),
        );
        spec.set_annotations(Some(a));
    }
    Ok(spec)
}

/// A device node for the container, typed and numbered like the host's.
fn device(host: &str, container: &str) -> Result<oci_spec::runtime::LinuxDevice, SpecError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta =
        std::fs::metadata(host).map_err(|e| SpecError::Device(host.to_owned(), e.to_string()))?;
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err(SpecError::Device(
            host.to_owned(),
            "not a character or block device".into(),
        ));
    };
    let rdev = meta.rdev();
    Ok(LinuxDeviceBuilder::default()
        .path(container)
        .typ(typ)
        .major(libc::major(rdev) as i64)
        .minor(libc::minor(rdev) as i64)
        .file_mode(meta.mode() & 0o7777)
        .uid(meta.uid())
        .gid(meta.gid())
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    fn image() -> oci_spec::image::Config {
        ConfigBuilder::default()
            .entrypoint(vec!["/bin/app".to_owned()])
            .cmd(vec!["--serve".to_owned()])
            .env(vec!["PATH=/bin".to_owned(), "A=image".to_owned()])
            .working_dir("/srv".to_owned())
            .build()
            .unwrap()
    }

    fn def(toml: &str) -> ServiceDef {
        ServiceDef::parse(toml).unwrap()
    }

    fn build_with(def: &ServiceDef, layers: &[PathBuf]) -> Spec {
        let img = image();
        let ctx = Context {
            name: "web_1",
            image: &img,
            layers,
            rootfs: Path::new("/run/corral/system/x/rootfs"),
            cgroup: "corral/system/web_1".into(),
            init_binary: Some(Path::new("/usr/libexec/corral/tini")),
            system: false,
        };
        build(def, &ctx).unwrap()
    }

    #[test]
    fn argv_follows_docker_rules() {
        let img = image();
        assert_eq!(argv(&def(""), &img), ["/bin/app", "--serve"]);
        assert_eq!(argv(&def("command = [\"-x\"]"), &img), ["/bin/app", "-x"]);
        // A new entrypoint drops the image's command.
        assert_eq!(argv(&def("entrypoint = [\"/bin/sh\"]"), &img), ["/bin/sh"]);
        assert_eq!(
            argv(
                &def("entrypoint = [\"/bin/sh\"]\ncommand = [\"-c\", \"true\"]"),
                &img
            ),
            ["/bin/sh", "-c", "true"]
        );
    }

    #[test]
    fn environment_layers_and_keeps_order() {
        let env = environment(&def("env = { A = \"def\", B = \"2\" }"), &image(), "web");
        assert_eq!(env, ["PATH=/bin", "A=def", "HOSTNAME=web", "B=2"]);
        let bare = oci_spec::image::Config::default();
        let env = environment(&def(""), &bare, "h");
        assert!(env[0].starts_with("PATH=/usr/local/sbin:"), "{env:?}");
    }

    #[test]
    fn default_spec_is_isolated_and_confined() {
        let spec = build_with(&def(""), &[]);
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_ref().unwrap(), &["/bin/app", "--serve"]);
        assert_eq!(process.cwd(), Path::new("/srv"));
        assert_eq!(process.no_new_privileges(), Some(true));
        assert_eq!(spec.hostname().as_deref(), Some("web-1"));
        let linux = spec.linux().as_ref().unwrap();
        let ns: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        for t in [
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Cgroup,
        ] {
            assert!(ns.contains(&t), "{t:?} missing from {ns:?}");
        }
        assert!(linux.seccomp().is_some());
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p == "/proc/kcore"));
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/corral/system/web_1"))
        );
        let caps = process.capabilities().as_ref().unwrap();
        let bounding = caps.bounding().as_ref().unwrap();
        assert_eq!(bounding.len(), 14, "{bounding:?}");
        assert!(!bounding.contains(&Capability::SysAdmin));
        assert!(caps.ambient().as_ref().unwrap().is_empty());
        assert!(!spec.root().as_ref().unwrap().readonly().unwrap_or(false));
        let dests: Vec<_> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.destination().to_string_lossy().into_owned())
            .collect();
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
        ] {
            assert!(dests.iter().any(|x| x == d), "{d} missing from {dests:?}");
        }
    }

    #[test]
    fn host_namespaces_are_left_out() {
        let spec = build_with(&def("host-namespaces = [\"net\", \"uts\"]"), &[]);
        let ns: Vec<_> = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert!(!ns.contains(&LinuxNamespaceType::Network));
        assert!(!ns.contains(&LinuxNamespaceType::Uts));
        assert!(ns.contains(&LinuxNamespaceType::Pid));
        // Sharing the host's UTS namespace must not rename the host.
        assert_eq!(spec.hostname(), &None);
    }

    #[test]
    fn no_new_privileges_by_default_unless_the_definition_lets_sudo_work() {
        let nnp = |d: &str| {
            build_with(&def(d), &[])
                .process()
                .as_ref()
                .unwrap()
                .no_new_privileges()
        };
        assert_eq!(nnp(""), Some(true));
        assert_eq!(nnp("no-new-privileges = false"), Some(false));
        // Still confined otherwise: seccomp stays.
        let spec = build_with(&def("no-new-privileges = false"), &[]);
        assert!(spec.linux().as_ref().unwrap().seccomp().is_some());
    }

    #[test]
    fn capabilities_add_and_drop() {
        let caps = capabilities(&def(
            "cap-add = [\"NET_ADMIN\"]\ncap-drop = [\"MKNOD\", \"NET_RAW\"]",
        ));
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(!caps.contains(&Capability::Mknod));
        assert!(!caps.contains(&Capability::NetRaw));
        assert!(caps.contains(&Capability::Chown));
        assert!(capabilities(&def("cap-drop = [\"ALL\"]")).is_empty());
        // As Docker: dropping ALL keeps what is added, adding ALL keeps
        // all but what is dropped, and a capability both dropped and
        // added is kept.
        assert_eq!(
            capabilities(&def(
                "cap-drop = [\"ALL\"]\ncap-add = [\"SETUID\", \"CHOWN\"]"
            )),
            vec![Capability::Chown, Capability::Setuid]
        );
        let all_but = capabilities(&def("cap-add = [\"ALL\"]\ncap-drop = [\"SYS_MODULE\"]"));
        assert_eq!(all_but.len(), CAPABILITIES.len() - 1);
        assert!(!all_but.contains(&Capability::SysModule));
        assert!(
            capabilities(&def("cap-add = [\"MKNOD\"]\ncap-drop = [\"MKNOD\"]"))
                .contains(&Capability::Mknod)
        );
        assert_eq!(
            capabilities(&def("privileged = true")).len(),
            CAPABILITIES.len()
        );
    }

    #[test]
    fn unconfined_paths_leave_proc_sys_writable_and_keep_seccomp() {
        let spec = build_with(&def("confined-paths = false"), &[]);
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.masked_paths().as_ref().is_none_or(Vec::is_empty));
        assert!(linux.readonly_paths().as_ref().is_none_or(Vec::is_empty));
        assert!(linux.seccomp().is_some());
        let confined = build_with(&def(""), &[]);
        let ro = confined.linux().as_ref().unwrap().readonly_paths().clone();
        assert!(ro.unwrap_or_default().contains(&"/proc/sys".to_owned()));
    }

    #[test]
    fn root_propagation_is_the_strongest_a_bind_asks_for() {
        let propagation = |binds: &str| {
            let spec = build_with(&def(&format!("binds = [{binds}]")), &[]);
            let linux = spec.linux().clone().unwrap();
            let bind = spec
                .mounts()
                .iter()
                .flatten()
                .find(|m| m.destination() == std::path::Path::new("/b"))
                .map(|m| m.options().clone().unwrap_or_default());
            (linux.rootfs_propagation().clone().unwrap(), bind.unwrap())
        };
        let (root, opts) = propagation("\"/a:/b\"");
        assert_eq!(root, "rprivate");
        assert_eq!(opts, ["rbind", "nosuid"]);
        let (root, opts) = propagation("\"/a:/b:rslave\"");
        assert_eq!(root, "rslave");
        assert_eq!(opts, ["rbind", "nosuid", "rslave"]);
        let (root, _) = propagation("\"/a:/b:rslave\", \"/c:/d:ro,rshared\"");
        assert_eq!(root, "rshared");
    }

    #[test]
    fn privileged_gets_everything_and_no_filters() {
        let spec = build_with(&def("privileged = true"), &[]);
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none());
        assert!(linux.masked_paths().as_ref().is_none_or(Vec::is_empty));
        assert!(linux.readonly_paths().as_ref().is_none_or(Vec::is_empty));
        assert_eq!(
            spec.process().as_ref().unwrap().no_new_privileges(),
            Some(false)
        );
        let sys = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert!(!sys.options().as_ref().unwrap().iter().any(|o| o == "ro"));
        let dev = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/dev"))
            .unwrap();
        assert_eq!(dev.typ().as_deref(), Some("bind"));
    }

    #[test]
    fn resources_become_cgroup_limits() {
        let spec = build_with(
            &def("[resources]\nmemory = \"16M\"\npids = 64\ncpus = 0.5\nio-weight = 200"),
            &[],
        );
        let r = spec.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(16 << 20));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 64);
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(100_000)));
        assert_eq!(r.block_io().as_ref().unwrap().weight(), Some(200));
    }

    #[test]
    fn binds_init_readonly_and_seccomp_off() {
        let spec = build_with(
            &def("binds = [\"/run/corral:/run/corral:ro\"]\ninit = true\nreadonly-rootfs = true\nseccomp = false"),
            &[],
        );
        let mounts = spec.mounts().as_ref().unwrap();
        let b = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/run/corral"))
            .unwrap();
        assert!(b.options().as_ref().unwrap().iter().any(|o| o == "ro"));
        assert!(b.options().as_ref().unwrap().iter().any(|o| o == "rbind"));
        assert!(mounts
            .iter()
            .any(|m| m.destination() == Path::new(INIT_PATH)));
        let args = spec.process().as_ref().unwrap().args().clone().unwrap();
        assert_eq!(&args[..3], [INIT_PATH, "--", "/bin/app"]);
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
        // norbind: a plain bind, without the mounts below the source.
        let spec = build_with(
            &def("binds = [\"/sys:/sys:norbind\"]\ncommand = [\"/bin/app\"]"),
            &[],
        );
        let sys: Vec<_> = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.destination() == Path::new("/sys"))
            .collect();
        let last = sys.last().unwrap();
        assert_eq!(last.typ().as_deref(), Some("bind"));
        let opts = last.options().as_ref().unwrap();
        assert!(
            opts.iter().any(|o| o == "bind") && !opts.iter().any(|o| o == "rbind"),
            "{opts:?}"
        );
    }

    #[test]
    fn missing_command_and_init_are_errors() {
        let img = oci_spec::image::Config::default();
        let ctx = Context {
            name: "x",
            image: &img,
            layers: &[],
            rootfs: Path::new("/r"),
            cgroup: "c".into(),
            init_binary: None,
            system: false,
        };
        assert!(matches!(build(&def(""), &ctx), Err(SpecError::NoCommand)));
        assert!(matches!(
            build(&def("command = [\"/bin/true\"]\ninit = true"), &ctx),
            Err(SpecError::NoInit)
        ));
    }

    #[test]
    fn users_resolve_in_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("l0");
        let upper = dir.path().join("l1");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        // The upper layer's passwd shadows the lower one.
        std::fs::write(
            upper.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\nweb:x:1000:1000::/srv:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            upper.join("etc/group"),
            "root:x:0:\nweb:x:1000:\nlog:x:4:web,other\nnogroup:x:65534:\n",
        )
        .unwrap();
        let layers = [lower, upper];
        assert_eq!(resolve_user("", &layers).unwrap(), (0, 0, vec![]));
        assert_eq!(
            resolve_user("nobody", &layers).unwrap(),
            (65534, 65534, vec![])
        );
        assert_eq!(resolve_user("web", &layers).unwrap(), (1000, 1000, vec![4]));
        assert_eq!(
            resolve_user("web:nogroup", &layers).unwrap(),
            (1000, 65534, vec![])
        );
        assert_eq!(resolve_user("1234:5", &layers).unwrap(), (1234, 5, vec![]));
        let e = resolve_user("ghost", &layers).unwrap_err().to_string();
        assert!(e.contains("no user \"ghost\""), "{e}");
        let e = resolve_user("web:ghosts", &layers).unwrap_err().to_string();
        assert!(e.contains("no group \"ghosts\""), "{e}");

        // A layer whose /etc leads to the host's root is read inside the
        // layer; a layer that deleted /etc/passwd (a whiteout) hides the
        // lower ones'.
        let evil = dir.path().join("l2");
        std::fs::create_dir_all(&evil).unwrap();
        std::os::unix::fs::symlink("/etc", evil.join("etc")).unwrap();
        let e = resolve_user("root", &[evil]).unwrap_err().to_string();
        assert!(e.contains("no user \"root\""), "{e}");
        let gone = dir.path().join("l3");
        std::fs::create_dir_all(gone.join("etc")).unwrap();
        nix::sys::stat::mknod(
            &gone.join("etc/passwd"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let layers = [layers[0].clone(), layers[1].clone(), gone];
        let e = resolve_user("web", &layers).unwrap_err().to_string();
        assert!(e.contains("no user \"web\""), "{e}");
    }
}
