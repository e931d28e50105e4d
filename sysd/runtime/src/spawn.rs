//! Starting a container's process from an OCI runtime spec.
//!
//! The parent turns the spec into a [`Plan`]: every path, option string,
//! argv and environment as C strings, capability masks, rlimits and the
//! compiled seccomp program. `clone3` then starts the child directly in the
//! container's cgroup and new namespaces, and the child walks the plan
//! with plain system calls and no allocation (the parent may have other
//! threads, whose malloc lock the child could inherit held):
//!
//! 1. stdio onto 0/1/2, a new session, default signal dispositions;
//! 2. join the namespaces given by path; a new cgroup namespace rooted at
//!    its own cgroup;
//! 3. `/` private, the root (overlay of the image's layers, or a bind of a
//!    directory) mounted, the spec's mounts on it, device nodes;
//! 4. `pivot_root`, the old root detached; masked and read-only paths; a
//!    read-only root if asked;
//! 5. hostname, rlimits, the bounding set, groups and ids, capabilities,
//!    no_new_privs, seccomp (before dropping privileges when no_new_privs
//!    is off, since the kernel then wants CAP_SYS_ADMIN), exec.
//!
//! A failing step writes (step, index, errno) to a close-on-exec pipe;
//! the parent reads it and turns it into an error naming the step. EOF
//! on the pipe means the exec happened.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use libc::c_char;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceType, LinuxNamespaceType, LinuxSeccomp, Mount, Spec,
};

use crate::cgroup::Cgroup;
use crate::sys::{self, Forked};
use crate::{Error, Process};

mod enter;
pub use enter::{enter, EnterOptions};

/// Spec annotation: make the container's own /dev/log a symlink to this
/// path (the system syslog socket, reached through a directory bind).
pub const DEV_LOG_ANNOTATION: &str = "io.corral.dev-log";

/// The container's root filesystem.
#[derive(Debug, Clone)]
pub enum Rootfs {
    /// A directory, bind-mounted.
    Dir(PathBuf),
    /// Image layers (bottom first) under a per-container upper dir.
    Overlay {
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
}

/// The container's standard streams; `None` is /dev/null.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

pub struct SpawnOptions<'a> {
    /// For messages.
    pub id: &'a str,
    pub spec: &'a Spec,
    pub rootfs: Rootfs,
    /// Where the root is mounted (inside the container's mount namespace
    /// only), an existing empty directory.
    pub mountpoint: PathBuf,
    /// The cgroup v2 hierarchy the spec's `cgroupsPath` is relative to.
    pub cgroup_root: PathBuf,
    pub stdio: Stdio,
    /// A directory to keep compiled seccomp filters in, for a process that
    /// starts only one container (a monitor).
    pub seccomp_cache: Option<PathBuf>,
    /// For a spec with `process.terminal`: a Unix socket on which the
    /// terminal's master end is sent (see [`crate::recv_console`]), as
    /// runc's `--console-socket`. The process gets the slave end as its
    /// stdio and controlling terminal.
    pub console_socket: Option<OwnedFd>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Spec(msg.into())
}

fn cstr(s: impl AsRef<OsStr>) -> Result<CString, Error> {
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| invalid(format!("{:?} contains a NUL byte", s.as_ref())))
}

/// A mount to make, relative to the new root's host path.
struct MountOp {
    /// Directories to create first (each prefix of the target).
    mkdirs: Vec<CString>,
    target: CString,
    /// The target is created as an empty file (bind of a file).
    file_target: bool,
    source: Option<CString>,
    fstype: Option<CString>,
    flags: MsFlags,
    data: Option<CString>,
    /// Flags for a second, remounting pass (bind mounts: ro, nosuid...).
    remount: Option<MsFlags>,
    propagation: Option<MsFlags>,
    describe: String,
}

struct DeviceOp {
    path: CString,
    kind: SFlag,
    dev: libc::dev_t,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Host node to bind when mknod is not allowed.
    host: CString,
    describe: String,
}

struct Plan {
    stdio: [RawFd; 3],
    setns: Vec<(RawFd, CloneFlags, String)>,
    new_cgroup_ns: bool,
    root_propagation: MsFlags,
    rootfs: MountOp,
    mountpoint: CString,
    mounts: Vec<MountOp>,
    devices: Vec<DeviceOp>,
    dev_links: Vec<(CString, CString)>,
    masked: Vec<CString>,
    readonly: Vec<CString>,
    readonly_root: bool,
    hostname: Option<CString>,
    /// A new network namespace starts with `lo` down; every runtime sets
    /// it up (a server on 127.0.0.1 needs it).
    loopback_up: bool,
    rlimits: Vec<(libc::c_int, u64, u64)>,
    bounding_drop: Vec<u64>,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: Vec<u64>,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    cwd: CString,
    no_new_privs: bool,
    seccomp: Option<Arc<Vec<Vec<libc::sock_filter>>>>,
    exec_paths: Vec<CString>,
    _argv: Vec<CString>,
    _env: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    /// The console socket, when the process gets a terminal.
    console: Option<RawFd>,
    /// Entering a running container (exec): its namespaces are joined
    /// (the mount namespace among them) and nothing is mounted.
    enter: bool,
}

