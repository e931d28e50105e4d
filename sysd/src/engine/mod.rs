//! The engine: containers, their processes and their supervision.
//!
//! One `Engine` per role. It owns the image store, the state directory and
//! a table of containers; the API and the service start-up both act
//! through it. Everything runs on one tokio thread: process exits arrive
//! as readable pidfds, container output through FIFOs, and a container's
//! table entry is only touched under a short-lived lock, never across an
//! `.await`.
//!
//! Output goes through a FIFO per stream in the container's state
//! directory. The container's end is opened read-write, so the FIFO always
//! has a reader and a container never gets SIGPIPE while the engine is
//! down (it blocks once the pipe buffer is full instead); a restarted
//! engine reopens the FIFOs and carries on. Together with the pid and
//! start time in the state record, this is what lets the engine restart
//! without disturbing its containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use corral_config::service::ServiceDef;
use corral_image::Store;
use corral_runtime::cgroup::Cgroup;
use corral_runtime::Process;
use log::{error, info, warn};
use nix::sys::signal::Signal;

use oci_spec::runtime::Spec;
use tokio::sync::{broadcast, watch};

pub mod admin;
mod adopt;
mod archive;
mod create;
mod events;
mod exec;
mod follow;
mod lifecycle;
mod net;
mod networks;
mod stats;
mod volumes;

pub use events::Event;
pub use stats::Sample;

pub use exec::{Exec, ExecConfig, ExecState, ExecStreams, StartFailure};

use crate::logs::{self, Entry};
use crate::restart::{Backoff, Decision, Exit};
use crate::state::{Record, RunState, StateDir, Status};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// What the role changes: socket, roots, what containers get.
    pub role: crate::role::RolePolicy,
    /// Transient state: `/run/corral/<role>`.
    pub run_root: PathBuf,
    /// Images and container data: `/var/lib/corral/<role>`.
    pub data_root: PathBuf,
    /// The cgroup2 mount, `/sys/fs/cgroup`.
    pub cgroup_root: PathBuf,
    /// Containers' cgroups go below this, e.g. `corral/system`.
    pub cgroup_parent: String,
    /// tini, for containers that ask for an init.
    pub init_binary: Option<PathBuf>,
    /// `corral-monitor`, the parent of every container (see `monitor`).
    pub monitor_binary: PathBuf,
    pub log_max_size: u64,
    pub log_keep: u32,
    /// Networks (the user engine's, when netavark is there): the tools
    /// and the default bridge's subnet. Without them, containers get only
    /// a loopback.
    pub networking: Option<crate::network::Networking>,
    /// Registries to pull from and push to (`[user-engine]`).
    pub registries: crate::registry::Settings,
    /// DNS servers for containers that set none (`[user-engine] dns`);
    /// empty: the machine's.
    pub dns: Vec<std::net::IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("no such image: {0}")]
    NoSuchImage(String),
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    #[error("{0}")]
    NoSuchVolume(String),
    #[error("{0}")]
    NoSuchNetwork(String),
    /// Docker's 403: a pre-defined network, one with active endpoints.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotModified(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// The HTTP status the API answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NoSuchContainer(_)
            | Self::NoSuchImage(_)
            | Self::NoSuchExec(_)
            | Self::NoSuchVolume(_)
            | Self::NoSuchNetwork(_) => 404,
            Self::Forbidden(_) => 403,
            Self::Conflict(_) => 409,
            Self::NotModified(_) => 304,
            Self::Invalid(_) => 400,
            Self::Internal(_) => 500,
        }
    }
}

fn internal(what: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(what.to_string())
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// A container as the API shows it.
/// Logged entries, and when following: new entries and exit notices.
pub type LogsView = (
    Vec<Entry>,
    Option<broadcast::Receiver<Entry>>,
    Option<watch::Receiver<u64>>,
);

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub record: Record,
    pub spec: Option<Spec>,
}

/// A started container.
pub struct Running {
    /// The container's first process, for signals; None when it had
    /// ended before the engine could follow it.
    container: Option<Process>,
    /// Its monitor, whose end means the container's (for a container an
    /// earlier release started without one: the container itself).
    monitor: Process,
}

