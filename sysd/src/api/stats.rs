//! `GET /containers/{id}/stats`: a container's resource use in Docker's
//! shape, streamed once a second (`docker stats`) or once, with the CPU
//! use a second before as `precpu_stats` so the client can compute a
//! percentage (`--no-stream`; `one-shot=1` skips the second reading).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{
    ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuStats, ContainerCpuUsage,
    ContainerMemoryStats, ContainerNetworkStats, ContainerPidsStats, ContainerStatsResponse,
    ContainerThrottlingData,
};
use bytes::Bytes;

use super::{flag, json_response, streams, ApiResult, Query};
use crate::engine::{Engine, Sample};

fn cpu(s: &Sample) -> ContainerCpuStats {
    ContainerCpuStats {
        cpu_usage: Some(ContainerCpuUsage {
            total_usage: Some(s.cpu_total),
            percpu_usage: None,
            usage_in_kernelmode: Some(s.cpu_system),
            usage_in_usermode: Some(s.cpu_user),
        }),
        system_cpu_usage: Some(s.system_cpu),
        online_cpus: Some(s.online_cpus),
        throttling_data: Some(ContainerThrottlingData {
            periods: Some(s.throttling.0),
            throttled_periods: Some(s.throttling.1),
            throttled_time: Some(s.throttling.2),
        }),
    }
}

/// The response for `now`, with `before`'s CPU use as `precpu_stats`.
pub fn response(
    id: &str,
    name: &str,
    now: &Sample,
    before: Option<&Sample>,
) -> ContainerStatsResponse {
    let io = now
        .io
        .iter()
        .map(|(major, minor, op, value)| ContainerBlkioStatEntry {
            major: Some(*major),
            minor: Some(*minor),
            op: Some(op.clone()),
            value: Some(*value),
        })
        .collect();
    let networks: HashMap<String, ContainerNetworkStats> = now
        .networks
        .iter()
        .map(|(name, n)| {
            (
                name.clone(),
                ContainerNetworkStats {
                    rx_bytes: Some(n[0]),
                    rx_packets: Some(n[1]),
                    rx_errors: Some(n[2]),
                    rx_dropped: Some(n[3]),
                    tx_bytes: Some(n[4]),
                    tx_packets: Some(n[5]),
                    tx_errors: Some(n[6]),
                    tx_dropped: Some(n[7]),
                    ..Default::default()
                },
            )
        })
        .collect();
    ContainerStatsResponse {
        id: Some(id.to_owned()),
        name: Some(format!("/{name}")),
        os_type: Some("linux".into()),
        read: Some(now.read.clone()),
        preread: Some(
            before
                .map(|b| b.read.clone())
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        ),
        cpu_stats: Some(cpu(now)),
        precpu_stats: Some(before.map(cpu).unwrap_or_default()),
        memory_stats: Some(ContainerMemoryStats {
            usage: Some(now.memory_usage),
            limit: Some(now.memory_limit),
            stats: Some(now.memory_stat.clone().into_iter().collect()),
            ..Default::default()
        }),
        networks: (!networks.is_empty()).then_some(networks),
        pids_stats: Some(ContainerPidsStats {
            current: Some(now.pids),
            limit: now.pids_limit,
        }),
        blkio_stats: Some(ContainerBlkioStats {
            io_service_bytes_recursive: Some(io),
            ..Default::default()
        }),
        num_procs: Some(0),
        ..Default::default()
    }
}

pub fn stats(engine: &Arc<Engine>, id: &str, q: &Query) -> ApiResult {
    // Docker's default is a stream; `stream=0` (or false) one answer.
    let stream = !matches!(
        q.get("stream").map(|s| s.to_ascii_lowercase()).as_deref(),
        Some("0" | "false")
    );
    let one_shot = flag(q, "one-shot");
    let name = engine.inspect(id)?.record.name;
    let first = engine.stats_sample(id)?;
    if !stream && (one_shot || !first.running) {
        return Ok(json_response(200, &response(id, &name, &first, None)));
    }
    let engine = engine.clone();
    let id = id.to_owned();
    Ok(streams::later(
        "application/json",
        move |mut tx| async move {
            let mut before = first;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Ok(now) = engine.stats_sample(&id) else {
                    return;
                };
                let mut line = serde_json::to_vec(&response(&id, &name, &now, Some(&before)))
                    .unwrap_or_default();
                line.push(b'\n');
                if tx.send_data(Bytes::from(line)).await.is_err() || !stream {
                    return;
                }
                before = now;
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_can_compute_its_columns() {
        let before = Sample {
            read: "t0".into(),
            running: true,
            cpu_total: 1_000,
            system_cpu: 10_000,
            online_cpus: 2,
            ..Default::default()
        };
        let now = Sample {
            read: "t1".into(),
            cpu_total: 2_000,
            system_cpu: 20_000,
            memory_usage: 5 << 20,
            memory_limit: 16 << 20,
            pids: 3,
            ..before.clone()
        };
        let v = serde_json::to_value(response("abc", "web", &now, Some(&before))).unwrap();
        // docker stats: (cpu delta / system delta) * online cpus * 100 = 20%.
        let cpu = v["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap()
            - v["precpu_stats"]["cpu_usage"]["total_usage"]
                .as_u64()
                .unwrap();
        let sys = v["cpu_stats"]["system_cpu_usage"].as_u64().unwrap()
            - v["precpu_stats"]["system_cpu_usage"].as_u64().unwrap();
        assert_eq!(cpu as f64 / sys as f64 * 2.0 * 100.0, 20.0);
        assert_eq!(v["memory_stats"]["limit"], 16 << 20);
        assert_eq!(v["pids_stats"]["current"], 3);
        assert_eq!(v["name"], "/web");
        assert_eq!(v["preread"], "t0");
    }
}