// Steps, as the child reports them.
const STEP_STDIO: u32 = 1;
const STEP_SETSID: u32 = 2;
const STEP_SETNS: u32 = 3;
const STEP_CGROUPNS: u32 = 4;
const STEP_PROPAGATION: u32 = 5;
const STEP_ROOTFS: u32 = 6;
const STEP_MOUNT: u32 = 7;
const STEP_DEVICE: u32 = 8;
const STEP_PIVOT: u32 = 9;
const STEP_MASK: u32 = 10;
const STEP_READONLY: u32 = 11;
const STEP_ROOT_RO: u32 = 12;
const STEP_HOSTNAME: u32 = 13;
const STEP_RLIMIT: u32 = 14;
const STEP_BOUNDING: u32 = 15;
const STEP_IDS: u32 = 16;
const STEP_CAPS: u32 = 17;
const STEP_NNP: u32 = 18;
const STEP_SECCOMP: u32 = 19;
const STEP_CWD: u32 = 20;
const STEP_EXEC: u32 = 21;
const STEP_FDS: u32 = 22;
const STEP_LOOPBACK: u32 = 23;
const STEP_TTY: u32 = 24;

/// The container's own pseudo-terminal multiplexer (a link to its devpts).
const PTMX: &std::ffi::CStr = c"/dev/ptmx";