impl Running {
    fn signal(&self, signal: Signal) -> std::result::Result<(), corral_runtime::Error> {
        match &self.container {
            Some(p) => p.signal(signal),
            None => Ok(()),
        }
    }
}

struct Container {
    record: Record,
    spec: Spec,
    layers: Vec<PathBuf>,
    process: Option<Arc<Running>>,
    /// Bumped on each start, so a late exit or restart timer of an earlier
    /// run cannot act on the current one.
    generation: u64,
    started: Option<Instant>,
    backoff: Backoff,
    /// Set by stop and remove: the restart policy does not apply.
    stopping: bool,
    /// Counts exits; waiters watch it.
    exits: watch::Sender<u64>,
    /// Set at removal, to the last exit code.
    removed: watch::Sender<Option<i64>>,
    logs: broadcast::Sender<Entry>,
    /// The output as it is read, for attached clients (a prompt without
    /// a newline reaches them at once; the log waits for the line).
    output: broadcast::Sender<Chunk>,
    /// Held shared by a copy (`docker cp`) and exclusively by a start:
    /// a stopped container's filesystem is mounted by one at a time.
    fs_lock: Arc<tokio::sync::RwLock<()>>,
}

/// Output as read from a FIFO.
pub type Chunk = (crate::logs::Stream, bytes::Bytes);

struct Inner {
    containers: BTreeMap<String, Container>,
}

pub struct Engine {
    cfg: EngineConfig,
    images: Arc<Store>,
    states: StateDir,
    inner: Mutex<Inner>,
    volumes: crate::volumes::VolumeStore,
    networks: Option<crate::network::NetworkStore>,
    events: events::Events,
    /// `docker exec` instances, by id.
    execs: Mutex<BTreeMap<String, Arc<Exec>>>,
    /// Pulls in progress, one lock per blob they fetch.
    blob_locks: Arc<crate::registry::BlobLocks>,
}

/// A fresh random container id: 64 hex digits, as Docker's.
fn new_id() -> Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| internal(format!("reading /dev/urandom: {e}")))?;
    Ok(hex::encode(buf))
}

pub(crate) fn now() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

/// Docker's container name rule.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128
}

impl Engine {
    pub fn open(cfg: EngineConfig) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context as _;
        for dir in [&cfg.run_root, &cfg.data_root] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // Spooled uploads and build contexts belong to requests that
        // ended with the last engine (a crash, a power cut).
        let uploads = cfg.data_root.join("uploads");
        if uploads.exists() {
            if let Err(e) = std::fs::remove_dir_all(&uploads) {
                log::warn!("removing {}: {e}", uploads.display());
            }
        }
        let images = Store::open(cfg.data_root.join("images"))
            .with_context(|| format!("opening the image store in {}", cfg.data_root.display()))?;
        let volumes = crate::volumes::VolumeStore::open(cfg.data_root.join("volumes"))
            .with_context(|| format!("opening the volumes in {}", cfg.data_root.display()))?;
        let networks = match &cfg.networking {
            Some(n) => Some(
                crate::network::NetworkStore::open(
                    cfg.data_root.join("networks"),
                    n.tool.clone(),
                    n.bridge_subnet,
                )
                .with_context(|| format!("opening the networks in {}", cfg.data_root.display()))?,
            ),
            None => None,
        };
        Ok(Arc::new(Self {
            volumes,
            networks,
            events: events::Events::default(),
            states: StateDir::new(if cfg.role.persistent_records {
                cfg.data_root.join("containers")
            } else {
                cfg.run_root.join("containers")
            }),
            images: Arc::new(images),
            cfg,
            inner: Mutex::new(Inner {
                containers: BTreeMap::new(),
            }),
            execs: Mutex::new(BTreeMap::new()),
            blob_locks: Default::default(),
        }))
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn images(&self) -> &Arc<Store> {
        &self.images
    }

