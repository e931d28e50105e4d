//! Each container's record under `/run/corral/<role>/<id>/state.json`,
//! written atomically (temp file, fsync, rename, fsync of the directory),
//! so a crash of the engine at any moment leaves either the old or the new
//! record, never half of one. The record holds the pid and its start time:
//! after a restart the engine uses them to find its running containers
//! again instead of starting duplicates.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use corral_config::ServiceDef;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    /// Exited, waiting for its restart delay.
    Restarting,
    Exited,
}

impl Status {
    /// Docker's name for it (`State.Status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
        }
    }
}

/// Where the container's process is and how it last ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub status: Status,
    pub pid: Option<i32>,
    /// `/proc/<pid>/stat` start time, to tell the process from a later one
    /// that reuses its pid.
    pub start_time: Option<u64>,
    /// The container's monitor (its parent, which records its exit), with
    /// its start time. None in records of an earlier release.
    #[serde(default)]
    pub monitor_pid: Option<i32>,
    #[serde(default)]
    pub monitor_start_time: Option<u64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// Frozen by `docker pause` (still running: Docker's `Running` and
    /// `Paused` are both true).
    #[serde(default)]
    pub paused: bool,
    /// Why the last start failed, or why the exit status is unknown.
    pub error: String,
}

impl RunState {
    /// Docker's `State.Status`, which says `paused` for a frozen running
    /// container (what `ps --filter status=` matches).
    pub fn docker_status(&self) -> &'static str {
        if self.paused && self.status == Status::Running {
            "paused"
        } else {
            self.status.as_str()
        }
    }
}

impl Default for RunState {
    fn default() -> Self {
        Self {
            status: Status::Created,
            pid: None,
            start_time: None,
            monitor_pid: None,
            monitor_start_time: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            paused: false,
            error: String::new(),
        }
    }
}

/// What a container made through the API asked for beyond its
/// definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiFields {
    /// `docker run --rm`: removed once it has exited.
    pub auto_remove: bool,
    /// `docker run -l`, shown by inspect and `ps`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--network`, `-p`, `-P` and the address on the bridge.
    pub network: crate::network::Settings,
    /// `--expose` and the image's exposed ports (`-P` publishes them).
    pub exposed_ports: Vec<String>,
    /// `-t`: a terminal; the output is one raw stream.
    #[serde(default)]
    pub tty: bool,
    /// `-i`: the container's input is open for attaching clients.
    #[serde(default)]
    pub open_stdin: bool,
    /// The input ends when the first attached client's does (`docker run -i`).
    #[serde(default)]
    pub stdin_once: bool,
    /// `AttachStdin/Stdout/Stderr` as created, shown by inspect.
    #[serde(default)]
    pub attach: [bool; 3],
    /// Named and anonymous volumes (`-v NAME:/path`, `--mount
    /// type=volume`, `-v /path`); anonymous ones are named at create.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// `--tmpfs`, `--mount type=tmpfs`.
    #[serde(default)]
    pub tmpfs: Vec<TmpfsMount>,
    /// The terminal's first size (rows, columns), when the client sent it.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// `--ulimit`: resource limits of the container's processes.
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
}

/// One `--ulimit NAME=SOFT[:HARD]`, by Docker's name (`nofile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

impl Ulimit {
    /// The runtime spec's rlimit type (`nofile` is `RLIMIT_NOFILE`), or
    /// an error naming an unknown one.
    pub fn rlimit_type(&self) -> Result<oci_spec::runtime::PosixRlimitType, String> {
        serde_json::from_value(serde_json::Value::String(format!(
            "RLIMIT_{}",
            self.name.to_ascii_uppercase()
        )))
        .map_err(|_| format!("invalid ulimit type: {}", self.name))
    }
}

/// A volume mounted into a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// Empty until create names a new anonymous volume.
    pub name: String,
    pub target: String,
    pub readonly: bool,
    /// Made for this container: `rm -v` and `--rm` remove it.
    pub anonymous: bool,
    /// `nocopy`: no copy of the image's files at the target.
    #[serde(default)]
    pub nocopy: bool,
}

