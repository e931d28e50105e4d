//! `GET /containers/{id}/top`: the container's processes as `ps -ef`
//! shows them (`UID PID PPID C STIME TTY TIME CMD`), which is what the
//! CLI asks for unless given other `ps` options. Docker runs the host's
//! `ps` and keeps the container's pids; the engine has no `ps` in its
//! image, so it reads the same `/proc` files (with `procfs`) for the pids
//! of the container's cgroup.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::ContainerTopResponse;

use super::{json_response, ApiError, ApiResult, Query};
use crate::engine::Engine;

pub fn top(engine: &Arc<Engine>, id: &str, q: &Query) -> ApiResult {
    match q.get("ps_args").map(|a| a.trim()) {
        None | Some("" | "-ef" | "-e -f" | "-fe") => {}
        Some(other) => {
            return Err(ApiError::bad(format!(
                "ps_args {other:?} is not supported: this engine shows `ps -ef` only"
            )))
        }
    }
    let mut pids = engine.container_pids(id)?;
    pids.sort_unstable();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ctx = Context {
        ticks: procfs::ticks_per_second().max(1),
        boot: procfs::boot_time_secs().unwrap_or(0),
        now,
        users: users(),
    };
    // A process that ended since the cgroup was read is left out.
    let processes: Vec<Vec<String>> = pids.iter().filter_map(|p| ctx.row(*p)).collect();
    Ok(json_response(
        200,
        &ContainerTopResponse {
            titles: Some(
                ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
                    .map(String::from)
                    .to_vec(),
            ),
            processes: Some(processes),
        },
    ))
}

struct Context {
    ticks: u64,
    boot: u64,
    now: u64,
    users: HashMap<u32, String>,
}

impl Context {
    fn row(&self, pid: i32) -> Option<Vec<String>> {
        let p = procfs::process::Process::new(pid).ok()?;
        let stat = p.stat().ok()?;
        let uid = p.uid().ok()?;
        let cmdline = p.cmdline().unwrap_or_default();
        let started = self.boot + stat.starttime / self.ticks;
        let cpu_secs = (stat.utime + stat.stime) / self.ticks;
        let elapsed = self.now.saturating_sub(started).max(1);
        Some(vec![
            self.users
                .get(&uid)
                .cloned()
                .unwrap_or_else(|| uid.to_string()),
            pid.to_string(),
            stat.ppid.to_string(),
            (cpu_secs * 100 / elapsed).to_string(),
            start_time(started, self.now),
            tty_name(stat.tty_nr),
            cpu_time(cpu_secs),
            if cmdline.is_empty() {
                format!("[{}]", stat.comm)
            } else {
                cmdline.join(" ")
            },
        ])
    }
}

/// User names from the engine's `/etc/passwd`, as the host's `ps` would
/// show them.
fn users() -> HashMap<u32, String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.get(2)?.parse().ok()?, f.first()?.to_string()))
        })
        .collect()
}

/// `ps`'s STIME: the time of day if today, else month and day.
fn start_time(started: u64, now: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(started);
    let stamp = humantime::format_rfc3339_seconds(t).to_string(); // 2026-12-03T08:14:01Z
    if started / 86400 == now / 86400 {
        stamp[11..16].to_owned()
    } else {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month: usize = stamp[5..7].parse().unwrap_or(1);
        format!("{}{}", MONTHS[month.clamp(1, 12) - 1], &stamp[8..10])
    }
}

/// `ps`'s TTY: `pts/N`, `ttyN`, or `?`.
fn tty_name(tty_nr: i32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        4 => format!("tty{minor}"),
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        _ => "?".into(),
    }
}

/// `ps`'s TIME: `[DD-]HH:MM:SS` of CPU time.
fn cpu_time(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_ps_prints_them() {
        assert_eq!(cpu_time(0), "00:00:00");
        assert_eq!(cpu_time(3 * 3600 + 61), "03:01:01");
        assert_eq!(cpu_time(90_000), "1-01:00:00");
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name((136 << 8) | 3), "pts/3");
        assert_eq!(tty_name((4 << 8) | 1), "tty1");
        // 2026-12-03T08:14:01Z, seen the same day and two days later.
        let t = 1_796_285_641;
        assert_eq!(start_time(t, t + 60), "08:14");
        assert_eq!(start_time(t, t + 2 * 86400), "Dec03");
    }
}
