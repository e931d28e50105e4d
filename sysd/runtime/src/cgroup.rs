//! A container's cgroup (v2): created with its limits before the process
//! starts, read for OOM kills and memory use, emptied and removed at the
//! end.
//!
//! Everything goes through plain files below a root directory, so the
//! logic is tested against a tempdir standing in for `/sys/fs/cgroup`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use crate::Error;

/// A cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
}

/// What to write where, computed from the OCI resources.
pub fn resource_files(r: &LinuxResources) -> Vec<(&'static str, String)> {
    let mut files = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(limit) = m.limit() {
            let v = if limit < 0 {
                "max".to_owned()
            } else {
                limit.to_string()
            };
            files.push(("memory.max", v));
            // OCI's swap is memory + swap; cgroup v2 limits swap alone.
            if let Some(swap) = m.swap() {
                let v = if swap < 0 || limit < 0 {
                    "max".to_owned()
                } else {
                    swap.saturating_sub(limit).max(0).to_string()
                };
                files.push(("memory.swap.max", v));
            }
        }
    }
    if let Some(p) = r.pids() {
        let limit = p.limit();
        files.push((
            "pids.max",
            if limit <= 0 {
                "max".to_owned()
            } else {
                limit.to_string()
            },
        ));
    }
    if let Some(c) = r.cpu() {
        let period = c.period().unwrap_or(100_000);
        match c.quota() {
            Some(q) if q > 0 => files.push(("cpu.max", format!("{q} {period}"))),
            Some(_) => files.push(("cpu.max", format!("max {period}"))),
            None => {}
        }
        if let Some(shares) = c.shares().filter(|s| *s > 0) {
            // runc's conversion of cgroup v1 shares (2–262144) to v2
            // weight (1–10000).
            let weight = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
            files.push(("cpu.weight", weight.to_string()));
        }
    }
    if let Some(w) = r.block_io().as_ref().and_then(|b| b.weight()) {
        // runc's conversion of blkio weight (10–1000) to io.weight (1–10000).
        let w = u32::from(w.clamp(10, 1000));
        files.push((
            "io.weight",
            format!("default {}", 1 + (w - 10) * 9999 / 990),
        ));
    }
    files
}

