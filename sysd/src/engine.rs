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
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use corral_config::service::ServiceDef;
use corral_image::Store;
use corral_runtime::cgroup::Cgroup;
use corral_runtime::Process;
use log::{error, info, warn};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use oci_spec::runtime::Spec;
use tokio::sync::{broadcast, watch};

use crate::logs::{self, Entry, LogWriter, Stream};
use crate::restart::{Backoff, Decision, Exit};
use crate::spec;
use crate::state::{ApiFields, Record, RunState, StateDir, Status};

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
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("no such image: {0}")]
    NoSuchImage(String),
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
            Self::NoSuchContainer(_) | Self::NoSuchImage(_) => 404,
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
}

struct Inner {
    containers: BTreeMap<String, Container>,
}

pub struct Engine {
    cfg: EngineConfig,
    images: Arc<Store>,
    states: StateDir,
    inner: Mutex<Inner>,
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

fn now() -> String {
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
        let images = Store::open(cfg.data_root.join("images"))
            .with_context(|| format!("opening the image store in {}", cfg.data_root.display()))?;
        Ok(Arc::new(Self {
            states: StateDir::new(cfg.run_root.join("containers")),
            images: Arc::new(images),
            cfg,
            inner: Mutex::new(Inner {
                containers: BTreeMap::new(),
            }),
        }))
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn images(&self) -> &Arc<Store> {
        &self.images
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug; the data is still
        // the best we have, so keep going with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn data_dir(&self, id: &str) -> PathBuf {
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

    /// Makes a container from a definition. `def.image` must be set.
    /// `service` containers come from the system config: their image's
    /// default definition is laid under `def`, and they are supervised.
    pub fn create(
        self: &Arc<Self>,
        name: Option<&str>,
        def: ServiceDef,
        service: bool,
        api: ApiFields,
    ) -> Result<String> {
        let image_ref = def
            .image
            .clone()
            .ok_or_else(|| EngineError::Invalid("no image given".into()))?;
        let image = self.images.get(&image_ref).map_err(|e| match e {
            corral_image::Error::NotFound(_) => EngineError::NoSuchImage(image_ref.clone()),
            other => EngineError::Invalid(other.to_string()),
        })?;
        let def = if service {
            merged_with_image_default(&image, def).map_err(EngineError::Invalid)?
        } else {
            def
        };
        let id = new_id()?;
        let mut def = def;
        if !service && def.hostname.is_none() {
            // Docker's default: the short id.
            def.hostname = Some(id[..12].to_owned());
        }
        let name = match name {
            Some(n) if !valid_name(n) => {
                return Err(EngineError::Invalid(format!(
                    "invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )))
            }
            Some(n) => n.to_owned(),
            None => format!("c-{}", &id[..12]),
        };
        {
            let inner = self.lock();
            if let Some(other) = inner.containers.values().find(|c| c.record.name == name) {
                return Err(EngineError::Conflict(format!(
                    "the container name {name:?} is already in use by container {}",
                    other.record.id
                )));
            }
        }
        let run_dir = self.states.container_dir(&id);
        let rootfs = run_dir.join("rootfs");
        let image_config = image.config.config().clone().unwrap_or_default();
        let spec = spec::build(
            &def,
            &spec::Context {
                name: &name,
                image: &image_config,
                layers: &image.layers,
                rootfs: &rootfs,
                cgroup: self.cgroup_rel(&id),
                init_binary: self.cfg.init_binary.as_deref(),
                system: self.cfg.role.system_containers,
            },
        )
        .map_err(|e| EngineError::Invalid(e.to_string()))?;

        let record = Record {
            id: id.clone(),
            name: name.clone(),
            image: image_ref,
            image_id: image.id.clone(),
            def: def.clone(),
            service,
            created: now(),
            restart_count: 0,
            state: RunState::default(),
            api,
        };
        let made = (|| -> std::io::Result<()> {
            let data = self.data_dir(&id);
            for d in [rootfs.clone(), data.join("upper"), data.join("work")] {
                std::fs::create_dir_all(d)?;
            }
            // A bind source that does not exist yet is made a directory,
            // as Docker does for -v: the syslog and resolver directories
            // every system container binds, /run/udev, a new volume.
            // One below the cgroup mount is a subtree delegated to the
            // container (the user engine's): made with every controller
            // its ancestors can pass on, so its limits can be enforced.
            for m in spec.mounts().iter().flatten() {
                if m.typ().as_deref() == Some("bind") {
                    if let Some(src) = m.source() {
                        if let Ok(rel) = src.strip_prefix(&self.cfg.cgroup_root) {
                            corral_runtime::cgroup::delegate(&self.cfg.cgroup_root, rel)
                                .map_err(std::io::Error::other)?;
                        } else if std::fs::symlink_metadata(src).is_err() {
                            std::fs::create_dir_all(src)?;
                        }
                    }
                }
            }
            for stream in ["stdout", "stderr"] {
                nix::unistd::mkfifo(
                    &run_dir.join(stream),
                    nix::sys::stat::Mode::from_bits_truncate(0o600),
                )
                .map_err(std::io::Error::from)?;
            }
            let json = serde_json::to_vec_pretty(&spec).map_err(std::io::Error::other)?;
            crate::state::write_atomic(&run_dir.join("config.json"), &json)?;
            self.states.save(&record)
        })();
        if let Err(e) = made {
            let _ = self.states.remove(&id);
            let _ = std::fs::remove_dir_all(self.data_dir(&id));
            return Err(internal(format!("creating container {name}: {e}")));
        }
        let container = Container {
            backoff: Backoff::new(restart_policy(&def, service), def.max_retries()),
            record,
            spec,
            layers: image.layers.clone(),
            process: None,
            generation: 0,
            started: None,
            stopping: false,
            exits: watch::channel(0).0,
            removed: watch::channel(None).0,
            logs: broadcast::channel(256).0,
        };
        self.lock().containers.insert(id.clone(), container);
        info!("created container {name} ({}) from {}", &id[..12], image.id);
        Ok(id)
    }

    /// Starts a created or exited container.
    pub fn start(self: &Arc<Self>, id: &str) -> Result<()> {
        let (layers, name, generation) = {
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
            c.generation += 1;
            (c.layers.clone(), c.record.name.clone(), c.generation)
        };
        if self
            .lock()
            .containers
            .get(id)
            .map(|c| c.record.def.privileged == Some(true))
            == Some(true)
        {
            warn!("starting {name} privileged: every capability, the host's devices, no seccomp");
        }
        let run_dir = self.states.container_dir(id);
        let data = self.data_dir(id);
        // The reading ends are opened before the process starts: output a
        // short-lived process leaves in a FIFO nobody holds open is lost.
        let readers = self.open_readers(id).map_err(|e| {
            EngineError::Internal(format!("opening the output FIFOs of {name}: {e}"))
        })?;
        let request = crate::monitor::Request {
            id: id.to_owned(),
            lower: layers,
            upper: data.join("upper"),
            work: data.join("work"),
            mountpoint: run_dir.join("rootfs"),
            cgroup_root: self.cfg.cgroup_root.clone(),
            cgroup: crate::role::cgroup_path(&self.cfg.cgroup_parent, crate::monitor::CGROUP),
        };
        // Err: (message, whether the container's command is at fault)
        let spawned = crate::monitor::start(&self.cfg.monitor_binary, &run_dir, &request);
        let spawned = match spawned {
            Ok(s) => s,
            Err((e, exec)) => {
                let mut inner = self.lock();
                if let Some(c) = inner.containers.get_mut(id) {
                    c.record.state.status = Status::Exited;
                    c.record.state.error = e.clone();
                    c.record.state.exit_code = Some(if exec { 127 } else { 125 });
                    c.record.state.finished_at = Some(now());
                    let _ = self.states.save(&c.record);
                }
                drop(inner);
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
        self.watch(id.to_owned(), generation, running, true, Some(readers));
        Ok(())
    }

    /// Follows a running process: its output into the log, its exit into
    /// the record and the restart policy.
    fn watch(
        self: &Arc<Self>,
        id: String,
        generation: u64,
        running: Arc<Running>,
        child: bool,
        readers: Option<(std::fs::File, std::fs::File)>,
    ) {
        let engine = self.clone();
        let (tx_done, rx_done) = watch::channel(false);
        let pump_engine = self.clone();
        let pump_id = id.clone();
        let pump =
            tokio::spawn(async move { pump_engine.pump_logs(pump_id, readers, rx_done).await });
        tokio::spawn(async move {
            let _ = wait_exit(&running.monitor, child).await;
            // The monitor wrote how the container ended before it exited.
            let exit = crate::monitor::read_exit(&engine.states.container_dir(&id))
                .map_or(Exit::Unknown, |e| Exit::Code(e.code));
            let _ = tx_done.send(true);
            // The log is complete before anyone waiting hears of the exit.
            let _ = pump.await;
            engine.on_exit(&id, generation, exit);
        });
    }

    /// The engine's (reading) ends of the container's output FIFOs.
    fn open_readers(&self, id: &str) -> std::io::Result<(std::fs::File, std::fs::File)> {
        use std::os::unix::fs::OpenOptionsExt;
        let run_dir = self.states.container_dir(id);
        let open = |stream: &str| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(run_dir.join(stream))
        };
        Ok((open("stdout")?, open("stderr")?))
    }

    async fn pump_logs(
        self: Arc<Self>,
        id: String,
        readers: Option<(std::fs::File, std::fs::File)>,
        mut done: watch::Receiver<bool>,
    ) {
        let files = match readers {
            Some(r) => Ok(r),
            None => self.open_readers(&id),
        };
        let pair =
            files.and_then(|(o, e)| Ok((crate::sys::async_file(o)?, crate::sys::async_file(e)?)));
        let (out, err) = match pair {
            Ok(p) => p,
            Err(e) => {
                warn!("{id}: cannot read its output: {e}");
                return;
            }
        };
        let mut writer =
            LogWriter::new(self.log_path(&id), self.cfg.log_max_size, self.cfg.log_keep);
        let sender = match self.lock().containers.get(&id) {
            Some(c) => c.logs.clone(),
            None => return,
        };
        let mut buf = vec![0u8; 16 << 10];
        // A FIFO whose writers have all closed stays readable (EOF) for
        // good: stop polling it, or the task would spin.
        let (mut out_eof, mut err_eof) = (false, false);
        loop {
            let mut finished = false;
            tokio::select! {
                r = out.readable(), if !out_eof => if let Ok(mut g) = r {
                    out_eof = drain(&mut g, &mut buf, Stream::Stdout, &mut writer, &sender);
                },
                r = err.readable(), if !err_eof => if let Ok(mut g) = r {
                    err_eof = drain(&mut g, &mut buf, Stream::Stderr, &mut writer, &sender);
                },
                _ = done.changed() => finished = true,
            }
            if finished {
                // Whatever the process wrote before it ended.
                for (fd, stream) in [(&out, Stream::Stdout), (&err, Stream::Stderr)] {
                    read_all(fd.get_ref(), &mut buf, stream, &mut writer, &sender);
                }
                if let Ok(entries) = writer.flush_partial() {
                    for e in entries {
                        let _ = sender.send(e);
                    }
                }
                return;
            }
        }
    }

    fn on_exit(self: &Arc<Self>, id: &str, generation: u64, exit: Exit) {
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
        c.exits.send_modify(|n| *n += 1);
        drop(inner);
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
                if let Err(e) = engine.start(&id) {
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
                if let Err(e) = engine.remove(&id, true).await {
                    warn!("removing {id} (--rm): {e}");
                }
            });
        }
    }

    /// SIGTERM, then SIGKILL after `timeout`; waits for the exit. The
    /// restart policy does not apply to a stopped container.
    pub async fn stop(self: &Arc<Self>, id: &str, timeout: Option<Duration>) -> Result<()> {
        let (process, mut exits, timeout, name) = {
            let mut inner = self.lock();
            let c = inner
                .containers
                .get_mut(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            c.stopping = true;
            if c.record.state.status == Status::Restarting {
                c.record.state.status = Status::Exited;
                let _ = self.states.save(&c.record);
            }
            let Some(p) = c.process.clone() else {
                return Err(EngineError::NotModified(format!(
                    "container {} is not running",
                    c.record.name
                )));
            };
            (
                p,
                c.exits.subscribe(),
                timeout.unwrap_or_else(|| c.record.def.stop_timeout()),
                c.record.name.clone(),
            )
        };
        exits.borrow_and_update();
        let _ = process.signal(Signal::SIGTERM);
        if tokio::time::timeout(timeout, exits.changed())
            .await
            .is_err()
        {
            warn!(
                "{name} did not stop within {}; killing it",
                humantime::format_duration(timeout)
            );
            self.kill_cgroup(id, &process);
            let _ = exits.changed().await;
        }
        Ok(())
    }

    fn kill_cgroup(&self, id: &str, process: &Running) {
        let _ = process.signal(Signal::SIGKILL);
        let _ = Cgroup::open(&self.cfg.cgroup_root, Path::new(&self.cgroup_rel(id))).kill_all();
    }

    pub fn kill(&self, id: &str, signal: Signal) -> Result<()> {
        let inner = self.lock();
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
        let p = c.process.clone().ok_or_else(|| {
            EngineError::Conflict(format!("container {} is not running", c.record.name))
        })?;
        drop(inner);
        p.signal(signal).map_err(internal)
    }

    pub async fn restart(self: &Arc<Self>, id: &str, timeout: Option<Duration>) -> Result<()> {
        match self.stop(id, timeout).await {
            Ok(()) | Err(EngineError::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        if let Some(c) = self.lock().containers.get_mut(id) {
            c.backoff.reset();
            c.record.restart_count += 1;
        }
        self.start(id)
    }

    /// Waits until the container is not running (`next_exit`: until its
    /// next exit) and returns the exit code.
    pub async fn wait(&self, id: &str, next_exit: bool) -> Result<i64> {
        let mut exits = {
            let inner = self.lock();
            let c = inner
                .containers
                .get(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            let mut rx = c.exits.subscribe();
            rx.borrow_and_update();
            if !next_exit && c.process.is_none() && c.record.state.status != Status::Restarting {
                return Ok(i64::from(c.record.state.exit_code.unwrap_or(0)));
            }
            rx
        };
        loop {
            if exits.changed().await.is_err() {
                // Removed meanwhile.
                return Err(EngineError::NoSuchContainer(id.to_owned()));
            }
            let inner = self.lock();
            if let Some(c) = inner.containers.get(id) {
                if next_exit || c.record.state.status == Status::Exited {
                    return Ok(i64::from(c.record.state.exit_code.unwrap_or(0)));
                }
            }
        }
    }

    /// Waits until the container is removed; returns its last exit code.
    pub async fn wait_removed(&self, id: &str) -> Result<i64> {
        let mut rx = {
            let inner = self.lock();
            let c = inner
                .containers
                .get(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            c.removed.subscribe()
        };
        loop {
            if let Some(code) = *rx.borrow_and_update() {
                return Ok(code);
            }
            if rx.changed().await.is_err() {
                return Err(EngineError::NoSuchContainer(id.to_owned()));
            }
        }
    }

    /// Removes a container and everything it had: state, FIFOs, upper dir,
    /// logs, cgroup. A running one needs `force` (it is killed first).
    pub async fn remove(self: &Arc<Self>, id: &str, force: bool) -> Result<()> {
        let running = {
            let mut inner = self.lock();
            let c = inner
                .containers
                .get_mut(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            if c.process.is_some() && !force {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container {}: it is running (stop it first, or force)",
                    c.record.name
                )));
            }
            c.stopping = true;
            c.process.clone().map(|p| (p, c.exits.subscribe()))
        };
        if let Some((process, mut exits)) = running {
            exits.borrow_and_update();
            self.kill_cgroup(id, &process);
            let _ = tokio::time::timeout(Duration::from_secs(10), exits.changed()).await;
        }
        let Some(c) = self.lock().containers.remove(id) else {
            return Ok(());
        };
        let _ = Cgroup::open(&self.cfg.cgroup_root, Path::new(&self.cgroup_rel(id))).remove();
        logs::remove(&self.log_path(id), self.cfg.log_keep);
        let mut problems = Vec::new();
        if let Err(e) = std::fs::remove_dir_all(self.data_dir(id)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(format!("{}: {e}", self.data_dir(id).display()));
            }
        }
        if let Err(e) = self.states.remove(id) {
            problems.push(format!("{}: {e}", self.states.container_dir(id).display()));
        }
        let _ = c
            .removed
            .send(Some(i64::from(c.record.state.exit_code.unwrap_or(0))));
        info!("removed {}", c.record.name);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(internal(format!(
                "removed {}, but could not delete {}",
                c.record.name,
                problems.join(", ")
            )))
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
    ) -> Result<(broadcast::Receiver<Entry>, watch::Receiver<u64>)> {
        let inner = self.lock();
        let c = inner
            .containers
            .get(id)
            .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
        let mut exits = c.exits.subscribe();
        exits.borrow_and_update();
        Ok((c.logs.subscribe(), exits))
    }

    /// After an engine restart: reads the records in the state directory,
    /// re-attaches to every container whose process still runs (same pid
    /// and start time), and marks the others exited with an unknown status.
    pub fn adopt(self: &Arc<Self>) {
        let (records, broken) = self.states.load_all();
        for (path, e) in broken {
            error!(
                "ignoring the unreadable container record {}: {e}",
                path.display()
            );
        }
        for mut record in records {
            let id = record.id.clone();
            let run_dir = self.states.container_dir(&id);
            let spec: Spec = match std::fs::read(run_dir.join("config.json"))
                .map_err(|e| e.to_string())
                .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
            {
                Ok(s) => s,
                Err(e) => {
                    error!(
                        "container {} ({id}): unreadable config.json: {e}; dropping it",
                        record.name
                    );
                    let _ = self.states.remove(&id);
                    let _ = std::fs::remove_dir_all(self.data_dir(&id));
                    continue;
                }
            };
            let layers = self
                .images
                .get(&record.image_id)
                .map(|i| i.layers)
                .unwrap_or_default();
            let follow = |pid: Option<i32>, start: Option<u64>| match (pid, start) {
                (Some(pid), Some(start)) => Process::adopt(pid, start).unwrap_or_else(|e| {
                    warn!("{}: cannot re-attach to pid {pid}: {e}", record.name);
                    None
                }),
                _ => None,
            };
            let st = &record.state;
            let running = if st.status == Status::Running {
                let container = follow(st.pid, st.start_time);
                match st.monitor_pid {
                    Some(_) => follow(st.monitor_pid, st.monitor_start_time)
                        .map(|monitor| Running { container, monitor }),
                    // An earlier release's container has no monitor: its
                    // end is watched directly, its status stays unknown.
                    None => container.map(|c| Running {
                        container: follow(st.pid, st.start_time),
                        monitor: c,
                    }),
                }
                .map(Arc::new)
            } else {
                None
            };
            let was_running = matches!(record.state.status, Status::Running | Status::Restarting);
            let mut ended = None;
            if running.is_none() && was_running {
                // Its monitor recorded how it ended, if it had one.
                let exit = crate::monitor::read_exit(&run_dir);
                record.state.status = Status::Exited;
                record.state.pid = None;
                record.state.monitor_pid = None;
                let cgroup = Cgroup::open(&self.cfg.cgroup_root, Path::new(&self.cgroup_rel(&id)));
                record.state.oom_killed = cgroup.oom_kills().map(|n| n > 0).unwrap_or(false);
                match &exit {
                    Some(e) => {
                        record.state.exit_code = Some(e.code);
                        record.state.finished_at = Some(e.finished_at.clone());
                        record.state.error = String::new();
                    }
                    None => {
                        record.state.exit_code = Some(-1);
                        record.state.finished_at = Some(now());
                        record.state.error =
                            "exited while the engine was not running; exit status unknown".into();
                    }
                }
                let _ = cgroup.kill_all();
                let _ = cgroup.remove();
                let _ = self.states.save(&record);
                ended = Some(exit.map_or(Exit::Unknown, |e| Exit::Code(e.code)));
            }
            let name = record.name.clone();
            let mut container = Container {
                backoff: Backoff::new(
                    restart_policy(&record.def, record.service),
                    record.def.max_retries(),
                ),
                spec,
                layers,
                process: running.clone(),
                generation: 1,
                started: running.as_ref().map(|_| Instant::now()),
                stopping: false,
                exits: watch::channel(0).0,
                removed: watch::channel(None).0,
                logs: broadcast::channel(256).0,
                record,
            };
            // What ended while no engine ran gets its restart policy now.
            let restart = match ended {
                Some(exit) => match container.backoff.on_exit(exit, Duration::ZERO) {
                    Decision::Restart { after } => {
                        container.record.state.status = Status::Restarting;
                        Some(after)
                    }
                    Decision::Stop => None,
                },
                None => None,
            };
            let code = container.record.state.exit_code.unwrap_or(-1);
            self.lock().containers.insert(id.clone(), container);
            if let Some(r) = running {
                info!(
                    "re-attached to {name} (pid {})",
                    r.container.as_ref().map_or(r.monitor.pid, |c| c.pid)
                );
                // Not our child any more (init is the old engine's
                // children's parent now): its monitor records the exit.
                self.watch(id, 1, r, false, None);
            } else if was_running {
                match ended {
                    Some(Exit::Code(_)) => {
                        warn!("{name} exited with status {code} while the engine was down")
                    }
                    _ => warn!("{name} exited while the engine was down (status unknown)"),
                }
                if let Some(after) = restart {
                    self.restart_after(&id, 1, after, name);
                }
            }
        }
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

/// Reads what is there; true at end of file (no writer left).
fn drain(
    guard: &mut tokio::io::unix::AsyncFdReadyGuard<'_, std::fs::File>,
    buf: &mut [u8],
    stream: Stream,
    writer: &mut LogWriter,
    sender: &broadcast::Sender<Entry>,
) -> bool {
    let fd = guard.get_inner();
    match read_all(fd, buf, stream, writer, sender) {
        Drained::Empty => {
            guard.clear_ready();
            false
        }
        Drained::Eof => true,
    }
}

enum Drained {
    /// Nothing more for now (EAGAIN).
    Empty,
    /// No writer left.
    Eof,
}

/// Reads until the FIFO is empty or closed.
fn read_all(
    f: &std::fs::File,
    buf: &mut [u8],
    stream: Stream,
    writer: &mut LogWriter,
    sender: &broadcast::Sender<Entry>,
) -> Drained {
    use std::io::Read;
    let mut f = f;
    loop {
        match f.read(buf) {
            Ok(0) => return Drained::Eof,
            Ok(n) => match writer.feed(stream, &buf[..n]) {
                Ok(entries) => {
                    for e in entries {
                        let _ = sender.send(e);
                    }
                }
                Err(e) => warn!("writing a container log: {e}"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Drained::Empty,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!("reading container output: {e}");
                return Drained::Eof;
            }
        }
    }
}

/// Waits for the process to end. For our own child the status comes from
/// `waitid` (which also reaps it); for an adopted process only the fact.
async fn wait_exit(process: &Process, child: bool) -> Exit {
    let fd = match process
        .pidfd
        .try_clone()
        .map(std::fs::File::from)
        .and_then(crate::sys::async_file)
    {
        Ok(fd) => fd,
        Err(e) => {
            error!("watching pid {}: {e}", process.pid);
            return Exit::Unknown;
        }
    };
    loop {
        match fd.readable().await {
            Ok(mut g) => {
                g.clear_ready();
                // A pidfd turns readable once, at exit; check to be sure.
                match reap(std::os::fd::AsFd::as_fd(fd.get_ref()), child) {
                    Some(exit) => return exit,
                    None => continue,
                }
            }
            Err(e) => {
                error!("watching pid {}: {e}", process.pid);
                return Exit::Unknown;
            }
        }
    }
}

fn reap(fd: BorrowedFd<'_>, child: bool) -> Option<Exit> {
    use nix::sys::wait::{waitid, Id};
    if !child {
        // Readable means exited; only the parent can learn the status.
        return Some(Exit::Unknown);
    }
    match waitid(Id::PIDFd(fd), WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG) {
        Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(Exit::Code(128 + sig as i32)),
        Ok(WaitStatus::StillAlive) => None,
        Ok(_) => None,
        Err(nix::errno::Errno::EINTR) => None,
        Err(_) => Some(Exit::Unknown),
    }
}
