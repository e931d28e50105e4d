//! Named volumes (`docker volume`, `-v NAME:/path`, `--mount
//! type=volume`), kept as Docker's `local` driver keeps them: a directory
//! per volume, `<data root>/volumes/NAME/_data`, with its metadata in
//! `NAME/volume.json` beside it. They live on the state disk with the
//! user engine's other data, so they outlast their containers and reboots.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("volume name {0:?} is invalid: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least two characters")]
    InvalidName(String),
    #[error("volume driver {0:?} is not supported: only \"local\" is")]
    Driver(String),
    #[error(
        "volume option {0:?} is not supported by the local driver here (only plain directories)"
    )]
    Option(String),
    #[error("volume {0}: {1}")]
    Io(String, io::Error),
}

/// `volume.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for one container's `-v /path` or image `VOLUME` (`rm -v`
    /// and `--rm` remove it with the container).
    #[serde(default)]
    pub anonymous: bool,
}

#[derive(Debug, Clone)]
pub struct VolumeStore {
    root: PathBuf,
}

/// Docker's rule for volume names.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl VolumeStore {
    pub fn open(root: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where the volume's files are, as inspect shows it.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir(name).join("_data")
    }

    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        if !valid_name(name) {
            return Err(VolumeError::NotFound(name.to_owned()));
        }
        let data = std::fs::read(self.dir(name).join("volume.json"))
            .map_err(|_| VolumeError::NotFound(name.to_owned()))?;
        serde_json::from_slice(&data)
            .map_err(|e| VolumeError::Io(name.to_owned(), io::Error::other(e)))
    }

    /// Creates the volume, or returns the existing one of that name (as
    /// Docker does: `volume create x` twice is not an error). A volume is
    /// listed only once its directory and metadata are both written.
    pub fn create(
        &self,
        name: &str,
        driver: &str,
        options: &BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<(Volume, bool), VolumeError> {
        if !valid_name(name) {
            return Err(VolumeError::InvalidName(name.to_owned()));
        }
        if !driver.is_empty() && driver != "local" {
            return Err(VolumeError::Driver(driver.to_owned()));
        }
        if let Some(k) = options.keys().next() {
            return Err(VolumeError::Option(k.clone()));
        }
        if let Ok(v) = self.get(name) {
            return Ok((v, false));
        }
        let io = |e| VolumeError::Io(name.to_owned(), e);
        std::fs::create_dir_all(self.mountpoint(name)).map_err(io)?;
        let volume = Volume {
            name: name.to_owned(),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            labels,
            anonymous,
        };
        let json = serde_json::to_vec_pretty(&volume).map_err(|e| io(io::Error::other(e)))?;
        crate::state::write_atomic(&self.dir(name).join("volume.json"), &json).map_err(io)?;
        Ok((volume, true))
    }

    /// Every volume, by name. A directory without metadata (a create cut
    /// short) is not one.
    pub fn list(&self) -> Vec<Volume> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<Volume> = entries
            .flatten()
            .filter_map(|e| self.get(&e.file_name().to_string_lossy()).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Deletes the volume and its files (the caller checks that no
    /// container uses it). The metadata goes first: a removal cut short
    /// leaves no half volume listed.
    pub fn remove(&self, name: &str) -> Result<(), VolumeError> {
        self.get(name)?;
        let io = |e| VolumeError::Io(name.to_owned(), e);
        std::fs::remove_file(self.dir(name).join("volume.json")).map_err(io)?;
        std::fs::remove_dir_all(self.dir(name)).map_err(io)
    }

    /// Bytes used by the volume's files (`system df`, prune's reclaimed).
    pub fn size(&self, name: &str) -> u64 {
        dir_size(&self.mountpoint(name))
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Docker's copy-up: a new, empty volume mounted where the image has
/// files starts with a copy of them (a database image's initial data
/// directory, a web server's default pages). `layers` are the image's
/// unpacked layers, bottom first, in overlayfs's format: a character
/// device 0:0 is a whiteout, `trusted.overlay.opaque=y` an opaque
/// directory.
pub fn copy_up(layers: &[PathBuf], target: &str, data: &Path) -> io::Result<()> {
    let rel = target.trim_start_matches('/');
    if rel.is_empty() || std::fs::read_dir(data)?.next().is_some() {
        return Ok(());
    }
    for layer in layers {
        let src = layer.join(rel);
        match std::fs::symlink_metadata(&src) {
            Ok(m) if m.is_dir() => {
                if is_opaque(&src) {
                    clear_dir(data)?;
                }
                merge(&src, data)?;
            }
            // A file, a whiteout or nothing at the mount point: the image
            // has no directory there (any more).
            Ok(_) => clear_dir(data)?,
            Err(_) => {}
        }
    }
    Ok(())
}

fn is_opaque(dir: &Path) -> bool {
    matches!(xattr::get(dir, "trusted.overlay.opaque"), Ok(Some(v)) if v == b"y")
}

fn is_whiteout(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn clear_dir(dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if std::fs::symlink_metadata(&p)?.is_dir() {
            std::fs::remove_dir_all(&p)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}

/// Lays `src` over `dst`, keeping owners, modes and links.
fn merge(src: &Path, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(src)?;
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to = dst.join(e.file_name());
        let m = std::fs::symlink_metadata(&from)?;
        let existing = std::fs::symlink_metadata(&to).ok();
        if is_whiteout(&m) {
            match existing {
                Some(x) if x.is_dir() => std::fs::remove_dir_all(&to)?,
                Some(_) => std::fs::remove_file(&to)?,
                None => {}
            }
            continue;
        }
        if m.is_dir() {
            match existing {
                Some(x) if x.is_dir() => {
                    if is_opaque(&from) {
                        clear_dir(&to)?;
                    }
                }
                Some(_) => {
                    std::fs::remove_file(&to)?;
                    std::fs::create_dir(&to)?;
                }
                None => std::fs::create_dir(&to)?,
            }
            merge(&from, &to)?;
            continue;
        }
        match existing {
            Some(x) if x.is_dir() => std::fs::remove_dir_all(&to)?,
            Some(_) => std::fs::remove_file(&to)?,
            None => {}
        }
        if m.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if m.is_file() {
            std::fs::copy(&from, &to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        } else {
            // Device nodes, FIFOs and sockets are not copied up.
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(m.uid()), Some(m.gid()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert!(valid_name("db-data") && valid_name("a1") && valid_name("x.y_z"));
        assert!(!valid_name("a") && !valid_name("-a") && !valid_name("a/b") && !valid_name(""));
    }

    #[test]
    fn create_is_idempotent_and_remove_is_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(tmp.path().join("volumes")).unwrap();
        let labels = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let (v, made) = store
            .create("data", "", &BTreeMap::new(), labels.clone(), false)
            .unwrap();
        assert!(made && v.labels == labels);
        std::fs::write(store.mountpoint("data").join("f"), "12345").unwrap();
        let (again, made) = store
            .create("data", "local", &BTreeMap::new(), BTreeMap::new(), false)
            .unwrap();
        assert!(!made && again == v);
        assert_eq!(store.size("data"), 5);
        // A directory left by a create cut short is not a volume.
        std::fs::create_dir_all(tmp.path().join("volumes/half/_data")).unwrap();
        assert_eq!(
            store
                .list()
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            ["data"]
        );
        store.remove("data").unwrap();
        assert!(matches!(store.get("data"), Err(VolumeError::NotFound(_))));
        assert!(!tmp.path().join("volumes/data").exists());
        let e = store
            .create("x", "", &BTreeMap::new(), BTreeMap::new(), false)
            .unwrap_err();
        assert!(e.to_string().contains("\"x\" is invalid"), "{e}");
        let e = store
            .create("nfs1", "nfs", &BTreeMap::new(), BTreeMap::new(), false)
            .unwrap_err();
        assert!(e.to_string().contains("\"nfs\""), "{e}");
    }

    #[test]
    fn copy_up_merges_the_layers_at_the_mount_point() {
        let tmp = tempfile::tempdir().unwrap();
        let (l1, l2, data) = (
            tmp.path().join("l1"),
            tmp.path().join("l2"),
            tmp.path().join("data"),
        );
        for d in [l1.join("srv/www/old"), l2.join("srv/www"), data.clone()] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(l1.join("srv/www/index.html"), "v1").unwrap();
        std::fs::write(l1.join("srv/www/old/gone"), "x").unwrap();
        std::fs::write(l2.join("srv/www/index.html"), "v2").unwrap();
        std::os::unix::fs::symlink("index.html", l2.join("srv/www/home.html")).unwrap();
        // A whiteout in the upper layer deletes the lower's directory.
        nix::sys::stat::mknod(
            &l2.join("srv/www/old"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        copy_up(&[l1.clone(), l2.clone()], "/srv/www", &data).unwrap();
        assert_eq!(
            std::fs::read_to_string(data.join("index.html")).unwrap(),
            "v2"
        );
        assert_eq!(
            std::fs::read_link(data.join("home.html")).unwrap(),
            Path::new("index.html")
        );
        assert!(!data.join("old").exists());
        // A volume that has files already is left alone.
        std::fs::write(l2.join("srv/www/index.html"), "v3").unwrap();
        copy_up(&[l1, l2], "/srv/www", &data).unwrap();
        assert_eq!(
            std::fs::read_to_string(data.join("index.html")).unwrap(),
            "v2"
        );
    }
}