impl Plan {
    fn describe(&self, step: u32, index: usize) -> String {
        match step {
            STEP_STDIO => "connecting stdio".into(),
            STEP_SETSID => "starting a session".into(),
            STEP_SETNS => format!(
                "joining namespace {}",
                self.setns.get(index).map_or("", |s| s.2.as_str())
            ),
            STEP_CGROUPNS => "making the cgroup namespace".into(),
            STEP_PROPAGATION => "making / private".into(),
            STEP_ROOTFS => format!("mounting the root: {}", self.rootfs.describe),
            STEP_MOUNT => format!(
                "mounting {}",
                self.mounts.get(index).map_or("", |m| m.describe.as_str())
            ),
            STEP_DEVICE => format!(
                "making device {}",
                self.devices.get(index).map_or("", |d| d.describe.as_str())
            ),
            STEP_PIVOT => "pivot_root".into(),
            STEP_MASK => format!(
                "masking {}",
                self.masked
                    .get(index)
                    .map(|c| c.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            STEP_READONLY => format!(
                "making {} read-only",
                self.readonly
                    .get(index)
                    .map(|c| c.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            STEP_ROOT_RO => "making the root read-only".into(),
            STEP_HOSTNAME => "setting the hostname".into(),
            STEP_RLIMIT => "setting an rlimit".into(),
            STEP_BOUNDING => "dropping the capability bounding set".into(),
            STEP_IDS => format!("switching to uid {} gid {}", self.uid, self.gid),
            STEP_CAPS => "setting capabilities".into(),
            STEP_NNP => "setting no_new_privs".into(),
            STEP_SECCOMP => "installing the seccomp filter".into(),
            STEP_CWD => format!("changing to the working dir {}", self.cwd.to_string_lossy()),
            STEP_EXEC => format!(
                "executing {}",
                self._argv
                    .first()
                    .map(|c| c.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            STEP_FDS => "closing descriptors".into(),
            STEP_LOOPBACK => "bringing up the loopback interface".into(),
            STEP_TTY => match index {
                0 => "opening a terminal on /dev/ptmx".into(),
                1 => "sending the terminal to the console socket".into(),
                _ => "making the terminal the controlling one".into(),
            },
            _ => format!("step {step}"),
        }
    }
}

/// Options → (flags, propagation, data) as mount(8) reads them.
/// The overlayfs mount options for image layers (bottom first) under a
/// container's upper dir: what a start mounts, and `docker cp` on a
/// stopped container.
pub fn overlay_options(lower: &[PathBuf], upper: &Path, work: &Path) -> Result<String, Error> {
    if lower.is_empty() {
        return Err(invalid("the image has no layers"));
    }
    // overlayfs lists lower dirs top first.
    let lowers: Vec<String> = lower
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    for p in lower.iter().map(PathBuf::as_path).chain([upper, work]) {
        let s = p.display().to_string();
        if s.contains(',') || s.contains(':') {
            return Err(invalid(format!("layer path {s} contains ',' or ':'")));
        }
    }
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    ))
}

fn mount_options(options: &[String]) -> (MsFlags, Option<MsFlags>, Vec<String>) {
    let mut flags = MsFlags::empty();
    let mut propagation = None;
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "dirsync" => flags |= MsFlags::MS_DIRSYNC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "private" => propagation = Some(MsFlags::MS_PRIVATE),
            "rprivate" => propagation = Some(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "slave" => propagation = Some(MsFlags::MS_SLAVE),
            "rslave" => propagation = Some(MsFlags::MS_SLAVE | MsFlags::MS_REC),
            "shared" => propagation = Some(MsFlags::MS_SHARED),
            "rshared" => propagation = Some(MsFlags::MS_SHARED | MsFlags::MS_REC),
            "suid" | "dev" | "exec" | "async" | "atime" | "diratime" | "norelatime" => {}
            other => data.push(other.to_owned()),
        }
    }
    (flags, propagation, data)
}

/// Each directory from the root down to (and including) `target`'s
/// parent or itself.
fn prefixes(root: &Path, rel: &Path, include_last: bool) -> Result<Vec<CString>, Error> {
    let comps: Vec<_> = rel.components().collect();
    let n = if include_last {
        comps.len()
    } else {
        comps.len().saturating_sub(1)
    };
    let mut out = Vec::new();
    let mut p = root.to_owned();
    for c in &comps[..n] {
        p.push(c);
        out.push(cstr(&p)?);
    }
    Ok(out)
}

fn relative(dest: &str) -> Result<PathBuf, Error> {
    let p = Path::new(dest);
    if !p.is_absolute() {
        return Err(invalid(format!(
            "mount destination {dest:?} is not absolute"
        )));
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => {
                return Err(invalid(format!(
                    "mount destination {dest:?} must not contain \"..\""
                )))
            }
        }
    }
    Ok(out)
}

fn mount_op(root: &Path, m: &Mount) -> Result<MountOp, Error> {
    let dest = m.destination().to_string_lossy().into_owned();
    let rel = relative(&dest)?;
    let target = root.join(&rel);
    let options = m.options().clone().unwrap_or_default();
    let (mut flags, propagation, data) = mount_options(&options);
    let typ = m.typ().clone().unwrap_or_default();
    let bind = typ == "bind" || flags.contains(MsFlags::MS_BIND);
    let source = m.source().clone();
    let mut file_target = false;
    let mut remount = None;
    if bind {
        flags |= MsFlags::MS_BIND;
        let src = source
            .as_ref()
            .ok_or_else(|| invalid(format!("bind mount on {dest} has no source")))?;
        let meta = std::fs::metadata(src)
            .map_err(|e| invalid(format!("bind mount source {}: {e}", src.display())))?;
        file_target = !meta.is_dir();
        let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            remount = Some(MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra);
        }
        flags &= MsFlags::MS_BIND | MsFlags::MS_REC;
    }
    Ok(MountOp {
        mkdirs: prefixes(root, &rel, !file_target)?,
        target: cstr(&target)?,
        file_target,
        source: source.as_ref().map(cstr).transpose()?,
        fstype: (!bind && !typ.is_empty()).then(|| cstr(&typ)).transpose()?,
        flags,
        data: (!data.is_empty())
            .then(|| cstr(data.join(",")))
            .transpose()?,
        remount,
        propagation,
        describe: format!(
            "{} on {dest} ({typ})",
            source
                .as_ref()
                .map(|s| s.display().to_string())
                .unwrap_or_else(|| "none".into())
        ),
    })
}

/// The device nodes every container with its own /dev gets (runc's list).
fn default_devices() -> Vec<(&'static str, SFlag, u64, u64)> {
    vec![
        ("/dev/null", SFlag::S_IFCHR, 1, 3),
        ("/dev/zero", SFlag::S_IFCHR, 1, 5),
        ("/dev/full", SFlag::S_IFCHR, 1, 7),
        ("/dev/random", SFlag::S_IFCHR, 1, 8),
        ("/dev/urandom", SFlag::S_IFCHR, 1, 9),
        ("/dev/tty", SFlag::S_IFCHR, 5, 0),
    ]
}

fn device_op(root: &Path, d: &LinuxDevice) -> Result<DeviceOp, Error> {
    let path = d.path().to_string_lossy().into_owned();
    let rel = relative(&path)?;
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(invalid(format!("device {path}: type 'a' is not a node")))
        }
    };
    Ok(DeviceOp {
        path: cstr(root.join(rel))?,
        kind,
        dev: nix::sys::stat::makedev(d.major() as u64, d.minor() as u64),
        mode: d.file_mode().unwrap_or(0o666),
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
        host: cstr(&path)?,
        describe: path,
    })
}

fn cap_index(c: &oci_spec::runtime::Capability) -> Result<u64, Error> {
    let name = format!("CAP_{c}");
    name.parse::<caps::Capability>()
        .map(|c| c.index() as u64)
        .map_err(|_| invalid(format!("unknown capability {name}")))
}

fn cap_mask<'a>(
    set: Option<impl IntoIterator<Item = &'a oci_spec::runtime::Capability>>,
) -> Result<u64, Error> {
    let mut m = 0u64;
    for c in set.into_iter().flatten() {
        m |= 1 << cap_index(c)?;
    }
    Ok(m)
}

