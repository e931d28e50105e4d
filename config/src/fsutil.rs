//! Replacing a file so that a power cut at any moment leaves either the
//! old or the new content, never a mix or nothing: write a temporary file
//! in the same directory, fsync it, rename it over the target, fsync the
//! directory (the rename itself is only durable once the directory is).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The name the previous version is kept under: `config.toml.prev`.
pub fn previous_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".prev");
    path.with_file_name(name)
}

/// Removes the temporary files [`write_atomic`] leaves in `dir` when the
/// power goes in the middle of a write (at boot, before anything writes).
pub fn remove_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && (name.contains(".tmp.") || name.contains(".prev.")) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Atomically replaces `path` with `data` (mode `mode` for a new file).
/// With `keep_previous`, the content it replaces stays available as
/// [`previous_path`], itself swapped in atomically: at every moment
/// `path` exists with one complete version.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, keep_previous: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        if keep_previous && path.exists() {
            // A hard link keeps the old version's inode under a second
            // name without copying; renaming it onto .prev is atomic.
            let link = dir.join(format!(".{name}.prev.{}", std::process::id()));
            let _ = std::fs::remove_file(&link);
            std::fs::hard_link(path, &link)?;
            std::fs::rename(&link, previous_path(path))?;
        }
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_keeps_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        write_atomic(&path, b"one", 0o644, true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert!(!previous_path(&path).exists(), "nothing to keep yet");
        write_atomic(&path, b"two", 0o644, true).unwrap();
        write_atomic(&path, b"three", 0o644, true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        assert_eq!(std::fs::read(previous_path(&path)).unwrap(), b"two");
        write_atomic(&path, b"four", 0o644, false).unwrap();
        assert_eq!(std::fs::read(previous_path(&path)).unwrap(), b"two");
        // No temporary files are left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        write_atomic(&path, b"old", 0o644, true).unwrap();
        // A directory in the way of the rename makes the last step fail.
        let blocked = dir.path().join("sub");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::create_dir(blocked.join("x")).unwrap();
        assert!(write_atomic(&blocked, b"new", 0o644, false).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn temporaries_of_an_interrupted_write_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        write_atomic(&path, b"kept", 0o644, false).unwrap();
        std::fs::write(dir.path().join(".config.toml.tmp.123"), b"half").unwrap();
        std::fs::write(dir.path().join(".config.toml.prev.123"), b"old").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"not ours").unwrap();
        remove_temporaries(dir.path());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".hidden", "config.toml"]);
    }

    #[test]
    fn new_files_get_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic(&path, b"x", 0o600, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
