//! A container's filesystem for `docker cp` (see [`crate::archive`]).
//!
//! A running container's is the one its processes see, volumes and binds
//! included: its root through `/proc/PID/root`. A stopped container's is
//! mounted as its start would mount it (the image's layers under its
//! upper dir, then its bind mounts and volumes), in a mount namespace of
//! a thread of its own, so nothing of it is ever visible in the engine's
//! namespace and all of it goes when the thread ends, whatever happened.
//! Starting a container waits for a copy in progress on its stopped
//! filesystem (two overlays on one upper dir are undefined behaviour), and
//! a copy waits for a start in progress.

use std::path::PathBuf;
use std::sync::Arc;

use nix::mount::MsFlags;
use pathrs::Root;

use crate::archive::fd_path;

use super::{internal, Engine, EngineError, Result, Running};

/// A stopped container's filesystem, as its start would mount it.
struct Stopped {
    lower: Vec<PathBuf>,
    upper: PathBuf,
    work: PathBuf,
    mountpoint: PathBuf,
    readonly: bool,
    binds: Vec<Bind>,
}

struct Bind {
    source: PathBuf,
    destination: PathBuf,
    readonly: bool,
}

enum View {
    Running(Arc<Running>),
    Stopped(Stopped),
}

impl Engine {
    /// Runs `f` on a thread of its own with the root of the container's
    /// filesystem; `f`'s paths are resolved inside it (see
    /// [`crate::archive`]).
    /// `event`, if given, is the container event announced once `f` ran
    /// (Docker's `archive-path`, `extract-to-dir`).
    pub async fn in_root<T, F>(
        self: &Arc<Self>,
        reference: &str,
        event: Option<&'static str>,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Root) -> T + Send + 'static,
    {
        self.in_root_with(reference, event, true, f).await
    }

    /// Runs `f` with the root of a stopped container's own filesystem:
    /// its image's layers under its upper dir, without the volumes and
    /// the `/etc` files a start binds over them. What the builder
    /// changes there is the step's layer, as Docker's `COPY` into a
    /// `VOLUME` path is.
    pub async fn in_layers<T, F>(self: &Arc<Self>, reference: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Root) -> T + Send + 'static,
    {
        self.in_root_with(reference, None, false, f).await
    }

    async fn in_root_with<T, F>(
        self: &Arc<Self>,
        reference: &str,
        event: Option<&'static str>,
        with_binds: bool,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Root) -> T + Send + 'static,
    {
        let id = self.resolve(reference)?;
        let lock = self
            .lock()
            .containers
            .get(&id)
            .map(|c| c.fs_lock.clone())
            .ok_or_else(|| EngineError::NoSuchContainer(reference.to_owned()))?;
        let guard = lock.read_owned().await;
        let view = {
            let inner = self.lock();
            let c = inner
                .containers
                .get(&id)
                .ok_or_else(|| EngineError::NoSuchContainer(reference.to_owned()))?;
            match c.process.as_ref().filter(|r| r.container.is_some()) {
                Some(_) if !with_binds => {
                    return Err(EngineError::Conflict(format!(
                        "container {reference} is running: its layers alone cannot be shown"
                    )))
                }
                Some(r) => View::Running(r.clone()),
                None => View::Stopped(Stopped {
                    lower: c.layers.clone(),
                    upper: self.data_dir(&id).join("upper"),
                    work: self.data_dir(&id).join("work"),
                    mountpoint: self.run_dir(&id).join("rootfs"),
                    readonly: c
                        .spec
                        .root()
                        .as_ref()
                        .and_then(|r| r.readonly())
                        .unwrap_or(false),
                    binds: if with_binds {
                        binds(&c.spec)
                    } else {
                        Vec::new()
                    },
                }),
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("cp".into())
            .spawn(move || {
                let _guard = guard;
                let root = match &view {
                    View::Running(r) => running_root(r),
                    View::Stopped(s) => stopped_root(s),
                };
                let _ = tx.send(root.map(|root| f(&root)));
            })
            .map_err(|e| internal(format!("starting a thread: {e}")))?;
        let result = rx
            .await
            .map_err(|_| internal("the copy's thread ended without an answer"))?;
        if let (Ok(_), Some(action)) = (&result, event) {
            self.container_event(&id, action, &[]);
        }
        result
    }
}

/// The bind mounts of a spec (volumes, `-v`, the `/etc` files), which
/// a stopped container's filesystem shows as its start would.
fn binds(spec: &oci_spec::runtime::Spec) -> Vec<Bind> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| m.typ().as_deref() == Some("bind"))
        .filter_map(|m| {
            let options = m.options().clone().unwrap_or_default();
            Some(Bind {
                source: m.source().clone()?,
                destination: m.destination().clone(),
                readonly: options.iter().any(|o| o == "ro"),
            })
        })
        .collect()
}

fn running_root(r: &Running) -> Result<Root> {
    let p = r
        .container
        .as_ref()
        .ok_or_else(|| internal("the container has no process"))?;
    let fd = nix::fcntl::open(
        format!("/proc/{}/root", p.pid).as_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| internal(format!("opening the root of pid {}: {e}", p.pid)))?;
    // The pidfd says whether that pid was still the container's when
    // the root was opened, not a reused one.
    if !p.is_alive() {
        return Err(EngineError::Conflict(
            "the container stopped during the copy: try again".into(),
        ));
    }
    Ok(Root::from_fd(fd))
}

fn stopped_root(s: &Stopped) -> Result<Root> {
    use nix::mount::mount;
    use nix::sched::{unshare, CloneFlags};
    let fail = |what: &str, e: &dyn std::fmt::Display| internal(format!("{what}: {e}"));
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS)
        .map_err(|e| fail("a mount namespace for the copy", &e))?;
    // Nothing mounted here may propagate to the engine's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| fail("making the copy's mounts private", &e))?;
    let data = corral_runtime::overlay_options(&s.lower, &s.upper, &s.work)
        .map_err(|e| fail("the container's layers", &e))?;
    let flags = if s.readonly {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    mount(
        Some("overlay"),
        &s.mountpoint,
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| fail("mounting the container's filesystem", &e))?;
    let root = Root::open(&s.mountpoint).map_err(|e| fail("opening it", &e))?;
    for b in &s.binds {
        // A destination the container's start would make (a volume on a
        // path the image lacks) does not exist yet: nothing to show there.
        let Ok(target) = root.resolve(&b.destination) else {
            continue;
        };
        if std::fs::symlink_metadata(&b.source).is_err() {
            continue;
        }
        let at = fd_path(&target);
        mount(
            Some(&b.source),
            &at,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| fail(&format!("mounting {}", b.destination.display()), &e))?;
        if b.readonly {
            let mounted = root
                .resolve(&b.destination)
                .map_err(|e| fail(&format!("opening {}", b.destination.display()), &e))?;
            mount(
                None::<&str>,
                &fd_path(&mounted),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| fail(&format!("making {} read-only", b.destination.display()), &e))?;
        }
    }
    Ok(root)
}