fn last_cap() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn rlimit_resource(name: &str) -> Result<libc::c_int, Error> {
    Ok(match name {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        other => return Err(invalid(format!("unknown rlimit {other}"))),
    } as libc::c_int)
}

type Programs = Arc<Vec<Vec<libc::sock_filter>>>;

/// Compiled seccomp programs, by profile: every container of a profile
/// shares one compilation.
fn seccomp_programs(profile: &LinuxSeccomp, disk: Option<&Path>) -> Result<Programs, Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, Programs>>> = OnceLock::new();
    let key = serde_json::to_string(profile).map_err(|e| invalid(e.to_string()))?;
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(p.clone());
    }
    // A process that starts one container (the engine's monitor) has an
    // empty cache: compiled programs are kept on disk too, by the
    // profile's digest, as compiling the default profile is most of a
    // container's start under emulation.
    let file = disk.map(|d| d.join(format!("{}.bpf", crate::seccomp::digest(&key))));
    let programs = match file.as_deref().and_then(crate::seccomp::load) {
        Some(p) => p,
        None => {
            let p = crate::seccomp::compile(profile)?;
            if let Some(f) = &file {
                if let Err(e) = crate::seccomp::store(f, &p) {
                    log::warn!(
                        "{}: cannot keep the compiled seccomp filter: {e}",
                        f.display()
                    );
                }
            }
            p
        }
    };
    let programs = Arc::new(programs);
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, programs.clone());
    Ok(programs)
}

fn plan(
    opts: &SpawnOptions<'_>,
    stdio: [RawFd; 3],
    ns_fds: &[(OwnedFd, CloneFlags, String)],
) -> Result<Plan, Error> {
    let spec = opts.spec;
    let root = &opts.mountpoint;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("the spec has no process"))?;
    let args = process.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return Err(invalid("the process has no args"));
    };
    let env = process.env().clone().unwrap_or_default();
    let linux = spec.linux().clone().unwrap_or_default();

    let rootfs = match &opts.rootfs {
        Rootfs::Dir(dir) => MountOp {
            mkdirs: Vec::new(),
            target: cstr(root)?,
            file_target: false,
            source: Some(cstr(dir)?),
            fstype: None,
            flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            data: None,
            remount: None,
            propagation: None,
            describe: format!("bind of {}", dir.display()),
        },
        Rootfs::Overlay { lower, upper, work } => {
            let data = overlay_options(lower, upper, work)?;
            MountOp {
                mkdirs: Vec::new(),
                target: cstr(root)?,
                file_target: false,
                source: Some(cstr("overlay")?),
                fstype: Some(cstr("overlay")?),
                flags: MsFlags::empty(),
                data: Some(cstr(&data)?),
                remount: None,
                propagation: None,
                describe: format!("overlay of {} layers", lower.len()),
            }
        }
    };

    let mut mounts = Vec::new();
    let mut own_dev = false;
    for m in spec.mounts().iter().flatten() {
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            own_dev = true;
        }
        mounts.push(mount_op(root, m)?);
    }

    let mut devices = Vec::new();
    let listed: Vec<PathBuf> = linux
        .devices()
        .iter()
        .flatten()
        .map(|d| d.path().clone())
        .collect();
    if own_dev {
        for (path, kind, major, minor) in default_devices() {
            if listed.iter().any(|p| p == Path::new(path)) {
                continue;
            }
            devices.push(DeviceOp {
                path: cstr(root.join(&path[1..]))?,
                kind,
                dev: nix::sys::stat::makedev(major, minor),
                mode: 0o666,
                uid: 0,
                gid: 0,
                host: cstr(path)?,
                describe: path.to_owned(),
            });
        }
    }
    for d in linux.devices().iter().flatten() {
        devices.push(device_op(root, d)?);
    }
    let dev_links = if own_dev {
        let mut links = vec![
            ("/proc/self/fd", "dev/fd"),
            ("/proc/self/fd/0", "dev/stdin"),
            ("/proc/self/fd/1", "dev/stdout"),
            ("/proc/self/fd/2", "dev/stderr"),
            ("pts/ptmx", "dev/ptmx"),
        ];
        // The syslog socket lives outside /dev (a directory bind survives
        // the daemon re-creating it); /dev/log points there.
        let log = spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(DEV_LOG_ANNOTATION));
        if let Some(target) = log {
            links.push((target.as_str(), "dev/log"));
        }
        links
            .iter()
            .map(|(t, l)| Ok((cstr(t)?, cstr(root.join(l))?)))
            .collect::<Result<Vec<_>, Error>>()?
    } else {
        Vec::new()
    };

    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let new_cgroup_ns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup && n.path().is_none());
    let hostname = match spec.hostname() {
        Some(h)
            if namespaces
                .iter()
                .any(|n| n.typ() == LinuxNamespaceType::Uts) =>
        {
            Some(cstr(h)?)
        }
        _ => None,
    };

    let mut rlimits = Vec::new();
    for r in process.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        rlimits.push((rlimit_resource(&name)?, r.soft(), r.hard()));
    }

    let caps = process.capabilities().clone().unwrap_or_default();
    let bounding = cap_mask(caps.bounding().as_ref())?;
    let bounding_drop = (0..=last_cap())
        .filter(|c| bounding & (1 << c) == 0)
        .collect();
    let ambient_mask = cap_mask(caps.ambient().as_ref())?;
    let ambient = (0..64).filter(|c| ambient_mask & (1 << c) != 0).collect();

    let user = process.user();
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(|p| seccomp_programs(p, opts.seccomp_cache.as_deref()))
        .transpose()?;

    // PATH lookup in the container's PATH, tried in order by the child.
    let exec_paths = if arg0.contains('/') {
        vec![cstr(arg0)?]
    } else {
        let path = env
            .iter()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstr(format!("{}/{arg0}", d.trim_end_matches('/'))))
            .collect::<Result<_, _>>()?
    };
    let argv: Vec<CString> = args.iter().map(cstr).collect::<Result<_, _>>()?;
    let envc: Vec<CString> = env.iter().map(cstr).collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const c_char> = envc.iter().map(|c| c.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());

    let root_cfg = spec.root().clone().unwrap_or_default();
    let root_propagation = match linux.rootfs_propagation().as_deref() {
        Some("shared") | Some("rshared") => MsFlags::MS_SHARED | MsFlags::MS_REC,
        Some("slave") | Some("rslave") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some("private") | Some("rprivate") | None => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        Some(other) => return Err(invalid(format!("rootfsPropagation {other:?}"))),
    };

    Ok(Plan {
        stdio,
        setns: ns_fds
            .iter()
            .map(|(fd, flag, name)| (fd.as_raw_fd(), *flag, name.clone()))
            .collect(),
        new_cgroup_ns,
        root_propagation,
        rootfs,
        mountpoint: cstr(root)?,
        mounts,
        devices,
        dev_links,
        masked: linux
            .masked_paths()
            .iter()
            .flatten()
            .map(cstr)
            .collect::<Result<_, _>>()?,
        readonly: linux
            .readonly_paths()
            .iter()
            .flatten()
            .map(cstr)
            .collect::<Result<_, _>>()?,
        readonly_root: root_cfg.readonly().unwrap_or(false),
        hostname,
        loopback_up: false,
        rlimits,
        bounding_drop,
        effective: cap_mask(caps.effective().as_ref())?,
        permitted: cap_mask(caps.permitted().as_ref())?,
        inheritable: cap_mask(caps.inheritable().as_ref())?,
        ambient,
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        cwd: cstr(process.cwd())?,
        no_new_privs: process.no_new_privileges().unwrap_or(false),
        seccomp,
        exec_paths,
        _argv: argv,
        _env: envc,
        argv_ptrs,
        envp_ptrs,
        console: None,
        enter: false,
    })
}