/// A tmpfs mounted into a container, with its mount options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    pub target: String,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// The image reference as given, and the id it resolved to.
    pub image: String,
    pub image_id: String,
    /// The merged definition the container was made from.
    pub def: ServiceDef,
    /// A service from the system config (supervised, restarted by policy,
    /// stopped in dependency order), as opposed to an API container.
    pub service: bool,
    pub created: String,
    pub restart_count: u32,
    pub state: RunState,
    /// Records of an earlier release have none.
    #[serde(default)]
    pub api: ApiFields,
    /// Stopped by hand (`stop`) and not started since: `unless-stopped`
    /// leaves it stopped when the engine starts again.
    #[serde(default)]
    pub stopped_by_hand: bool,
}

/// The directory of every container's record.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("state.json")
    }

    /// Writes the record atomically.
    pub fn save(&self, record: &Record) -> io::Result<()> {
        let dir = self.container_dir(&record.id);
        fs::create_dir_all(&dir)?;
        let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        write_atomic(&self.path(&record.id), &json)
    }

    pub fn load(&self, id: &str) -> io::Result<Record> {
        let path = self.path(id);
        let data = fs::read(&path)?;
        let mut record: Record = serde_json::from_slice(&data).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        record.api.network.upgrade();
        Ok(record)
    }

    /// Every record, and for each unreadable one its path and the error (so
    /// the engine can report it and move it aside rather than stop).
    pub fn load_all(&self) -> (Vec<Record>, Vec<(PathBuf, io::Error)>) {
        let mut records = Vec::new();
        let mut errors = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (records, errors),
            Err(e) => {
                errors.push((self.root.clone(), e));
                return (records, errors);
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        for id in ids {
            if !self.path(&id).exists() {
                continue;
            }
            match self.load(&id) {
                Ok(r) if r.id == id => records.push(r),
                Ok(r) => errors.push((
                    self.path(&id),
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the record says id {}, its directory {id}", r.id),
                    ),
                )),
                Err(e) => errors.push((self.path(&id), e)),
            }
        }
        (records, errors)
    }

    /// Removes the container's whole state directory.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.container_dir(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Replaces `path` with `data` so that readers (and a crash) see either
/// the old or the new contents.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            id: id.to_owned(),
            name: "web".to_owned(),
            image: "busybox".to_owned(),
            image_id: "sha256:00".to_owned(),
            def: ServiceDef::parse("command = [\"sleep\", \"1\"]\n[resources]\nmemory = \"8M\"")
                .unwrap(),
            service: true,
            created: "2026-11-24T00:00:00Z".to_owned(),
            restart_count: 2,
            api: ApiFields::default(),
            stopped_by_hand: false,
            state: RunState {
                status: Status::Running,
                pid: Some(42),
                start_time: Some(12345),
                started_at: Some("2026-11-24T00:00:01Z".to_owned()),
                ..RunState::default()
            },
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::new(dir.path());
        let r = record("abc");
        s.save(&r).unwrap();
        assert_eq!(s.load("abc").unwrap(), r);
        let mut r2 = r.clone();
        r2.state.status = Status::Exited;
        r2.state.exit_code = Some(137);
        r2.state.oom_killed = true;
        s.save(&r2).unwrap();
        assert_eq!(s.load("abc").unwrap(), r2);
        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(s.container_dir("abc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn load_all_reports_broken_records_without_failing() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::new(dir.path());
        s.save(&record("a")).unwrap();
        s.save(&record("b")).unwrap();
        fs::write(s.path("b"), b"{ truncated").unwrap();
        fs::create_dir_all(s.container_dir("c")).unwrap(); // no record yet
        let (ok, bad) = s.load_all();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].id, "a");
        assert_eq!(bad.len(), 1);
        assert!(
            bad[0].1.to_string().contains("b/state.json"),
            "{}",
            bad[0].1
        );
        s.remove("a").unwrap();
        s.remove("a").unwrap();
        assert!(!s.container_dir("a").exists());
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(write_atomic(&dir.path().join("missing/f"), b"x").is_err());
    }
}
