//! cpio "newc" archives for the kernel's initramfs.
//!
//! Everything is owned by root, timestamps are fixed, inode numbers are
//! assigned in order and directory trees are walked in sorted order, so the
//! same inputs give the same bytes. Device nodes are written as archive
//! entries, so building needs no privileges. Several archives may be
//! concatenated (the kernel unpacks them in order, later files replacing
//! earlier ones); [`append`] does that for test overlays.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use cpio::newc::{Builder, ModeFileType};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("writing the archive: {0}")]
    Write(#[from] io::Error),
    #[error("{path}: archive paths must be relative and stay inside the archive")]
    BadPath { path: PathBuf },
    #[error("{path}: file is larger than the 4 GiB a newc entry can hold")]
    TooLarge { path: PathBuf },
    #[error("{path}: unsupported file type (only files, directories and symlinks are copied)")]
    Unsupported { path: PathBuf },
}

/// A cpio archive being written.
pub struct Archive<W: Write> {
    out: W,
    next_ino: u32,
    mtime: u32,
}

impl<W: Write> Archive<W> {
    /// Entries get modification time `mtime` (seconds since the epoch; use
    /// SOURCE_DATE_EPOCH or 0).
    pub fn new(out: W, mtime: u32) -> Self {
        Self {
            out,
            next_ino: 1,
            mtime,
        }
    }

    fn builder(&mut self, path: &Path, mode: u32) -> Result<Builder, Error> {
        let name = archive_name(path)?;
        let ino = self.next_ino;
        self.next_ino += 1;
        Ok(Builder::new(&name)
            .ino(ino)
            .mode(mode)
            .uid(0)
            .gid(0)
            .nlink(1)
            .mtime(self.mtime))
    }

    fn write_entry(&mut self, b: Builder, data: &[u8], path: &Path) -> Result<(), Error> {
        let len = u32::try_from(data.len()).map_err(|_| Error::TooLarge {
            path: path.to_owned(),
        })?;
        let mut w = b.write(&mut self.out, len);
        w.write_all(data)?;
        w.finish()?;
        Ok(())
    }

    /// A directory with permission bits `perm` (e.g. 0o755).
    pub fn dir(&mut self, path: impl AsRef<Path>, perm: u32) -> Result<(), Error> {
        let path = path.as_ref();
        let b = self
            .builder(path, perm & 0o7777)?
            .set_mode_file_type(ModeFileType::Directory)
            .nlink(2);
        self.write_entry(b, &[], path)
    }

    /// A regular file.
    pub fn file(&mut self, path: impl AsRef<Path>, perm: u32, data: &[u8]) -> Result<(), Error> {
        let path = path.as_ref();
        let b = self
            .builder(path, perm & 0o7777)?
            .set_mode_file_type(ModeFileType::Regular);
        self.write_entry(b, data, path)
    }

    /// A symbolic link to `target` (stored verbatim, like `ln -s`).
    pub fn symlink(&mut self, path: impl AsRef<Path>, target: &str) -> Result<(), Error> {
        let path = path.as_ref();
        let b = self
            .builder(path, 0o777)?
            .set_mode_file_type(ModeFileType::Symlink);
        self.write_entry(b, target.as_bytes(), path)
    }

    /// A character device node, e.g. `dev/console` 5:1.
    pub fn char_device(
        &mut self,
        path: impl AsRef<Path>,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), Error> {
        let path = path.as_ref();
        let b = self
            .builder(path, perm & 0o7777)?
            .set_mode_file_type(ModeFileType::Char)
            .rdev_major(major)
            .rdev_minor(minor);
        self.write_entry(b, &[], path)
    }

    /// Adds the contents of the host directory `root` (not `root` itself),
    /// in sorted order, keeping permission bits but not ownership or times.
    pub fn tree(&mut self, root: &Path) -> Result<(), Error> {
        self.tree_at(root, Path::new(""))
    }

    fn tree_at(&mut self, dir: &Path, prefix: &Path) -> Result<(), Error> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        let mut entries: Vec<_> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .collect::<Result<_, _>>()
            .map_err(io_err(dir))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let host = entry.path();
            let name = prefix.join(entry.file_name());
            let meta = fs::symlink_metadata(&host).map_err(io_err(&host))?;
            let perm = meta.permissions().mode();
            let ft = meta.file_type();
            if ft.is_dir() {
                self.dir(&name, perm)?;
                self.tree_at(&host, &name)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&host).map_err(io_err(&host))?;
                self.symlink(&name, &target.to_string_lossy())?;
            } else if ft.is_file() {
                let data = fs::read(&host).map_err(io_err(&host))?;
                self.file(&name, perm, &data)?;
            } else {
                return Err(Error::Unsupported { path: host });
            }
        }
        Ok(())
    }

    /// Writes the trailer and returns the output.
    pub fn finish(self) -> Result<W, Error> {
        Ok(cpio::newc::trailer(self.out)?)
    }
}