fn ns_flag(t: LinuxNamespaceType) -> Result<CloneFlags, Error> {
    Ok(match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::User => {
            return Err(invalid(
                "user namespaces are not supported by this runtime yet",
            ))
        }
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    })
}

/// Starts the container's process. On success the process has exec'd.
pub fn spawn(opts: SpawnOptions<'_>) -> Result<Process, Error> {
    let spec = opts.spec;
    let linux = spec.linux().clone().unwrap_or_default();
    let cgroup_rel = linux
        .cgroups_path()
        .clone()
        .ok_or_else(|| invalid("the spec has no cgroupsPath"))?;
    let cgroup = Cgroup::create(&opts.cgroup_root, &cgroup_rel, linux.resources().as_ref())?;
    // A container with a /dev of its own may open only what is in it; one
    // given the host's /dev (privileged, host-dev) opens what it finds.
    let own_dev = spec
        .mounts()
        .iter()
        .flatten()
        .any(|m| m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs"));
    let result = if own_dev {
        let rules = crate::devices::container_rules(linux.devices().as_deref().unwrap_or_default());
        crate::devices::attach(cgroup.path(), &rules).and_then(|()| spawn_in(&opts, &cgroup))
    } else {
        spawn_in(&opts, &cgroup)
    };
    if result.is_err() {
        let _ = cgroup.remove();
    }
    result
}

fn spawn_in(opts: &SpawnOptions<'_>, cgroup: &Cgroup) -> Result<Process, Error> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: nix::Error| Error::Start {
            id: String::new(),
            step: what,
            source: std::io::Error::from(e),
        }
    };
    let linux = opts.spec.linux().clone().unwrap_or_default();
    let mut ns_flags = CloneFlags::empty();
    let mut ns_fds = Vec::new();
    let mut has_mount_ns = false;
    for ns in linux.namespaces().iter().flatten() {
        let flag = ns_flag(ns.typ())?;
        if ns.typ() == LinuxNamespaceType::Mount {
            has_mount_ns = true;
        }
        match ns.path() {
            Some(path) => {
                if ns.typ() == LinuxNamespaceType::Pid || ns.typ() == LinuxNamespaceType::Mount {
                    return Err(invalid(format!(
                        "joining an existing {:?} namespace is not supported",
                        ns.typ()
                    )));
                }
                let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(|e| invalid(format!("namespace {}: {e}", path.display())))?;
                ns_fds.push((fd, flag, path.display().to_string()));
            }
            // The cgroup namespace is made by the child once it is in its
            // cgroup, so that the namespace is rooted there.
            None if ns.typ() == LinuxNamespaceType::Cgroup => {}
            None => ns_flags |= flag,
        }
    }
    if !has_mount_ns {
        return Err(invalid("a container needs its own mount namespace"));
    }

    let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(io("opening /dev/null"))?;
    let pick = |f: &Option<OwnedFd>| {
        f.as_ref()
            .map(|f| f.as_raw_fd())
            .unwrap_or(null.as_raw_fd())
    };
    let stdio = [
        pick(&opts.stdio.stdin),
        pick(&opts.stdio.stdout),
        pick(&opts.stdio.stderr),
    ];
    let mut plan = plan(opts, stdio, &ns_fds)?;
    plan.loopback_up = ns_flags.contains(CloneFlags::CLONE_NEWNET);
    plan.console = console_fd(opts.spec, opts.console_socket.as_ref())?;
    let cgroup_dir = open_cgroup_dir(cgroup.path())?;
    run(&plan, ns_flags, &cgroup_dir, opts.id)
}

