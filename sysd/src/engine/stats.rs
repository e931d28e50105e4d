//! A running container's resource use (`docker stats`), read as runc and
//! containerd read it on cgroup v2: `cpu.stat`, `memory.current`,
//! `memory.max`, `memory.stat`, `pids.current`, `pids.max`, `io.stat` of
//! its cgroup, the machine's CPU time from `/proc/stat`, and its network
//! interfaces' counters from `/proc/PID/net/dev` (its own namespace's).

use std::collections::BTreeMap;
use std::path::Path;

use super::{Engine, EngineError, Result};

/// One reading. Times in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub read: String,
    pub running: bool,
    pub cpu_total: u64,
    pub cpu_user: u64,
    pub cpu_system: u64,
    /// The machine's CPU time since boot (every CPU, every mode).
    pub system_cpu: u64,
    pub online_cpus: u32,
    pub throttling: (u64, u64, u64),
    pub memory_usage: u64,
    /// `memory.max`, or the machine's memory when unlimited.
    pub memory_limit: u64,
    pub memory_stat: BTreeMap<String, u64>,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    /// (major, minor, op, bytes) from `io.stat`: `read` and `write`.
    pub io: Vec<(u64, u64, String, u64)>,
    /// Interface → (rx bytes, rx packets, rx errors, rx dropped, tx ...).
    pub networks: BTreeMap<String, [u64; 8]>,
}

/// `key value` lines (`cpu.stat`, `memory.stat`; `/proc/meminfo`'s
/// `Key:   value kB` too).
pub fn key_values(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let k = words.next()?.trim_end_matches(':');
            Some((k.to_owned(), words.next()?.parse().ok()?))
        })
        .collect()
}

/// `io.stat`: `MAJ:MIN rbytes=N wbytes=N rios=N ...` per device.
pub fn io_stat(text: &str) -> Vec<(u64, u64, String, u64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some((maj, min)) = words.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(maj), Ok(min)) = (maj.parse(), min.parse()) else {
            continue;
        };
        for w in words {
            match w.split_once('=') {
                Some(("rbytes", v)) => out.push((maj, min, "read".into(), v.parse().unwrap_or(0))),
                Some(("wbytes", v)) => out.push((maj, min, "write".into(), v.parse().unwrap_or(0))),
                _ => {}
            }
        }
    }
    out
}

/// `/proc/net/dev`: the counters of every interface but `lo`.
pub fn net_dev(text: &str) -> BTreeMap<String, [u64; 8]> {
    let mut out = BTreeMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() >= 12 {
            out.insert(
                name.to_owned(),
                [f[0], f[1], f[2], f[3], f[8], f[9], f[10], f[11]],
            );
        }
    }
    out
}

/// The `cpu` line of `/proc/stat` in nanoseconds (USER_HZ is 100 on
/// Linux), and the number of CPUs.
pub fn proc_stat(text: &str) -> (u64, u32) {
    let mut total = 0;
    let mut cpus = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cpu ") {
            let ticks: u64 = rest
                .split_whitespace()
                .take(8)
                .filter_map(|x| x.parse::<u64>().ok())
                .sum();
            total = ticks * (1_000_000_000 / 100);
        } else if line.starts_with("cpu") {
            cpus += 1;
        }
    }
    (total, cpus.max(1))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

impl Engine {
    /// The bytes a container wrote to its own filesystem (its upper
    /// dir): Docker's `SizeRw`.
    pub fn rw_size(&self, id: &str) -> u64 {
        corral_image::dir_size(&self.data_dir(id).join("upper"))
    }

    /// The host pids of every process of a running container (its
    /// cgroup's), for `docker top`.
    pub fn container_pids(&self, id: &str) -> Result<Vec<i32>> {
        {
            let inner = self.lock();
            let c = inner
                .containers
                .get(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            if c.process.is_none() {
                return Err(EngineError::Conflict(format!(
                    "Container {id} is not running"
                )));
            }
        }
        corral_runtime::cgroup::Cgroup::open(&self.cfg.cgroup_root, Path::new(&self.cgroup_rel(id)))
            .procs()
            .map_err(super::internal)
    }

    pub fn stats_sample(&self, id: &str) -> Result<Sample> {
        let (pid, running) = {
            let inner = self.lock();
            let c = inner
                .containers
                .get(id)
                .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
            (c.record.state.pid, c.process.is_some())
        };
        let read_time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        if !running {
            return Ok(Sample {
                read: read_time,
                ..Default::default()
            });
        }
        let cg = self.cfg.cgroup_root.join(self.cgroup_rel(id));
        let cpu = key_values(&read(&cg.join("cpu.stat")));
        let (system_cpu, online_cpus) = proc_stat(&read(Path::new("/proc/stat")));
        let mem_total = key_values(&read(Path::new("/proc/meminfo")))
            .get("MemTotal")
            .map_or(0, |kb| kb * 1024);
        let number = |f: &str| read(&cg.join(f)).trim().parse::<u64>().ok();
        let networks = pid
            .map(|p| net_dev(&read(Path::new(&format!("/proc/{p}/net/dev")))))
            .unwrap_or_default();
        Ok(Sample {
            read: read_time,
            running,
            cpu_total: cpu.get("usage_usec").copied().unwrap_or(0) * 1000,
            cpu_user: cpu.get("user_usec").copied().unwrap_or(0) * 1000,
            cpu_system: cpu.get("system_usec").copied().unwrap_or(0) * 1000,
            system_cpu,
            online_cpus,
            throttling: (
                cpu.get("nr_periods").copied().unwrap_or(0),
                cpu.get("nr_throttled").copied().unwrap_or(0),
                cpu.get("throttled_usec").copied().unwrap_or(0) * 1000,
            ),
            memory_usage: number("memory.current").unwrap_or(0),
            memory_limit: number("memory.max")
                .unwrap_or(mem_total)
                .min(mem_total.max(1)),
            memory_stat: key_values(&read(&cg.join("memory.stat"))),
            // Without the pids controller, the processes listed.
            pids: number("pids.current")
                .unwrap_or_else(|| read(&cg.join("cgroup.procs")).lines().count() as u64),
            pids_limit: number("pids.max"),
            io: io_stat(&read(&cg.join("io.stat"))),
            networks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_and_proc_files_parse() {
        let kv = key_values("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
        assert_eq!(kv["usage_usec"], 1500);
        let mem = key_values("MemTotal:        1012345 kB\nMemFree:          512 kB\n");
        assert_eq!(mem["MemTotal"], 1012345);
        assert_eq!(
            io_stat("8:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n"),
            [(8, 0, "read".into(), 4096), (8, 0, "write".into(), 512)]
        );
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n";
        assert_eq!(net_dev(dev)["eth0"], [1000, 10, 1, 2, 2000, 20, 3, 4]);
        assert!(!net_dev(dev).contains_key("lo"));
        let (total, cpus) = proc_stat("cpu  100 0 50 850 0 0 0 0 0 0\ncpu0 100 0 50 850 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\nintr 1\n");
        assert_eq!((total, cpus), (1000 * 10_000_000, 2));
    }
}
