//! `corral admin shell`: a root shell in the host's namespaces (PID 1's),
//! with every capability and no seccomp filter, for the administration
//! that no system container may do any more (loading a module, mounting a
//! disk, writing /proc/sys). It is an exec whose target is the host
//! instead of a container, so it is started, streamed, resized and
//! inspected through `/exec/{id}/...` like any other, and it ends with the
//! engine that holds its terminal.
//!
//! Opening one is announced on the system console and logged (to syslog,
//! like everything the system engine logs) with who asked: the uid and
//! process the kernel vouches for on the socket, the system container that
//! process runs in, the user sudo was run by (as the client says), and the
//! SSH client (as the client says, or else from `SSH_CONNECTION` in the
//! environment of the session's processes above it).

use std::path::PathBuf;

use log::warn;
use oci_spec::runtime::{LinuxBuilder, ProcessBuilder, Spec, SpecBuilder, UserBuilder};

use super::exec::ExecConfig;
use super::{internal, Engine, Result};

/// Where an admin shell's processes go: a leaf cgroup of their own, so
/// `systemd-cgls`-style views and the engine's accounting see them apart.
pub const ADMIN_CGROUP: &str = "corral/admin";

/// What the client says of itself, and what the kernel says of it.
#[derive(Debug, Clone, Default)]
pub struct Requester {
    /// From SO_PEERCRED.
    pub uid: u32,
    pub pid: Option<i32>,
    /// The user behind sudo (`SUDO_USER`), or the login name, as the CLI
    /// reports it: for the log, not for any decision.
    pub claimed_user: Option<String>,
    /// `SSH_CONNECTION`'s client address and port, as the CLI reports it
    /// (sudo usually clears it: then the session's processes tell).
    pub ssh_client: Option<String>,
}

impl Engine {
    /// Makes an admin shell's exec (started by `POST /exec/{id}/start`).
    /// `cmd` empty: a login shell.
    pub fn admin_shell_create(
        &self,
        who: &Requester,
        cmd: Vec<String>,
        tty: bool,
        size: Option<(u16, u16)>,
    ) -> Result<String> {
        let mut env = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            "HOME=/root".to_owned(),
            "USER=root".to_owned(),
            "LOGNAME=root".to_owned(),
            "CORRAL_ADMIN_SHELL=1".to_owned(),
        ];
        if let Some(user) = &who.claimed_user {
            env.push(format!("SUDO_USER={user}"));
        }
        let config = ExecConfig {
            cmd: if cmd.is_empty() {
                vec!["/bin/sh".into(), "-l".into()]
            } else {
                cmd.clone()
            },
            env: std::mem::take(&mut env),
            tty,
            attach: [true, true, true],
            privileged: true,
            console_size: size,
            ..Default::default()
        };
        let id = self.exec_create_on_host(config)?;
        let what = if cmd.is_empty() {
            String::new()
        } else {
            let text: String = cmd
                .join(" ")
                .chars()
                .filter(|c| !c.is_control())
                .take(120)
                .collect();
            format!(" to run {text:?}")
        };
        let message = format!(
            "admin shell {} opened{what} for {}",
            &id[..12],
            self.describe(who)
        );
        announce(&message);
        Ok(id)
    }

    /// Who asked, in words, for the log and the console.
    fn describe(&self, who: &Requester) -> String {
        let mut text = match &who.claimed_user {
            Some(u) => format!("{u} (as uid {})", who.uid),
            None => format!("uid {}", who.uid),
        };
        // sudo resets the environment, so the CLI seldom knows its SSH
        // client; the session's processes above it do (sshd set it).
        let ssh = who
            .ssh_client
            .clone()
            .or_else(|| who.pid.and_then(ssh_client_above));
        if let Some(c) = ssh {
            text.push_str(&format!(" over SSH from {c}"));
        }
        if let Some(pid) = who.pid {
            text.push_str(&format!(", pid {pid}"));
            if let Some(name) = self.container_of_pid(pid) {
                text.push_str(&format!(" in system container {name}"));
            } else {
                text.push_str(" on the host");
            }
        }
        text
    }

    /// The container a process of the host's pid namespace runs in, from
    /// its cgroup (the engine puts each container in `PARENT/ID`).
    fn container_of_pid(&self, pid: i32) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
        let inner = self.lock();
        inner.containers.values().find_map(|c| {
            let rel = self.cgroup_rel(&c.record.id);
            let here = path.trim_start_matches('/');
            (here == rel || here.starts_with(&format!("{rel}/"))).then(|| c.record.name.clone())
        })
    }

    /// The spec an admin shell runs under, and the cgroup it goes in.
    pub(super) fn admin_spec(&self, cfg: &ExecConfig) -> Result<(Spec, PathBuf)> {
        let caps: std::collections::HashSet<_> =
            crate::spec::capabilities(&corral_config::ServiceDef {
                privileged: Some(true),
                ..Default::default()
            })
            .into_iter()
            .collect();
        let mut c = oci_spec::runtime::LinuxCapabilities::default();
        c.set_bounding(Some(caps.clone()));
        c.set_effective(Some(caps.clone()));
        c.set_permitted(Some(caps.clone()));
        c.set_inheritable(Some(caps.clone()));
        c.set_ambient(Some(caps));
        let mut env = cfg.env.clone();
        if cfg.tty {
            env.push("TERM=xterm".into());
        }
        let process = ProcessBuilder::default()
            .args(cfg.cmd.clone())
            .env(env)
            .cwd("/root")
            .terminal(cfg.tty)
            .user(
                UserBuilder::default()
                    .uid(0u32)
                    .gid(0u32)
                    .build()
                    .map_err(internal)?,
            )
            .capabilities(c)
            .no_new_privileges(false)
            .build()
            .map_err(internal)?;
        let linux = LinuxBuilder::default()
            .namespaces(Vec::new())
            .masked_paths(Vec::new())
            .readonly_paths(Vec::new())
            .build()
            .map_err(internal)?;
        let spec = SpecBuilder::default()
            .version("1.0.2")
            .process(process)
            .linux(linux)
            .mounts(Vec::new())
            .build()
            .map_err(internal)?;
        let cgroup = self.cfg.cgroup_root.join(ADMIN_CGROUP);
        std::fs::create_dir_all(&cgroup).map_err(internal)?;
        Ok((spec, cgroup))
    }
}

/// `SSH_CONNECTION`'s client address and port, from the environment of
/// `pid` or the nearest of its ancestors that has one (sudo keeps the
/// caller's environment; sshd gave it to the session's shell).
fn ssh_client_above(pid: i32) -> Option<String> {
    let mut pid = pid;
    for _ in 0..16 {
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
            if let Some(v) = env
                .split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(b"SSH_CONNECTION=".as_slice()))
            {
                let v = String::from_utf8_lossy(v);
                let mut f = v.split_whitespace();
                let (addr, port) = (f.next()?, f.next()?);
                let clean = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit() || ".:".contains(c));
                return (clean(addr) && port.parse::<u16>().is_ok())
                    .then(|| format!("{addr} port {port}"));
            }
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        pid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()?;
        if pid <= 1 {
            return None;
        }
    }
    None
}

/// A warning: the engine's log lines go to the system console (whoever
/// sits at it sees it) and to syslog.
pub(super) fn announce(message: &str) {
    warn!("{message}");
}