/// The console socket's descriptor when the process wants a terminal.
fn console_fd(spec: &Spec, socket: Option<&OwnedFd>) -> Result<Option<RawFd>, Error> {
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    match (terminal, socket) {
        (false, _) => Ok(None),
        (true, Some(s)) => Ok(Some(s.as_raw_fd())),
        (true, None) => Err(invalid(
            "process.terminal is set but no console socket was given",
        )),
    }
}

fn open_cgroup_dir(path: &Path) -> Result<OwnedFd, Error> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::Cgroup {
        path: path.to_owned(),
        source: e.into(),
    })
}

/// Clones the child into `cgroup_dir` and the new namespaces `ns_flags`,
/// lets it walk `plan`, and reads how far it got.
fn run(
    plan: &Plan,
    ns_flags: CloneFlags,
    cgroup_dir: &OwnedFd,
    id: &str,
) -> Result<Process, Error> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: nix::Error| Error::Start {
            id: id.to_owned(),
            step: what,
            source: std::io::Error::from(e),
        }
    };
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io("making a pipe"))?;

    match sys::clone3(ns_flags.bits() as u64, cgroup_dir.as_raw_fd()).map_err(io("clone3"))? {
        Forked::Child => {
            drop(err_r);
            let (step, index, errno) = child(plan);
            let mut msg = [0u8; 12];
            msg[..4].copy_from_slice(&step.to_ne_bytes());
            msg[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
            msg[8..].copy_from_slice(&(errno as i32).to_ne_bytes());
            sys::write_raw(err_w.as_raw_fd(), &msg);
            sys::exit_child(127);
        }
        Forked::Parent { pid, pidfd } => {
            drop(err_w);
            let mut msg = [0u8; 12];
            let mut got = 0;
            while got < msg.len() {
                match nix::unistd::read(&err_r, &mut msg[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(Errno::EINTR) => continue,
                    Err(_) => break,
                }
            }
            if got == 0 {
                let start_time = crate::process::start_time(pid).unwrap_or(0);
                return Ok(Process {
                    pid,
                    pidfd,
                    start_time,
                });
            }
            // The child failed; reap it so no zombie is left.
            let _ = nix::sys::wait::waitpid(pid, None);
            let step = u32::from_ne_bytes(msg[..4].try_into().unwrap_or_default());
            let index = u32::from_ne_bytes(msg[4..8].try_into().unwrap_or_default());
            let errno = i32::from_ne_bytes(msg[8..].try_into().unwrap_or_default());
            if step == STEP_EXEC {
                return Err(Error::Exec {
                    id: id.to_owned(),
                    program: plan
                        ._argv
                        .first()
                        .map(|c| c.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    errno,
                });
            }
            Err(Error::Start {
                id: id.to_owned(),
                step: plan.describe(step, index as usize),
                source: std::io::Error::from_raw_os_error(errno),
            })
        }
    }
}

type Failure = (u32, usize, Errno);

/// The child's side. Returns only on failure. No allocation in here.
fn child(p: &Plan) -> Failure {
    let fail = |step: u32, index: usize| move |e: Errno| (step, index, e);
    let r = (|| -> Result<(), Failure> {
        for (i, fd) in p.stdio.iter().enumerate() {
            sys::dup2(*fd, i as RawFd).map_err(fail(STEP_STDIO, i))?;
        }
        nix::unistd::setsid().map_err(fail(STEP_SETSID, 0))?;
        sys::reset_signals();
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&nix::sys::signal::SigSet::empty()),
            None,
        );
        for (i, (fd, flag, _)) in p.setns.iter().enumerate() {
            let fd = sys::borrow_fd(*fd);
            nix::sched::setns(fd, *flag).map_err(fail(STEP_SETNS, i))?;
        }
        if !p.enter {
            setup_root(p)?;
        }
        if let Some(sock) = p.console {
            terminal(p, sock)?;
        }
        for (i, (res, soft, hard)) in p.rlimits.iter().enumerate() {
            let lim = libc::rlimit64 {
                rlim_cur: *soft,
                rlim_max: *hard,
            };
            rlimit(*res, &lim).map_err(fail(STEP_RLIMIT, i))?;
        }
        for cap in &p.bounding_drop {
            match sys::prctl(libc::PR_CAPBSET_DROP, *cap, 0) {
                Ok(()) | Err(Errno::EINVAL) => {}
                Err(e) => return Err((STEP_BOUNDING, *cap as usize, e)),
            }
        }
        sys::cloexec_from(3).map_err(fail(STEP_FDS, 0))?;
        // Without no_new_privs the kernel only takes a filter from a
        // process with CAP_SYS_ADMIN: install it while we are still root.
        if !p.no_new_privs {
            install_seccomp(p)?;
        }
        sys::prctl(libc::PR_SET_KEEPCAPS, 1, 0).map_err(fail(STEP_IDS, 0))?;
        sys::setgroups(&p.groups).map_err(fail(STEP_IDS, 0))?;
        sys::setresgid(p.gid).map_err(fail(STEP_IDS, 0))?;
        sys::setresuid(p.uid).map_err(fail(STEP_IDS, 0))?;
        sys::prctl(libc::PR_SET_KEEPCAPS, 0, 0).map_err(fail(STEP_IDS, 0))?;
        sys::capset(p.effective, p.permitted, p.inheritable).map_err(fail(STEP_CAPS, 0))?;
        for cap in &p.ambient {
            sys::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as u64,
                *cap,
            )
            .map_err(fail(STEP_CAPS, *cap as usize))?;
        }
        nix::unistd::chdir(p.cwd.as_c_str()).map_err(fail(STEP_CWD, 0))?;
        if p.no_new_privs {
            sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map_err(fail(STEP_NNP, 0))?;
            install_seccomp(p)?;
        }
        Ok(())
    })();
    if let Err(f) = r {
        return f;
    }
    let mut last = Errno::ENOENT;
    for path in &p.exec_paths {
        last = sys::execve(path, &p.argv_ptrs, &p.envp_ptrs);
        // Keep looking along PATH only when this one is not there.
        if !matches!(last, Errno::ENOENT | Errno::ENOTDIR | Errno::EACCES) {
            break;
        }
    }
    (STEP_EXEC, 0, last)
}