    pub fn blob_locks(&self) -> &Arc<crate::registry::BlobLocks> {
        &self.blob_locks
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug; the data is still
        // the best we have, so keep going with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Transient: the output FIFOs, the rootfs mountpoint, the monitor's
    /// request and exit record. Made again at start after a reboot.
    fn run_dir(&self, id: &str) -> PathBuf {
        self.cfg.run_root.join("containers").join(id)
    }

    /// The runtime spec, beside the record.
    fn spec_path(&self, id: &str) -> PathBuf {
        self.states.container_dir(id).join("config.json")
    }

    /// Persistent: the log, the upper and work dirs of the overlay (a
    /// build step commits its upper dir).
    pub(crate) fn data_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("containers").join(id)
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.data_dir(id).join("container.log")
    }

    fn cgroup_rel(&self, id: &str) -> String {
        crate::role::cgroup_path(&self.cfg.cgroup_parent, id)
    }

    /// Finds a container by id, unique id prefix or name.
    pub fn resolve(&self, reference: &str) -> Result<String> {
        let inner = self.lock();
        resolve_in(&inner, reference)
    }

    /// Image ids in use by any container (`rmi` refuses them).
    pub fn image_in_use(&self, image_id: &str) -> bool {
        self.lock()
            .containers
            .values()
            .any(|c| c.record.image_id == image_id)
    }

