//! The services of the system config: started at boot in dependency order
//! (every `onboot` entry run to completion first), and stopped in reverse
//! order at shutdown.
//!
//! A restarted engine finds its services already running (the engine
//! re-attaches to them first) and leaves them alone; an `onboot` entry that
//! already completed in this boot is not run again.

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_config::service::{start_order, Kind, Restart, ServiceDef, ServiceName};
use log::{error, info, warn};

use crate::engine::{merged_with_image_default, Engine};
use crate::state::Status;

/// The merged definitions (image defaults under the config) and the order
/// to start them in.
pub struct Plan {
    pub defs: BTreeMap<ServiceName, ServiceDef>,
    pub order: Vec<ServiceName>,
}

/// Builds the plan. A service whose image is missing or whose definition
/// is broken is reported and left out (with whatever depends on it
/// starting anyway: a missing log service must not keep the console from
/// starting).
pub fn plan(engine: &Engine, services: &BTreeMap<ServiceName, ServiceDef>) -> Result<Plan, String> {
    let mut defs = BTreeMap::new();
    for (name, def) in services {
        if !def.is_enabled() {
            defs.insert(name.clone(), def.clone());
            continue;
        }
        let Some(image_ref) = &def.image else {
            error!("service {name}: no image given (services.{name}.image); not starting it");
            continue;
        };
        let merged = match engine.images().get(image_ref) {
            Ok(image) => merged_with_image_default(&image, def.clone()),
            Err(e) => Err(format!("image {image_ref}: {e}")),
        };
        match merged {
            Ok(m) => {
                defs.insert(name.clone(), m);
            }
            Err(e) => error!("service {name}: {e}; not starting it"),
        }
    }
    // Dependencies on services that were left out are dropped, so the rest
    // can still be ordered.
    let known: Vec<ServiceName> = defs.keys().cloned().collect();
    for (name, def) in defs.iter_mut() {
        if let Some(deps) = def.depends_on.as_mut() {
            deps.retain(|d| {
                let ok = known.contains(d);
                if !ok && services.contains_key(d) {
                    warn!("service {name}: starting without {d}, which could not be set up");
                }
                ok || !services.contains_key(d)
            });
        }
    }
    let order = start_order(&defs).map_err(|e| e.to_string())?;
    Ok(Plan { defs, order })
}

/// Starts everything in the plan, in order. Returns the services it
/// started or found running.
pub async fn start(engine: &Arc<Engine>, plan: &Plan) -> Vec<ServiceName> {
    let mut up = Vec::new();
    for name in &plan.order {
        let def = &plan.defs[name];
        match engine.by_name(name.as_str()) {
            Some((_, true, old, _, _)) if old == *def => {
                info!("service {name} is already running");
                up.push(name.clone());
                continue;
            }
            Some((id, running, old, status, code)) => {
                // State lives in /run: an exit recorded there happened in
                // this boot, and the restart policy has had its say (after
                // an engine restart, such a service is not run again).
                let settled = match def.restart() {
                    Restart::No => true,
                    Restart::OnFailure => code == Some(0),
                    Restart::Always | Restart::UnlessStopped => false,
                };
                if !running && status == Status::Exited && old == *def && settled {
                    let what = if def.kind() == Kind::Onboot {
                        "onboot"
                    } else {
                        "service"
                    };
                    info!(
                        "{what} {name} already ran in this boot (exit status {})",
                        code.unwrap_or(-1)
                    );
                    continue;
                }
                // Changed definition, or a leftover: replace it.
                if running {
                    info!("service {name}: its definition changed; recreating it");
                }
                if let Err(e) = engine.remove(&id, true).await {
                    error!("service {name}: removing the old container: {e}");
                    continue;
                }
            }
            None => {}
        }
        let id = match engine.create(
            Some(name.as_str()),
            def.clone(),
            true,
            Default::default(),
            &mut Vec::new(),
        ) {
            Ok(id) => id,
            Err(e) => {
                error!("service {name}: {e}");
                continue;
            }
        };
        if let Err(e) = engine.start(&id).await {
            error!("service {name}: {e}");
            continue;
        }
        if def.kind() == Kind::Onboot {
            match engine.wait(&id, false).await {
                Ok(0) => info!("onboot {name} completed"),
                Ok(code) => error!("onboot {name} failed with status {code}; continuing the boot"),
                Err(e) => error!("onboot {name}: {e}"),
            }
        } else {
            up.push(name.clone());
        }
    }
    up
}

/// Stops the services in reverse start order, each with its stop timeout,
/// then every other running container.
pub async fn stop_all(engine: &Arc<Engine>, order: &[ServiceName]) {
    for name in order.iter().rev() {
        if let Some((id, true, ..)) = engine.by_name(name.as_str()) {
            info!("stopping {name}");
            if let Err(e) = engine.stop(&id, None).await {
                warn!("stopping {name}: {e}");
            }
        }
    }
    let others: Vec<String> = engine
        .list()
        .into_iter()
        .filter(|s| s.record.state.status == Status::Running)
        .map(|s| s.record.id)
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for id in others {
        let engine = engine.clone();
        set.spawn(async move { engine.stop(&id, None).await });
    }
    while let Some(r) = set.join_next().await {
        if let Ok(Err(e)) = r {
            warn!("stopping a container: {e}");
        }
    }
}