/// Steps 2 (the cgroup namespace) to 4 and the hostname: the new
/// container's root and mounts. No allocation in here.
fn setup_root(p: &Plan) -> Result<(), Failure> {
    let fail = |step: u32, index: usize| move |e: Errno| (step, index, e);
    if p.new_cgroup_ns {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(fail(STEP_CGROUPNS, 0))?;
    }
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        p.root_propagation,
        None::<&str>,
    )
    .map_err(fail(STEP_PROPAGATION, 0))?;
    if p.root_propagation.contains(MsFlags::MS_SHARED) {
        // pivot_root(2) refuses a shared new root, a shared parent of it
        // and a shared current root. Those three are made private (each
        // alone, not its tree), so the binds of shared host mounts below
        // stay peers of the host's: the root on itself, and the mount
        // point bound onto itself to be the new root's private parent.
        let private = |target: &CStr| {
            nix::mount::mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_PRIVATE,
                None::<&str>,
            )
        };
        private(c"/").map_err(fail(STEP_PROPAGATION, 0))?;
        nix::mount::mount(
            Some(p.mountpoint.as_c_str()),
            p.mountpoint.as_c_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(fail(STEP_PROPAGATION, 0))?;
        private(p.mountpoint.as_c_str()).map_err(fail(STEP_PROPAGATION, 0))?;
    }
    do_mount(&p.rootfs).map_err(fail(STEP_ROOTFS, 0))?;
    for (i, m) in p.mounts.iter().enumerate() {
        do_mount(m).map_err(fail(STEP_MOUNT, i))?;
    }
    for (i, d) in p.devices.iter().enumerate() {
        make_device(d).map_err(fail(STEP_DEVICE, i))?;
    }
    for (target, link) in &p.dev_links {
        let _ = nix::unistd::symlinkat(target.as_c_str(), nix::fcntl::AT_FDCWD, link.as_c_str());
    }
    // The old root, held to name it after the pivot: there "." is the new
    // root for mount(2) (only umount2 looks through to the mount stacked
    // on top), as runc found.
    let old_root = nix::fcntl::open(
        c"/",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail(STEP_PIVOT, 0))?;
    nix::unistd::chdir(p.mountpoint.as_c_str()).map_err(fail(STEP_PIVOT, 0))?;
    nix::unistd::pivot_root(".", ".").map_err(fail(STEP_PIVOT, 0))?;
    nix::unistd::fchdir(&old_root).map_err(fail(STEP_PIVOT, 0))?;
    drop(old_root);
    // Made a slave tree first, as runc does, so that detaching it cannot
    // unmount anything on the host through a shared mount below it (a
    // disk under /mnt).
    nix::mount::mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(fail(STEP_PIVOT, 0))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(fail(STEP_PIVOT, 0))?;
    nix::unistd::chdir("/").map_err(fail(STEP_PIVOT, 0))?;
    for (i, path) in p.masked.iter().enumerate() {
        mask(path).map_err(fail(STEP_MASK, i))?;
    }
    for (i, path) in p.readonly.iter().enumerate() {
        readonly(path).map_err(fail(STEP_READONLY, i))?;
    }
    if p.readonly_root {
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(fail(STEP_ROOT_RO, 0))?;
    }
    if let Some(h) = &p.hostname {
        nix::unistd::sethostname(OsStr::from_bytes(h.as_bytes()))
            .map_err(fail(STEP_HOSTNAME, 0))?;
    }
    if p.loopback_up {
        sys::loopback_up().map_err(fail(STEP_LOOPBACK, 0))?;
    }
    Ok(())
}

