//! Stopping, killing, restarting, waiting for and removing containers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use corral_runtime::cgroup::Cgroup;
use log::{info, warn};
use nix::sys::signal::Signal;

use super::{internal, Engine, EngineError, Result, Running};
use crate::logs;
use crate::state::Status;

impl Engine {
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
            c.record.stopped_by_hand = true;
            if c.record.state.status == Status::Restarting {
                c.record.state.status = Status::Exited;
            }
            let _ = self.states.save(&c.record);
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
        self.thaw_for_signal(id);
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
        self.container_event(id, "stop", &[]);
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
        p.signal(signal).map_err(internal)?;
        self.thaw_for_signal(id);
        self.container_event(id, "kill", &[("signal", (signal as i32).to_string())]);
        Ok(())
    }

    /// A paused container is thawed once signalled, as Docker does, so
    /// that it can act on the signal (a SIGKILL goes through anyway).
    fn thaw_for_signal(&self, id: &str) {
        let paused = self
            .lock()
            .containers
            .get(id)
            .is_some_and(|c| c.record.state.paused);
        if paused {
            let cgroup = Cgroup::open(&self.cfg.cgroup_root, Path::new(&self.cgroup_rel(id)));
            if let Err(e) = cgroup.set_frozen(false) {
                warn!("thawing {id} for a signal: {e}");
            }
            self.set_paused(id, false);
        }
    }

    fn set_paused(&self, id: &str, paused: bool) {
        if let Some(c) = self.lock().containers.get_mut(id) {
            c.record.state.paused = paused;
            let _ = self.states.save(&c.record);
        }
    }

    /// `docker pause` (`pause = true`) and `unpause`: every process of
    /// the container frozen or thawed by the cgroup freezer, as runc
    /// does; it stays running, and its monitor and logs carry on.
    pub async fn pause(&self, id: &str, pause: bool) -> Result<()> {
        {
            let inner = self.lock();
            let c = inner
                .containers
                .get(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            if c.process.is_none() || c.record.state.status != Status::Running {
                return Err(EngineError::Conflict(format!(
                    "Container {id} is not running"
                )));
            }
            match (pause, c.record.state.paused) {
                (true, true) => {
                    return Err(EngineError::Conflict(format!(
                        "Container {id} is already paused"
                    )))
                }
                (false, false) => {
                    return Err(EngineError::Conflict(format!(
                        "Container {id} is not paused"
                    )))
                }
                _ => {}
            }
        }
        let cgroup = Cgroup::open(&self.cfg.cgroup_root, Path::new(&self.cgroup_rel(id)));
        cgroup.set_frozen(pause).map_err(internal)?;
        // The kernel freezes task by task; a frozen cgroup says so.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while cgroup.frozen().map_err(internal)? != pause {
            if std::time::Instant::now() > deadline {
                let _ = cgroup.set_frozen(false);
                return Err(internal(format!(
                    "the processes of {id} were not {} within 10 s",
                    if pause { "frozen" } else { "thawed" }
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.set_paused(id, pause);
        self.container_event(id, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// `docker rename`: a new name, checked as at create; the id, the
    /// host name and everything on disk stay (they go by id).
    pub fn rename(&self, id: &str, new: &str) -> Result<()> {
        let new = new.strip_prefix('/').unwrap_or(new);
        if !super::valid_name(new) {
            return Err(EngineError::Invalid(format!(
                "invalid container name {new:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let old = {
            let mut inner = self.lock();
            if let Some(other) = inner
                .containers
                .values()
                .find(|c| c.record.name == new && c.record.id != id)
            {
                return Err(EngineError::Conflict(format!(
                    "the container name {new:?} is already in use by container {}",
                    other.record.id
                )));
            }
            let c = inner
                .containers
                .get_mut(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            if c.record.service {
                return Err(EngineError::Conflict(format!(
                    "{} is a service of the system config; its name is its key there",
                    c.record.name
                )));
            }
            if c.record.name == new {
                return Err(EngineError::Invalid(format!(
                    "renaming a container with the same name as its current name ({new})"
                )));
            }
            let old = std::mem::replace(&mut c.record.name, new.to_owned());
            if let Err(e) = self.states.save(&c.record) {
                c.record.name = old;
                return Err(internal(format!("saving the new name: {e}")));
            }
            old
        };
        info!("renamed {old} to {new}");
        self.container_event(id, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
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
        self.start(id).await
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
        self.remove_with(id, force, false).await
    }

    /// `remove`, and with `volumes` (`rm -v`, `--rm`) the container's
    /// anonymous volumes too.
    pub async fn remove_with(self: &Arc<Self>, id: &str, force: bool, volumes: bool) -> Result<()> {
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
        // Set up and never torn down: ended while no engine ran.
        self.network_down(id).await;
        self.container_event(id, "destroy", &[]);
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
        if let Err(e) = std::fs::remove_dir_all(self.run_dir(id)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(format!("{}: {e}", self.run_dir(id).display()));
            }
        }
        let _ = c
            .removed
            .send(Some(i64::from(c.record.state.exit_code.unwrap_or(0))));
        if volumes {
            self.remove_anonymous_volumes(&c.record.api.volumes);
        }
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
}