/// The controller a file belongs to (`memory.max` → `memory`).
fn controller(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

fn io_err(path: &Path, e: io::Error) -> Error {
    Error::Cgroup {
        path: path.to_owned(),
        source: e,
    }
}

impl Cgroup {
    pub fn open(root: &Path, relative: &Path) -> Cgroup {
        let rel = relative.strip_prefix("/").unwrap_or(relative);
        Cgroup {
            path: root.join(rel),
        }
    }

    /// Creates the cgroup below `root`, enabling the controllers its limits
    /// need in every ancestor's `cgroup.subtree_control`, and writes the
    /// limits.
    pub fn create(
        root: &Path,
        relative: &Path,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup, Error> {
        let cg = Cgroup::open(root, relative);
        let files = resources.map(resource_files).unwrap_or_default();
        let mut wanted: Vec<&str> = files.iter().map(|(f, _)| controller(f)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        // Walk down from the root, creating and delegating as we go.
        let rel = cg.path.strip_prefix(root).unwrap_or(Path::new(""));
        let mut dir = root.to_owned();
        for part in rel.components() {
            enable_controllers(&dir, &wanted)?;
            dir.push(part);
            match fs::create_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(&dir, e)),
                _ => {}
            }
        }
        for (file, value) in files {
            let p = cg.path.join(file);
            // A controller the kernel lacks (no swap accounting, say) is not
            // a reason to refuse the container; a bad value is.
            match fs::write(&p, &value) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    log::warn!(
                        "{}: not available; {file} = {value} not applied",
                        p.display()
                    );
                }
                Err(e) => return Err(io_err(&p, e)),
            }
        }
        Ok(cg)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pids in the cgroup (empty if it is gone).
    pub fn procs(&self) -> Result<Vec<i32>, Error> {
        let p = self.path.join("cgroup.procs");
        match fs::read_to_string(&p) {
            Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    /// How many times the OOM killer killed a process in this cgroup.
    pub fn oom_kills(&self) -> Result<u64, Error> {
        let p = self.path.join("memory.events");
        match fs::read_to_string(&p) {
            Ok(s) => Ok(s
                .lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    pub fn memory_current(&self) -> Result<Option<u64>, Error> {
        let p = self.path.join("memory.current");
        match fs::read_to_string(&p) {
            Ok(s) => Ok(s.trim().parse().ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&p, e)),
        }
    }

    /// Freezes (or thaws) every process in the cgroup, cgroup v2's
    /// freezer as runc uses it; [`Cgroup::frozen`] says when it is done.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), Error> {
        let p = self.path.join("cgroup.freeze");
        fs::write(&p, if frozen { "1" } else { "0" }).map_err(|e| io_err(&p, e))
    }

    /// Whether every process in the cgroup is frozen (`cgroup.events`).
    pub fn frozen(&self) -> Result<bool, Error> {
        let p = self.path.join("cgroup.events");
        let s = fs::read_to_string(&p).map_err(|e| io_err(&p, e))?;
        Ok(s.lines().any(|l| l.trim() == "frozen 1"))
    }

    /// Kills everything in the cgroup: `cgroup.kill` where the kernel has
    /// it (5.14+), else SIGKILL to each pid until none is left.
    pub fn kill_all(&self) -> Result<(), Error> {
        if !self.path.exists() {
            return Ok(());
        }
        let kill = self.path.join("cgroup.kill");
        if kill.exists() && fs::write(&kill, "1").is_ok() {
            return Ok(());
        }
        for _ in 0..100 {
            let pids = self.procs()?;
            if pids.is_empty() {
                return Ok(());
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Removes the cgroup, retrying while its last processes are reaped.
    pub fn remove(&self) -> Result<(), Error> {
        for _ in 0..50 {
            match fs::remove_dir(&self.path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(io_err(&self.path, e)),
            }
        }
        fs::remove_dir(&self.path).map_err(|e| io_err(&self.path, e))
    }
}

/// Makes `relative` (below `root`) a subtree delegated to someone else:
/// created if missing, with every controller each ancestor offers enabled
/// for its children, so the delegatee can enable any of them in its own
/// `cgroup.subtree_control` (which it owns). The subtree itself is left
/// as it is: what is inside belongs to the delegatee.
pub fn delegate(root: &Path, relative: &Path) -> Result<(), Error> {
    let rel = relative.strip_prefix("/").unwrap_or(relative);
    let mut dir = root.to_owned();
    for part in rel.components() {
        let available = match fs::read_to_string(dir.join("cgroup.controllers")) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(&dir, e)),
        };
        let all: Vec<&str> = available.split_whitespace().collect();
        enable_controllers(&dir, &all)?;
        dir.push(part);
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(&dir, e)),
            _ => {}
        }
    }
    Ok(())
}

/// Enables `wanted` controllers for `dir`'s children, if `dir` offers them.
fn enable_controllers(dir: &Path, wanted: &[&str]) -> Result<(), Error> {
    if wanted.is_empty() {
        return Ok(());
    }
    let available = match fs::read_to_string(dir.join("cgroup.controllers")) {
        Ok(s) => s,
        // Not a cgroup2 directory (a test's plain tempdir level): nothing to do.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir, e)),
    };
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter(|c| !enabled.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let p = dir.join("cgroup.subtree_control");
    fs::write(&p, missing.join(" ")).map_err(|e| io_err(&p, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
        LinuxResourcesBuilder,
    };

    fn resources() -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(16 << 20)
                    .swap(16 << 20)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(64).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000)
                    .period(100_000u64)
                    .shares(1024u64)
                    .build()
                    .unwrap(),
            )
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn resources_become_cgroup_v2_files() {
        let files = resource_files(&resources());
        let get = |f: &str| files.iter().find(|(k, _)| *k == f).map(|(_, v)| v.as_str());
        assert_eq!(get("memory.max"), Some("16777216"));
        assert_eq!(get("memory.swap.max"), Some("0"));
        assert_eq!(get("pids.max"), Some("64"));
        assert_eq!(get("cpu.max"), Some("50000 100000"));
        assert_eq!(get("cpu.weight"), Some("39"));
        assert_eq!(get("io.weight"), Some("default 4950"));
    }

    #[test]
    fn create_delegates_controllers_and_writes_limits() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::write(r.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        fs::write(r.join("cgroup.subtree_control"), "").unwrap();
        let cg = Cgroup::create(r, Path::new("/corral/system/abc"), Some(&resources())).unwrap();
        assert_eq!(cg.path(), r.join("corral/system/abc"));
        assert_eq!(
            fs::read_to_string(r.join("cgroup.subtree_control")).unwrap(),
            "+cpu +io +memory +pids"
        );
        assert_eq!(
            fs::read_to_string(cg.path().join("memory.max")).unwrap(),
            "16777216"
        );
        assert_eq!(
            fs::read_to_string(cg.path().join("pids.max")).unwrap(),
            "64"
        );
        // Creating it again is fine (a restart reuses the path).
        Cgroup::create(r, Path::new("corral/system/abc"), None).unwrap();
    }

    #[test]
    fn delegation_enables_every_offered_controller_above_the_subtree() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fs::write(r.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
        fs::write(r.join("cgroup.subtree_control"), "").unwrap();
        fs::create_dir(r.join("corral")).unwrap();
        fs::write(r.join("corral/cgroup.controllers"), "memory pids\n").unwrap();
        fs::write(r.join("corral/cgroup.subtree_control"), "pids\n").unwrap();
        delegate(r, Path::new("/corral/user")).unwrap();
        assert!(r.join("corral/user").is_dir());
        // A plain file stands in for cgroupfs: the write replaces it.
        assert_eq!(
            fs::read_to_string(r.join("cgroup.subtree_control")).unwrap(),
            "+cpu +io +memory +pids"
        );
        assert_eq!(
            fs::read_to_string(r.join("corral/cgroup.subtree_control")).unwrap(),
            "+memory"
        );
        // Nothing is written inside the delegated subtree.
        assert!(!r.join("corral/user/cgroup.subtree_control").exists());
    }

    #[test]
    fn oom_kills_procs_and_removal() {
        let root = tempfile::tempdir().unwrap();
        let cg = Cgroup::create(root.path(), Path::new("x"), None).unwrap();
        assert_eq!(cg.oom_kills().unwrap(), 0);
        fs::write(
            cg.path().join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills().unwrap(), 1);
        fs::write(cg.path().join("cgroup.procs"), "").unwrap();
        assert!(cg.procs().unwrap().is_empty());
        fs::write(cg.path().join("memory.current"), "4096\n").unwrap();
        assert_eq!(cg.memory_current().unwrap(), Some(4096));
        for f in ["memory.events", "cgroup.procs", "memory.current"] {
            fs::remove_file(cg.path().join(f)).unwrap();
        }
        cg.remove().unwrap();
        assert!(!cg.path().exists());
        cg.remove().unwrap();
        cg.kill_all().unwrap();
    }
}