    /// Starts a created or exited container.
    pub async fn start(self: &Arc<Self>, id: &str) -> Result<()> {
        let (fs_lock, layers, name, generation, tty, stdin, size) = {
            let mut inner = self.lock();
            let c = inner
                .containers
                .get_mut(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            if c.process.is_some() {
                return Err(EngineError::NotModified(format!(
                    "container {} is already running",
                    c.record.name
                )));
            }
            c.stopping = false;
            c.record.stopped_by_hand = false;
            c.generation += 1;
            (
                c.fs_lock.clone(),
                c.layers.clone(),
                c.record.name.clone(),
                c.generation,
                c.record.api.tty,
                c.record.api.open_stdin,
                c.record.api.console_size,
            )
        };
        // A copy out of or into the stopped filesystem finishes first.
        let _fs = fs_lock.write_owned().await;
        if self
            .lock()
            .containers
            .get(id)
            .map(|c| c.record.def.privileged == Some(true))
            == Some(true)
        {
            warn!("starting {name} privileged: every capability, the host's devices, no seccomp");
        }
        let run_dir = self.run_dir(id);
        let data = self.data_dir(id);
        self.prepare_run_dir(id)
            .map_err(|e| EngineError::Internal(format!("preparing {}: {e}", run_dir.display())))?;
        // The reading ends are opened before the process starts: output a
        // short-lived process leaves in a FIFO nobody holds open is lost.
        let readers = self.open_readers(id).map_err(|e| {
            EngineError::Internal(format!("opening the output FIFOs of {name}: {e}"))
        })?;
        let request = crate::monitor::Request {
            id: id.to_owned(),
            spec: self.spec_path(id),
            lower: layers,
            upper: data.join("upper"),
            work: data.join("work"),
            mountpoint: run_dir.join("rootfs"),
            cgroup_root: self.cfg.cgroup_root.clone(),
            cgroup: crate::role::cgroup_path(&self.cfg.cgroup_parent, crate::monitor::CGROUP),
            seccomp_cache: self.cfg.run_root.join("seccomp"),
            tty,
            stdin,
            size,
        };
        if let Err(e) = self.network_up(id).await {
            if let Some(c) = self.lock().containers.get_mut(id) {
                c.record.state.status = Status::Exited;
                c.record.state.error = e.to_string();
                c.record.state.exit_code = Some(125);
                c.record.state.finished_at = Some(now());
                let _ = self.states.save(&c.record);
            }
            self.remove_if_auto(id);
            return Err(e);
        }
        // Err: (message, whether the container's command is at fault)
        let spawned = crate::monitor::start(&self.cfg.monitor_binary, &run_dir, &request);
        let spawned = match spawned {
            Ok(s) => s,
            Err((e, exec)) => {
                if let Some(c) = self.lock().containers.get_mut(id) {
                    c.record.state.status = Status::Exited;
                    c.record.state.error = e.clone();
                    c.record.state.exit_code = Some(if exec { 127 } else { 125 });
                    c.record.state.finished_at = Some(now());
                    let _ = self.states.save(&c.record);
                }
                self.network_down(id).await;
                // The runtime may have made the cgroup before failing.
                let _ =
                    Cgroup::open(&self.cfg.cgroup_root, Path::new(&self.cgroup_rel(id))).remove();
                let message = format!("starting {name}: {e}");
                self.remove_if_auto(id);
                return Err(if exec {
                    EngineError::Invalid(message)
                } else {
                    EngineError::Internal(message)
                });
            }
        };
        let pid = spawned.pid;
        let running = Arc::new(Running {
            container: spawned.container,
            monitor: spawned.monitor,
        });
        {
            let mut inner = self.lock();
            if let Some(c) = inner.containers.get_mut(id) {
                c.record.state = RunState {
                    status: Status::Running,
                    pid: Some(pid),
                    start_time: Some(spawned.start_time),
                    monitor_pid: Some(running.monitor.pid.as_raw()),
                    monitor_start_time: Some(running.monitor.start_time),
                    started_at: Some(now()),
                    ..RunState::default()
                };
                c.process = Some(running.clone());
                c.started = Some(Instant::now());
                if let Err(e) = self.states.save(&c.record) {
                    error!("saving the state of {name}: {e}");
                }
            }
        }
        info!("started {name} (pid {pid})");
        self.container_event(id, "start", &[]);
        self.watch(id.to_owned(), generation, running, true, Some(readers));
        Ok(())
    }

    async fn on_exit(self: &Arc<Self>, id: &str, generation: u64, exit: Exit) {
        // Off the network before anyone hears of the exit: a `wait`er
        // that starts it again, or another container, can have its ports.
        self.network_down(id).await;
        let cgroup = Cgroup::open(&self.cfg.cgroup_root, Path::new(&self.cgroup_rel(id)));
        let oom = cgroup.oom_kills().map(|n| n > 0).unwrap_or(false);
        // Whatever the process left behind in its cgroup (a daemon that
        // double-forked in a host-pid container) goes with it.
        if let Err(e) = cgroup.kill_all() {
            warn!("{id}: killing what is left in its cgroup: {e}");
        }
        if let Err(e) = cgroup.remove() {
            warn!("{id}: removing its cgroup: {e}");
        }
        let mut inner = self.lock();
        let Some(c) = inner.containers.get_mut(id) else {
            return;
        };
        if c.generation != generation {
            return;
        }
        let ran_for = c.started.map(|s| s.elapsed()).unwrap_or_default();
        c.process = None;
        c.record.state.status = Status::Exited;
        c.record.state.paused = false;
        c.record.state.pid = None;
        c.record.state.start_time = None;
        c.record.state.finished_at = Some(now());
        c.record.state.oom_killed = oom;
        match exit {
            Exit::Code(code) => c.record.state.exit_code = Some(code),
            Exit::Unknown => {
                c.record.state.exit_code = Some(-1);
                c.record.state.error =
                    "exited while the engine was not running; exit status unknown".into();
            }
        }
        let name = c.record.name.clone();
        let what = match (exit, oom) {
            (_, true) => "was killed by the OOM killer (memory limit reached)".to_owned(),
            (Exit::Code(code), _) => format!("exited with status {code}"),
            (Exit::Unknown, _) => "exited (status unknown)".to_owned(),
        };
        // API containers follow their restart policy too (`no` unless
        // `--restart` says otherwise); a stopped one never restarts.
        let decision = if !c.stopping {
            c.backoff.on_exit(exit, ran_for)
        } else {
            Decision::Stop
        };
        if let Decision::Restart { .. } = decision {
            c.record.state.status = Status::Restarting;
        }
        if let Err(e) = self.states.save(&c.record) {
            error!("saving the state of {name}: {e}");
        }
        let code = c.record.state.exit_code.unwrap_or(-1);
        c.exits.send_modify(|n| *n += 1);
        drop(inner);
        if oom {
            self.container_event(id, "oom", &[]);
        }
        self.container_event(id, "die", &[("exitCode", code.to_string())]);
        match decision {
            Decision::Restart { after } => {
                info!(
                    "{name} {what}; restarting in {}",
                    humantime::format_duration(after)
                );
                self.restart_after(id, generation, after, name);
            }
            Decision::Stop => {
                info!("{name} {what}");
                self.remove_if_auto(id);
            }
        }
    }

    /// Starts `id` again after `after`, unless it was stopped or started
    /// by hand meanwhile (another generation).
    fn restart_after(self: &Arc<Self>, id: &str, generation: u64, after: Duration, name: String) {
        let engine = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let still_wanted = {
                let mut inner = engine.lock();
                match inner.containers.get_mut(&id) {
                    Some(c) if c.generation == generation && !c.stopping => {
                        c.record.restart_count += 1;
                        true
                    }
                    _ => false,
                }
            };
            if still_wanted {
                if let Err(e) = engine.start(&id).await {
                    error!("restarting {name}: {e}");
                }
            }
        });
    }

    /// `--rm`: a container that has ended (or could not start) goes.
    fn remove_if_auto(self: &Arc<Self>, id: &str) {
        let auto = self
            .lock()
            .containers
            .get(id)
            .is_some_and(|c| c.record.api.auto_remove);
        if auto {
            let engine = self.clone();
            let id = id.to_owned();
            tokio::spawn(async move {
                if let Err(e) = engine.remove_with(&id, true, true).await {
                    warn!("removing {id} (--rm): {e}");
                }
            });
        }
    }

    pub fn list(&self) -> Vec<Snapshot> {
        let inner = self.lock();
        let mut v: Vec<Snapshot> = inner
            .containers
            .values()
            .map(|c| Snapshot {
                record: c.record.clone(),
                spec: None,
            })
            .collect();
        v.sort_by(|a, b| b.record.created.cmp(&a.record.created));
        v
    }

    pub fn inspect(&self, id: &str) -> Result<Snapshot> {
        let inner = self.lock();
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
        Ok(Snapshot {
            record: c.record.clone(),
            spec: Some(c.spec.clone()),
        })
    }

    /// The logged output (last `tail` entries), and with `follow` a
    /// receiver for what comes next (None once the container is not
    /// running).
    pub fn logs(&self, id: &str, tail: Option<usize>, follow: bool) -> Result<LogsView> {
        let (rx, exits) = {
            let inner = self.lock();
            let c = inner
                .containers
                .get(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            if follow && c.process.is_some() {
                let mut e = c.exits.subscribe();
                e.borrow_and_update();
                (Some(c.logs.subscribe()), Some(e))
            } else {
                (None, None)
            }
        };
        let entries = logs::read(&self.log_path(id), self.cfg.log_keep, tail).map_err(internal)?;
        Ok((entries, rx, exits))
    }

    /// New output from now on, and exit notices, whether the container
    /// runs yet or not (`attach` comes before `start`).
    pub fn subscribe(
        &self,
        id: &str,
    ) -> Result<(broadcast::Receiver<Chunk>, watch::Receiver<u64>)> {
        let inner = self.lock();
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
        let mut exits = c.exits.subscribe();
        exits.borrow_and_update();
        Ok((c.output.subscribe(), exits))
    }

    /// The writing end of the container's input (`-i`), for an attached
    /// client. Opened read-write, so it opens whether or not the container
    /// runs yet (`docker run -i` attaches before it starts).
    pub fn open_input(&self, id: &str) -> Result<tokio::net::unix::pipe::Sender> {
        let name = {
            let inner = self.lock();
            let c = inner
                .containers
                .get(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            if !c.record.api.open_stdin {
                return Err(EngineError::Conflict(format!(
                    "container {} was not created with its input open (-i)",
                    c.record.name
                )));
            }
            c.record.name.clone()
        };
        let path = self.run_dir(id).join("stdin");
        tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(&path)
            .map_err(|e| internal(format!("opening the input of {name}: {e}")))
    }

    /// Ends the container's input (`StdinOnce`: the attached client's
    /// ended), keeping `sink` open until the container runs: data in a
    /// FIFO nobody has open is dropped, and `docker run -i` can finish
    /// writing before the container has started.
    pub async fn close_input(&self, id: &str, sink: tokio::net::unix::pipe::Sender) {
        let mut exits = match self.lock().containers.get(id) {
            Some(c) => c.exits.subscribe(),
            None => return,
        };
        loop {
            match self.lock().containers.get(id) {
                Some(c) if c.process.is_some() => break,
                Some(c) if c.record.state.status == Status::Created => {}
                // Ended or gone: nobody to tell.
                _ => return,
            }
            // Started or ended meanwhile, or look again in a while.
            let _ = tokio::time::timeout(Duration::from_millis(100), exits.changed()).await;
        }
        drop(sink);
        let _ = self.control(id, &crate::monitor::relay::Control::CloseStdin);
    }

    /// Sends a request to the container's monitor (a window size, the end
    /// of input).
    pub fn control(&self, id: &str, request: &crate::monitor::relay::Control) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let name = {
            let inner = self.lock();
            let c = inner
                .containers
                .get(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            if c.process.is_none() {
                return Err(EngineError::Conflict(format!(
                    "container {} is not running",
                    c.record.name
                )));
            }
            c.record.name.clone()
        };
        // Non-blocking: no monitor reading (it has just ended) is an
        // error, not a hang. One short line is written whole.
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.run_dir(id).join("ctl"))
            .and_then(|mut f| f.write_all(request.line().as_bytes()))
            .map_err(|e| EngineError::Conflict(format!("container {name} is not running: {e}")))
    }

    /// The names of containers and whether each is running, for the
    /// service start-up.
    pub fn by_name(&self, name: &str) -> Option<(String, bool, ServiceDef, Status, Option<i32>)> {
        let inner = self.lock();
        inner
            .containers
            .values()
            .find(|c| c.record.name == name)
            .map(|c| {
                (
                    c.record.id.clone(),
                    c.process.is_some(),
                    c.record.def.clone(),
                    c.record.state.status,
                    c.record.state.exit_code,
                )
            })
    }
}

