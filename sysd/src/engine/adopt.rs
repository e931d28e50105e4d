//! After an engine restart (or a reboot, for the user engine, whose
//! records are on the state disk): the records read back, running
//! containers re-attached, and ended ones given their exit status and
//! their restart policy.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_runtime::cgroup::Cgroup;
use corral_runtime::Process;
use log::{error, info, warn};
use oci_spec::runtime::Spec;
use tokio::sync::{broadcast, watch};

use super::{now, restart_policy, Container, Engine, Running};
use crate::restart::{Backoff, Decision, Exit};
use crate::state::{Record, Status};

impl Engine {
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
            let run_dir = self.run_dir(&id);
            let spec: Spec = match std::fs::read(self.spec_path(&id))
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
                    let _ = std::fs::remove_dir_all(self.run_dir(&id));
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
            if !run_dir.exists() {
                // After a reboot (the run root is in /run): nothing of
                // its network is left in the kernel to tear down.
                let net = &mut record.api.network;
                net.attached = false;
                for e in &mut net.endpoints {
                    e.attached = false;
                    e.mac = None;
                }
                net.bound_ports.clear();
            }
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
                output: broadcast::channel(1024).0,
                fs_lock: Default::default(),
                record,
            };
            // What ended while no engine ran gets its restart policy now;
            // and, as Docker's daemon does when it starts, `always`
            // containers (and `unless-stopped` ones not stopped by hand)
            // that had ended before come back too: after a reboot, this is
            // what brings them back. Services are the config's business.
            let restart = match ended {
                Some(exit) => match container.backoff.on_exit(exit, Duration::ZERO) {
                    Decision::Restart { after } => Some(after),
                    Decision::Stop => None,
                },
                None if !container.record.service
                    && container.record.state.status == Status::Exited
                    && restart_at_engine_start(&container.record) =>
                {
                    Some(Duration::ZERO)
                }
                None => None,
            };
            if restart.is_some() {
                container.record.state.status = Status::Restarting;
            }
            let code = container.record.state.exit_code.unwrap_or(-1);
            let policy = restart_policy(&container.record.def, container.record.service);
            self.lock().containers.insert(id.clone(), container);
            if let Some(r) = running {
                info!(
                    "re-attached to {name} (pid {})",
                    r.container.as_ref().map_or(r.monitor.pid, |c| c.pid)
                );
                if let Some(pid) = r.container.as_ref().map(|c| c.pid.as_raw()) {
                    self.repin(&id, pid);
                }
                // Not our child any more (init is the old engine's
                // children's parent now): its monitor records the exit.
                self.watch(id, 1, r, false, None);
            } else {
                match ended {
                    Some(Exit::Code(_)) => {
                        warn!("{name} exited with status {code} while the engine was down")
                    }
                    Some(Exit::Unknown) => {
                        warn!("{name} exited while the engine was down (status unknown)")
                    }
                    None => {}
                }
                if restart.is_some() {
                    info!(
                        "{name}: restart policy {}: starting it again",
                        policy.as_str()
                    );
                }
                // Its ports and veth, if it was on the bridge, go first.
                let engine = self.clone();
                tokio::spawn(async move {
                    engine.network_down(&id).await;
                    if let Some(after) = restart {
                        engine.restart_after(&id, 1, after, name);
                    }
                });
            }
        }
    }
}

/// Docker's `ShouldRestart` for a container found exited when the engine
/// starts: `always`; `unless-stopped` unless stopped by hand; `on-failure`
/// after a failure, within its retries.
fn restart_at_engine_start(record: &Record) -> bool {
    use corral_config::service::Restart;
    match restart_policy(&record.def, record.service) {
        Restart::Always => true,
        Restart::UnlessStopped => !record.stopped_by_hand,
        Restart::OnFailure => {
            !record.stopped_by_hand
                && record.state.exit_code != Some(0)
                && record.restart_count < record.def.max_retries()
        }
        Restart::No => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RunState;
    use corral_config::ServiceDef;

    fn exited(restart: &str, code: i32, by_hand: bool) -> Record {
        Record {
            id: "c".into(),
            name: "c".into(),
            image: "busybox".into(),
            image_id: "sha256:00".into(),
            def: ServiceDef::parse(&format!("restart = \"{restart}\"\nmax-retries = 2")).unwrap(),
            service: false,
            created: "2026-12-01T00:00:00Z".into(),
            restart_count: 0,
            state: RunState {
                status: Status::Exited,
                exit_code: Some(code),
                ..RunState::default()
            },
            api: Default::default(),
            stopped_by_hand: by_hand,
        }
    }

    #[test]
    fn at_engine_start_restart_policies_are_dockers() {
        // always: even a container stopped by hand comes back.
        assert!(restart_at_engine_start(&exited("always", 0, true)));
        assert!(restart_at_engine_start(&exited("unless-stopped", 0, false)));
        assert!(!restart_at_engine_start(&exited(
            "unless-stopped",
            137,
            true
        )));
        assert!(restart_at_engine_start(&exited("on-failure", 1, false)));
        assert!(!restart_at_engine_start(&exited("on-failure", 0, false)));
        let mut spent = exited("on-failure", 1, false);
        spent.restart_count = 2;
        assert!(!restart_at_engine_start(&spent), "out of retries");
        assert!(!restart_at_engine_start(&exited("no", 1, false)));
    }
}