/// The name an entry has inside the archive: relative, normalised, never
/// escaping the archive root.
fn archive_name(path: &Path) -> Result<String, Error> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::BadPath {
                    path: path.to_owned(),
                })
            }
        }
    }
    if parts.is_empty() {
        return Err(Error::BadPath {
            path: path.to_owned(),
        });
    }
    Ok(parts.join("/"))
}

/// Concatenates an uncompressed cpio archive after an initramfs image
/// (compressed or not). The kernel unpacks the segments in order; an
/// uncompressed segment must start on a 4-byte boundary, hence the zero
/// padding, which the kernel skips.
pub fn append(base: &[u8], overlay: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(base.len() + overlay.len() + 4);
    out.extend_from_slice(base);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out.extend_from_slice(overlay);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpio::NewcReader;
    use std::io::Read;

    /// (name, mode, rdev major, rdev minor, data)
    fn read_all(mut bytes: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let mut r = NewcReader::new(bytes).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let e = r.entry();
            let meta = (
                e.name().to_owned(),
                e.mode(),
                e.rdev_major(),
                e.rdev_minor(),
                e.uid(),
            );
            let mut data = Vec::new();
            r.read_to_end(&mut data).unwrap();
            assert_eq!(meta.4, 0, "owned by root");
            out.push((meta.0, meta.1, meta.2, meta.3, data));
            bytes = r.finish().unwrap();
        }
        out
    }

    #[test]
    fn writes_every_entry_type() {
        let mut a = Archive::new(Vec::new(), 0);
        a.dir("/dev", 0o755).unwrap();
        a.char_device("/dev/console", 0o600, 5, 1).unwrap();
        a.file("etc/hostname", 0o644, b"corral\n").unwrap();
        a.symlink("sbin/poweroff", "/init").unwrap();
        let entries = read_all(&a.finish().unwrap());
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].0, "dev");
        assert_eq!(entries[0].1, 0o040755);
        assert_eq!(entries[1].0, "dev/console");
        assert_eq!((entries[1].1, entries[1].2, entries[1].3), (0o020600, 5, 1));
        assert_eq!(entries[2].4, b"corral\n");
        assert_eq!(entries[2].1, 0o100644);
        assert_eq!(entries[3].1, 0o120777);
        assert_eq!(entries[3].4, b"/init");
    }

    #[test]
    fn trees_are_sorted_and_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc/corral")).unwrap();
        fs::write(root.join("etc/corral/config.toml"), "x = 1\n").unwrap();
        fs::write(root.join("b"), "b").unwrap();
        fs::write(root.join("a"), "a").unwrap();
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("a", root.join("c")).unwrap();

        let build = || {
            let mut a = Archive::new(Vec::new(), 0);
            a.tree(root).unwrap();
            a.finish().unwrap()
        };
        let first = build();
        // Touching files changes nothing: times are not recorded.
        fs::write(root.join("b"), "b").unwrap();
        assert_eq!(first, build());

        let names: Vec<_> = read_all(&first).into_iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(
            names,
            [
                ("a".to_owned(), 0o100755),
                ("b".to_owned(), 0o100644),
                ("c".to_owned(), 0o120777),
                ("etc".to_owned(), 0o040755),
                ("etc/corral".to_owned(), 0o040755),
                ("etc/corral/config.toml".to_owned(), 0o100644),
            ]
        );
    }

    #[test]
    fn paths_cannot_escape() {
        let mut a = Archive::new(Vec::new(), 0);
        assert!(matches!(
            a.file("../etc/passwd", 0o644, b""),
            Err(Error::BadPath { .. })
        ));
        assert!(matches!(a.dir("/", 0o755), Err(Error::BadPath { .. })));
    }

    #[test]
    fn append_pads_to_four_bytes() {
        let joined = append(b"12345", b"0707");
        assert_eq!(joined, [&b"12345\0\0\0"[..], b"0707"].concat());
        assert_eq!(append(b"1234", b"x"), b"1234x");
    }
}