/// The process's terminal, made inside the container (its own devpts):
/// the master goes out on the console socket, the slave becomes stdio and
/// the controlling terminal of the session the child leads.
fn terminal(p: &Plan, sock: RawFd) -> Result<(), Failure> {
    let (master, slave) = sys::open_pty(PTMX).map_err(|e| (STEP_TTY, 0, e))?;
    // Like a login's terminal, the user's own (`mesg`, `script`).
    let _ = sys::fchown(slave, p.uid);
    let sent = sys::send_fd(sock, master);
    sys::close(master);
    sent.map_err(|e| (STEP_TTY, 1, e))?;
    for i in 0..3 {
        sys::dup2(slave, i).map_err(|e| (STEP_TTY, 2, e))?;
    }
    sys::close(slave);
    sys::set_controlling_tty(0).map_err(|e| (STEP_TTY, 2, e))
}

fn install_seccomp(p: &Plan) -> Result<(), Failure> {
    if let Some(programs) = &p.seccomp {
        for (i, prog) in programs.iter().enumerate() {
            sys::seccomp(prog).map_err(|e| (STEP_SECCOMP, i, e))?;
        }
    }
    Ok(())
}

fn rlimit(res: libc::c_int, lim: &libc::rlimit64) -> Result<(), Errno> {
    crate::sys::setrlimit(res, lim)
}

fn do_mount(m: &MountOp) -> Result<(), Errno> {
    for d in &m.mkdirs {
        match nix::unistd::mkdir(d.as_c_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    if m.file_target {
        match nix::fcntl::open(
            m.target.as_c_str(),
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => drop(fd),
            Err(Errno::EISDIR) => {}
            Err(e) => return Err(e),
        }
    }
    nix::mount::mount(
        m.source.as_deref(),
        m.target.as_c_str(),
        m.fstype.as_deref(),
        m.flags,
        m.data.as_deref(),
    )?;
    // A second pass for bind flags (ro, nosuid...), a third for propagation.
    for flags in [m.remount, m.propagation].into_iter().flatten() {
        nix::mount::mount(
            None::<&str>,
            m.target.as_c_str(),
            None::<&str>,
            flags,
            None::<&str>,
        )?;
    }
    Ok(())
}

fn make_device(d: &DeviceOp) -> Result<(), Errno> {
    match nix::sys::stat::mknod(
        d.path.as_c_str(),
        d.kind,
        Mode::from_bits_truncate(d.mode),
        d.dev,
    ) {
        Ok(()) => {
            nix::unistd::chown(
                d.path.as_c_str(),
                Some(nix::unistd::Uid::from_raw(d.uid)),
                Some(nix::unistd::Gid::from_raw(d.gid)),
            )?;
            // mknod applies the umask; the spec's mode is exact.
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                d.path.as_c_str(),
                Mode::from_bits_truncate(d.mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
        }
        Err(Errno::EEXIST) => Ok(()),
        // Not allowed to make nodes: bind the host's.
        Err(Errno::EPERM) => {
            let fd = nix::fcntl::open(
                d.path.as_c_str(),
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )?;
            drop(fd);
            nix::mount::mount(
                Some(d.host.as_c_str()),
                d.path.as_c_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        }
        Err(e) => Err(e),
    }
}

fn mask(path: &std::ffi::CStr) -> Result<(), Errno> {
    let st = match nix::sys::stat::stat(path) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        nix::mount::mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    }
}

fn readonly(path: &std::ffi::CStr) -> Result<(), Errno> {
    match nix::mount::mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    }
    nix::mount::mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
}