fn resolve_in(inner: &Inner, reference: &str) -> Result<String> {
    if inner.containers.contains_key(reference) {
        return Ok(reference.to_owned());
    }
    let name = reference.strip_prefix('/').unwrap_or(reference);
    if let Some(c) = inner.containers.values().find(|c| c.record.name == name) {
        return Ok(c.record.id.clone());
    }
    let matches: Vec<&String> = inner
        .containers
        .keys()
        .filter(|id| !reference.is_empty() && id.starts_with(reference))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(EngineError::NoSuchContainer(reference.to_owned())),
        _ => Err(EngineError::Invalid(format!(
            "{reference:?} matches several containers; give more of the id"
        ))),
    }
}

/// A service restarts by default (its definition's default); a container
/// made through the API only when asked, as Docker's `--restart no`.
pub fn restart_policy(def: &ServiceDef, service: bool) -> corral_config::service::Restart {
    if service {
        def.restart()
    } else {
        def.restart.unwrap_or(corral_config::service::Restart::No)
    }
}

/// The image's default definition (label
/// [`corral_image::labels::SERVICE`]) with the config's on top.
pub fn merged_with_image_default(
    image: &corral_image::Image,
    def: ServiceDef,
) -> std::result::Result<ServiceDef, String> {
    use corral_image::labels::SERVICE;
    let Some(text) = image.label(SERVICE) else {
        return Ok(def);
    };
    let mut base = ServiceDef::parse(text).map_err(|e| {
        format!(
            "image {}: its default service definition (label {SERVICE}) is invalid: {e}",
            image.names.first().unwrap_or(&image.id)
        )
    })?;
    base.overlay(&def);
    Ok(base)
}
