//! `GET /containers/{id}/json`: a container as `docker inspect` shows
//! it, Docker's `ContainerInspectResponse` with Corral's reasons for
//! what its definition grants.

use super::*;

/// `key: reason` lines as a JSON object.
fn reasons_json(text: Option<&str>) -> Value {
    let map: serde_json::Map<String, Value> = text
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    Value::Object(map)
}

/// What inspect shows of the container's network besides its record.
pub(super) struct NetView<'a> {
    pub(super) networks: Option<&'a NetworkStore>,
    pub(super) netns: String,
}

pub(super) fn inspect(snap: &Snapshot, reasons: Option<&str>, net: &NetView<'_>) -> Value {
    let r = &snap.record;
    let process = snap.spec.as_ref().and_then(|s| s.process().clone());
    let args = process
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    let env = process
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    let caps: Vec<String> = process
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .and_then(|c| c.bounding().clone())
        .map(|b| {
            let mut v: Vec<String> = b.iter().map(|c| c.to_string()).collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    let res = r.def.resources.clone().unwrap_or_default();
    let never = "0001-01-01T00:00:00Z".to_owned();
    let d = &r.def;
    let response = ContainerInspectResponse {
        id: Some(r.id.clone()),
        created: Some(r.created.clone()),
        path: args.first().cloned(),
        args: Some(args.get(1..).unwrap_or_default().to_vec()),
        state: Some(ContainerState {
            status: Some(match r.state.status {
                Status::Created => ContainerStateStatusEnum::CREATED,
                Status::Running if r.state.paused => ContainerStateStatusEnum::PAUSED,
                Status::Running => ContainerStateStatusEnum::RUNNING,
                Status::Restarting => ContainerStateStatusEnum::RESTARTING,
                Status::Exited => ContainerStateStatusEnum::EXITED,
            }),
            running: Some(r.state.status == Status::Running),
            paused: Some(r.state.paused),
            restarting: Some(r.state.status == Status::Restarting),
            oom_killed: Some(r.state.oom_killed),
            dead: Some(false),
            pid: Some(i64::from(r.state.pid.unwrap_or(0))),
            exit_code: Some(i64::from(r.state.exit_code.unwrap_or(0))),
            error: Some(r.state.error.clone()),
            started_at: Some(r.state.started_at.clone().unwrap_or_else(|| never.clone())),
            finished_at: Some(r.state.finished_at.clone().unwrap_or(never)),
            health: None,
        }),
        image: Some(r.image_id.clone()),
        name: Some(format!("/{}", r.name)),
        restart_count: Some(i64::from(r.restart_count)),
        driver: Some("overlay2".into()),
        platform: Some("linux".into()),
        host_config: Some(HostConfig {
            binds: Some(
                d.binds
                    .iter()
                    .flatten()
                    .map(|b| String::from(b.clone()))
                    .collect(),
            ),
            network_mode: Some(networks::network_mode(r)),
            port_bindings: Some(networks::port_bindings(r)),
            publish_all_ports: Some(r.api.network.publish_all),
            dns: Some(
                r.api
                    .network
                    .dns
                    .servers
                    .iter()
                    .map(|a| a.to_string())
                    .collect(),
            ),
            dns_search: Some(r.api.network.dns.search.clone()),
            dns_options: Some(r.api.network.dns.options.clone()),
            extra_hosts: Some(
                r.api
                    .network
                    .extra_hosts
                    .iter()
                    .map(|(n, ip)| format!("{n}:{ip}"))
                    .collect(),
            ),
            pid_mode: Some(
                if shares(d, HostNamespace::Pid) {
                    "host"
                } else {
                    ""
                }
                .into(),
            ),
            ipc_mode: Some(
                if shares(d, HostNamespace::Ipc) {
                    "host"
                } else {
                    "private"
                }
                .into(),
            ),
            uts_mode: Some(
                if shares(d, HostNamespace::Uts) {
                    "host"
                } else {
                    ""
                }
                .into(),
            ),
            restart_policy: Some(RestartPolicy {
                name: Some(match crate::engine::restart_policy(d, r.service) {
                    Restart::Always => RestartPolicyNameEnum::ALWAYS,
                    Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
                    Restart::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
                    Restart::No => RestartPolicyNameEnum::NO,
                }),
                maximum_retry_count: Some(
                    if crate::engine::restart_policy(d, r.service) == Restart::OnFailure {
                        i64::from(d.max_retries())
                    } else {
                        0
                    },
                ),
            }),
            auto_remove: Some(r.api.auto_remove),
            privileged: Some(d.privileged.unwrap_or(false)),
            readonly_rootfs: Some(d.readonly_rootfs.unwrap_or(false)),
            init: d.init,
            cap_add: Some(
                d.cap_add
                    .iter()
                    .flatten()
                    .map(|c| c.as_str().to_owned())
                    .collect(),
            ),
            cap_drop: Some(
                d.cap_drop
                    .iter()
                    .flatten()
                    .map(|c| c.as_str().to_owned())
                    .collect(),
            ),
            memory: Some(res.memory.map(|m| m.get() as i64).unwrap_or(0)),
            pids_limit: Some(i64::from(res.pids.unwrap_or(0))),
            ulimits: Some(
                r.api
                    .ulimits
                    .iter()
                    .map(|u| bollard_stubs::models::ResourcesUlimits {
                        name: Some(u.name.clone()),
                        soft: Some(u.soft as i64),
                        hard: Some(u.hard as i64),
                    })
                    .collect(),
            ),
            nano_cpus: Some(res.cpus.map(|c| (c.get() * 1e9) as i64).unwrap_or(0)),
            blkio_weight: Some(res.io_weight.unwrap_or(0)),
            // The engine keeps each container's output in a file of its
            // own that `logs` reads, as Docker's json-file driver does;
            // clients decide from this name whether `logs` works
            // (docker-compose shows no logs for a container without one).
            log_config: Some(bollard_stubs::models::HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(Default::default()),
            }),
            security_opt: Some(
                [
                    (d.seccomp == Some(false)).then_some("seccomp=unconfined"),
                    (d.confined_paths == Some(false)).then_some("systempaths=unconfined"),
                ]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect(),
            ),
            ..Default::default()
        }),
        config: Some(ContainerConfig {
            hostname: snap.spec.as_ref().and_then(|s| s.hostname().clone()),
            env: Some(env),
            cmd: d.command.clone(),
            entrypoint: d.entrypoint.clone(),
            image: Some(r.image.clone()),
            working_dir: process
                .as_ref()
                .map(|p| p.cwd().to_string_lossy().into_owned()),
            user: Some(d.user.clone().unwrap_or_default()),
            labels: Some(labels(snap)),
            tty: Some(r.api.tty),
            open_stdin: Some(r.api.open_stdin),
            stdin_once: Some(r.api.stdin_once),
            // A service's output is its log; nobody attached at create.
            attach_stdin: Some(r.api.attach[0]),
            attach_stdout: Some(r.service || r.api.attach[1]),
            attach_stderr: Some(r.service || r.api.attach[2]),
            stop_timeout: Some(d.stop_timeout().as_secs() as i64),
            exposed_ports: Some(r.api.exposed_ports.clone()),
            ..Default::default()
        }),
        mounts: Some(Vec::new()),
        ..Default::default()
    };
    let mut v = serde_json::to_value(&response).unwrap_or(Value::Null);
    v["NetworkSettings"] = networks::settings(
        r,
        net.networks,
        &net.netns,
        r.state.status == Status::Running,
    );
    v["Corral"] = serde_json::json!({
        "Service": r.service,
        "Definition": serde_json::to_value(d).unwrap_or(Value::Null),
        "Capabilities": caps,
        // Why the image's service definition grants what it does.
        "Reasons": reasons_json(reasons),
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_become_an_object() {
        let v = reasons_json(Some(
            "cap-add.NET_ADMIN: sets addresses\nhost-namespaces.net: the host's links: all of them",
        ));
        assert_eq!(v["cap-add.NET_ADMIN"], "sets addresses");
        assert_eq!(v["host-namespaces.net"], "the host's links: all of them");
        assert_eq!(reasons_json(None), serde_json::json!({}));
    }
}
