//! `docker cp`: a path of a container's filesystem as a tar archive, and a
//! tar archive unpacked into one of its directories, with Docker's
//! semantics (moby's `daemon/archive.go`).
//!
//! Every path, the requested one and each archive entry's, is resolved
//! inside the container's root with `pathrs` (openat2 `RESOLVE_IN_ROOT`,
//! with checks on the fallback resolver): `..` stops at the root and a
//! symlink the container made is followed as the container would follow
//! it, so no path can reach the host's files. Entries are unpacked below
//! the destination as if it were the root (as moby's `chrootarchive`), and
//! metadata is set through the handle of the inode just made, never by
//! path.

use std::collections::HashMap;
use std::fs::{File, Metadata, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use pathrs::error::ErrorKind;
use pathrs::flags::OpenFlags;
use pathrs::{Handle, InodeType, Root};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The path (as asked for) does not exist.
    #[error("no such file or directory: {0}")]
    NotFound(String),
    /// The request or the archive is wrong (400).
    #[error("{0}")]
    Invalid(String),
    /// The destination is on a read-only mount (403).
    #[error("{0}: the container's file system is read-only there")]
    ReadOnly(String),
    #[error("{0}")]
    Io(String),
}

pub type Result<T> = std::result::Result<T, ArchiveError>;

/// What `HEAD /containers/{id}/archive` answers, base64 JSON in the
/// `X-Docker-Container-Path-Stat` header (`types.ContainerPathStat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits, which the CLI tests (`ModeDir`, ...).
    pub mode: u32,
    /// RFC 3339 with nanoseconds, as Go's `time.Time` encodes.
    pub mtime: String,
    /// For a symlink, where it points (absolute in the container).
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

/// Go's `os.FileMode` for a Unix mode.
pub fn go_file_mode(mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const NAMED_PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR_DEVICE: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let mut m = mode & 0o777;
    for (bit, go) in [
        (libc::S_ISUID, SETUID),
        (libc::S_ISGID, SETGID),
        (libc::S_ISVTX, STICKY),
    ] {
        if mode & bit != 0 {
            m |= go;
        }
    }
    m | match mode & libc::S_IFMT {
        libc::S_IFDIR => DIR,
        libc::S_IFLNK => SYMLINK,
        libc::S_IFIFO => NAMED_PIPE,
        libc::S_IFSOCK => SOCKET,
        libc::S_IFBLK => DEVICE,
        libc::S_IFCHR => DEVICE | CHAR_DEVICE,
        _ => 0,
    }
}

/// The path as an absolute, clean path in the container, keeping a
/// trailing `/` or `/.`, which mean "the directory itself, followed if a
/// symlink" (moby's `PreserveTrailingDotOrSeparator`).
pub fn abs_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if out != "/" {
        if path.ends_with("/.") {
            out.push_str("/.");
        } else if path.ends_with('/') {
            out.push('/');
        }
    }
    out
}

/// Go's `filepath.Base` of an absolute path: the name the archive's
/// entries start with.
pub fn base_name(abs: &str) -> String {
    let trimmed = abs.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        None | Some("") => "/".into(),
        Some(b) => b.into(),
    }
}

/// The directory part of an absolute path (`/a/b` → `/a`).
pub fn parent_of(abs: &str) -> &str {
    let trimmed = abs.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &trimmed[..i],
    }
}

fn classify(e: pathrs::error::Error, path: &str) -> ArchiveError {
    match e.kind() {
        ErrorKind::OsError(Some(libc::ENOENT)) => ArchiveError::NotFound(path.into()),
        ErrorKind::OsError(Some(libc::ENOTDIR)) => ArchiveError::NotFound(path.into()),
        ErrorKind::OsError(Some(libc::EROFS)) => ArchiveError::ReadOnly(path.into()),
        _ => ArchiveError::Io(format!("{path}: {e}")),
    }
}

fn io_error(e: io::Error, path: &str) -> ArchiveError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => ArchiveError::NotFound(path.into()),
        Some(libc::EROFS) => ArchiveError::ReadOnly(path.into()),
        _ => ArchiveError::Io(format!("{path}: {e}")),
    }
}

/// The inode a handle is for, by its `/proc/self/fd` link: chmod and
/// utimes through it reach that inode, whatever its path now leads to.
pub(crate) fn fd_path(fd: &impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// A stream decompressed by its magic bytes: gzip, bzip2 or xz (what
/// Docker's `DecompressStream` takes for build contexts and `ADD`), or
/// as it is.
pub fn decompressed<'a, R: io::BufRead + 'a>(mut r: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(r))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r))
    } else {
        Box::new(r)
    })
}

/// The metadata of what a handle opens (a symlink's own, for a symlink).
pub(crate) fn fd_metadata(handle: &Handle) -> Option<Metadata> {
    metadata(handle).ok()
}

fn metadata(handle: &Handle) -> io::Result<Metadata> {
    // statx(fd, "", AT_EMPTY_PATH): works on the O_PATH handle, and for
    // a symlink's handle describes the symlink.
    let fd: OwnedFd = handle.as_fd().try_clone_to_owned()?;
    File::from(fd).metadata()
}

/// Stats `path` in `root` without following a final symlink (unless the
/// path ends in `/`), as `HEAD /containers/{id}/archive` does.
pub fn stat(root: &Root, path: &str) -> Result<PathStat> {
    let abs = abs_path(path);
    let handle = root.resolve_nofollow(&abs).map_err(|e| classify(e, &abs))?;
    let md = metadata(&handle).map_err(|e| io_error(e, &abs))?;
    let link_target = if md.file_type().is_symlink() {
        let target = root.readlink(&abs).map_err(|e| classify(e, &abs))?;
        let target = target.to_string_lossy();
        if target.starts_with('/') {
            abs_path(&target)
        } else {
            abs_path(&format!("{}/{target}", parent_of(&abs)))
        }
    } else {
        String::new()
    };
    let mtime = std::time::UNIX_EPOCH
        + std::time::Duration::new(md.mtime().max(0) as u64, md.mtime_nsec() as u32);
    Ok(PathStat {
        name: base_name(&abs),
        size: md.size() as i64,
        mode: go_file_mode(md.mode()),
        mtime: humantime::format_rfc3339_nanos(mtime).to_string(),
        link_target,
    })
}

/// Whether `path` is a directory in `root`, symlinks followed inside it
/// (where `COPY file /usr/local/bin` puts the file).
pub fn is_dir(root: &Root, path: &str) -> bool {
    root.resolve(abs_path(path))
        .ok()
        .and_then(|h| metadata(&h).ok())
        .is_some_and(|m| m.is_dir())
}

/// Writes `path` (a file, a symlink, or a directory and everything below
/// it) as a tar archive whose entries start with its base name, as `GET
/// /containers/{id}/archive` does. Mounts inside the tree (volumes) are
/// crossed, as the container sees them; sockets are left out.
pub fn write_tar(root: &Root, path: &str, out: impl Write) -> Result<()> {
    let abs = abs_path(path);
    let name = match base_name(&abs).as_str() {
        "/" => ".".to_owned(),
        b => b.to_owned(),
    };
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut walk = Walk {
        root,
        links: HashMap::new(),
    };
    walk.add(&mut builder, Path::new(&abs), Path::new(&name))?;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| ArchiveError::Io(format!("writing the archive: {e}")))
}

struct Walk<'a> {
    root: &'a Root,
    /// First name of each inode with more links, for hardlink entries.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Walk<'_> {
    fn add<W: Write>(&mut self, tar: &mut tar::Builder<W>, path: &Path, name: &Path) -> Result<()> {
        let shown = path.display().to_string();
        let handle = self
            .root
            .resolve_nofollow(path)
            .map_err(|e| classify(e, &shown))?;
        let md = metadata(&handle).map_err(|e| io_error(e, &shown))?;
        let ft = md.file_type();
        if ft.is_socket() {
            return Ok(());
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata(&md);
        header.set_mode(md.mode() & 0o7777);
        header.set_size(0);
        let werr = |e: io::Error| ArchiveError::Io(format!("writing the archive ({shown}): {e}"));
        if ft.is_dir() {
            tar.append_data(&mut header, name, io::empty())
                .map_err(werr)?;
            let dir = handle
                .reopen(OpenFlags::O_RDONLY | OpenFlags::O_DIRECTORY)
                .map_err(|e| classify(e, &shown))?;
            let mut children: Vec<_> = std::fs::read_dir(fd_path(&dir))
                .and_then(|it| it.map(|e| e.map(|e| e.file_name())).collect())
                .map_err(|e| io_error(e, &shown))?;
            children.sort();
            for child in children {
                self.add(tar, &path.join(&child), &name.join(&child))?;
            }
            return Ok(());
        }
        if ft.is_symlink() {
            let target = self.root.readlink(path).map_err(|e| classify(e, &shown))?;
            return tar.append_link(&mut header, name, target).map_err(werr);
        }
        if md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                return tar.append_link(&mut header, name, first).map_err(werr);
            }
            self.links.insert(key, name.to_owned());
        }
        if ft.is_block_device() || ft.is_char_device() {
            let rdev = md.rdev();
            header
                .set_device_major(libc::major(rdev))
                .and_then(|()| header.set_device_minor(libc::minor(rdev)))
                .map_err(werr)?;
        }
        if ft.is_file() {
            let size = md.size();
            header.set_size(size);
            let file = handle
                .reopen(OpenFlags::O_RDONLY)
                .map_err(|e| classify(e, &shown))?;
            // Exactly the size in the header, even if a running container
            // is changing the file: a shorter read would corrupt the
            // archive, a longer one is cut.
            let data = file.take(size).chain(io::repeat(0)).take(size);
            return tar.append_data(&mut header, name, data).map_err(werr);
        }
        tar.append_data(&mut header, name, io::empty())
            .map_err(werr)
    }
}

/// How [`extract`] treats what is already there.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions {
    /// Keep the archive's owners (`docker cp -a`); otherwise root owns
    /// everything, as Docker does.
    pub copy_uid_gid: bool,
    /// Refuse to replace a directory with a non-directory or the other
    /// way round (the CLI always asks for this).
    pub no_overwrite_dir_non_dir: bool,
}

/// An archive entry's name as a clean path below the destination; `None`
/// for the destination itself.
fn entry_path(raw: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(ArchiveError::Invalid(format!(
                        "archive entry {:?} points outside the destination",
                        raw.display().to_string()
                    )));
                }
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Unpacks a tar archive into the directory `dest` of `root` (a symlink
/// to a directory is followed), as `PUT /containers/{id}/archive` does.
pub fn extract(root: &Root, dest: &str, tar: impl Read, opts: ExtractOptions) -> Result<()> {
    let abs = abs_path(dest);
    let handle = root.resolve(&abs).map_err(|e| classify(e, &abs))?;
    let md = metadata(&handle).map_err(|e| io_error(e, &abs))?;
    if !md.is_dir() {
        return Err(ArchiveError::Invalid(format!(
            "extraction point is not a directory: {abs}"
        )));
    }
    let dest_root = Root::from_fd(OwnedFd::from(handle));
    let mut unpack = Unpack {
        root: &dest_root,
        base: PathBuf::from(&abs),
        opts,
        dirs: Vec::new(),
    };
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| ArchiveError::Invalid(format!("reading the archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| ArchiveError::Invalid(format!("reading the archive: {e}")))?;
        unpack.entry(&mut entry)?;
    }
    // Directories' times last: every entry made in one changed them.
    for (rel, mtime) in unpack.dirs.iter().rev() {
        if let Ok(h) = dest_root.resolve_nofollow(rel) {
            let _ = set_times(&h, *mtime);
        }
    }
    Ok(())
}

struct Unpack<'a> {
    root: &'a Root,
    /// The destination's path in the container, for messages.
    base: PathBuf,
    opts: ExtractOptions,
    dirs: Vec<(PathBuf, u64)>,
}

impl Unpack<'_> {
    fn shown(&self, rel: &Path) -> String {
        self.base.join(rel).display().to_string()
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        use tar::EntryType as T;
        let raw = entry
            .path()
            .map_err(|e| ArchiveError::Invalid(format!("archive entry name: {e}")))?
            .into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        let Some(rel) = entry_path(&raw)? else {
            return Ok(()); // "./": the destination itself stays as it is.
        };
        let shown = self.shown(&rel);
        let header = entry.header();
        let dev = libc::makedev(
            header.device_major().ok().flatten().unwrap_or(0),
            header.device_minor().ok().flatten().unwrap_or(0),
        );
        let link_name = entry.link_name().ok().flatten().map(|l| l.into_owned());
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let (uid, gid) = if self.opts.copy_uid_gid {
            (
                header.uid().unwrap_or(0) as u32,
                header.gid().unwrap_or(0) as u32,
            )
        } else {
            (0, 0)
        };
        let is_dir = kind == T::Directory;
        if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.root
                .mkdir_all(parent, &Permissions::from_mode(0o755))
                .map_err(|e| classify(e, &self.shown(parent)))?;
        }
        if let Ok(existing) = self.root.resolve_nofollow(&rel) {
            let was_dir = metadata(&existing).map(|m| m.is_dir()).unwrap_or(false);
            let name = raw.display();
            match (was_dir, is_dir) {
                (true, true) => {}
                (true, false) if self.opts.no_overwrite_dir_non_dir => {
                    return Err(ArchiveError::Invalid(format!(
                        "cannot overwrite directory {shown:?} with non-directory {name:?}"
                    )))
                }
                (false, true) if self.opts.no_overwrite_dir_non_dir => {
                    return Err(ArchiveError::Invalid(format!(
                        "cannot overwrite non-directory {shown:?} with directory {name:?}"
                    )))
                }
                (true, false) => self
                    .root
                    .remove_all(&rel)
                    .map_err(|e| classify(e, &shown))?,
                (false, _) => self
                    .root
                    .remove_file(&rel)
                    .map_err(|e| classify(e, &shown))?,
            }
        }
        let perm = Permissions::from_mode(mode);
        let link = || -> Result<PathBuf> {
            link_name
                .clone()
                .ok_or_else(|| ArchiveError::Invalid(format!("{shown}: link without a target")))
        };
        match kind {
            T::Directory => {
                if self.root.resolve_nofollow(&rel).is_err() {
                    self.root
                        .create(&rel, &InodeType::Directory(perm))
                        .map_err(|e| classify(e, &shown))?;
                }
            }
            T::Regular | T::Continuous => {
                let mut file = self
                    .root
                    .create_file(&rel, OpenFlags::O_WRONLY | OpenFlags::O_EXCL, &perm)
                    .map_err(|e| classify(e, &shown))?;
                io::copy(entry, &mut file).map_err(|e| io_error(e, &shown))?;
            }
            T::Symlink => {
                let target = link()?;
                self.root
                    .create(&rel, &InodeType::Symlink(target))
                    .map_err(|e| classify(e, &shown))?;
            }
            T::Link => {
                // The target is another entry: a name below the
                // destination, resolved there.
                let target = entry_path(&link()?)?.ok_or_else(|| {
                    ArchiveError::Invalid(format!("{shown}: hard link to the destination"))
                })?;
                return self
                    .root
                    .create(&rel, &InodeType::Hardlink(target))
                    .map_err(|e| classify(e, &shown));
            }
            T::Char | T::Block | T::Fifo => {
                let inode = match kind {
                    T::Char => InodeType::CharacterDevice(perm, dev),
                    T::Block => InodeType::BlockDevice(perm, dev),
                    _ => InodeType::Fifo(perm),
                };
                self.root
                    .create(&rel, &inode)
                    .map_err(|e| classify(e, &shown))?;
            }
            other => {
                return Err(ArchiveError::Invalid(format!(
                    "{:?}: entry type {other:?} is not supported",
                    raw.display().to_string()
                )))
            }
        }
        // Owner, then mode (a chown clears set-id bits), then times: all
        // on the inode just made, through its handle.
        let handle = self
            .root
            .resolve_nofollow(&rel)
            .map_err(|e| classify(e, &shown))?;
        nix::unistd::fchownat(
            &handle,
            "",
            Some(uid.into()),
            Some(gid.into()),
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        )
        .map_err(|e| ArchiveError::Io(format!("{shown}: chown: {e}")))?;
        if kind != T::Symlink {
            std::fs::set_permissions(fd_path(&handle), Permissions::from_mode(mode))
                .map_err(|e| io_error(e, &shown))?;
            if is_dir {
                self.dirs.push((rel, mtime));
            } else {
                set_times(&handle, mtime).map_err(|e| io_error(e, &shown))?;
            }
        }
        Ok(())
    }
}

/// Sets access and modification time of a handle's inode (not a
/// symlink's: the `/proc` link would be followed to the symlink's target).
fn set_times(handle: &Handle, mtime: u64) -> io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(mtime as libc::time_t, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        &fd_path(handle),
        &t,
        &t,
        UtimensatFlags::FollowSymlink,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cleaned_keeping_a_trailing_slash_or_dot() {
        assert_eq!(abs_path("etc/hostname"), "/etc/hostname");
        assert_eq!(abs_path("/../../etc//x"), "/etc/x");
        assert_eq!(abs_path("/data/"), "/data/");
        assert_eq!(abs_path("/data/."), "/data/.");
        assert_eq!(abs_path("/"), "/");
        assert_eq!(abs_path(""), "/");
        assert_eq!(base_name("/etc/hostname"), "hostname");
        assert_eq!(base_name("/data/"), "data");
        assert_eq!(base_name("/data/."), ".");
        assert_eq!(base_name("/"), "/");
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a"), "/");
    }

    #[test]
    fn modes_are_go_file_modes() {
        assert_eq!(go_file_mode(libc::S_IFREG | 0o644), 0o644);
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(
            go_file_mode(libc::S_IFCHR | 0o666),
            (1 << 26) | (1 << 21) | 0o666
        );
        assert_eq!(
            go_file_mode(libc::S_IFREG | libc::S_ISUID | 0o755),
            (1 << 23) | 0o755
        );
        assert_eq!(
            go_file_mode(libc::S_IFDIR | 0o1777),
            (1 << 31) | (1 << 20) | 0o777
        );
    }

    #[test]
    fn entry_names_stay_below_the_destination() {
        assert_eq!(entry_path(Path::new("./a/b")).unwrap(), Some("a/b".into()));
        assert_eq!(entry_path(Path::new("/a/../b")).unwrap(), Some("b".into()));
        assert_eq!(entry_path(Path::new("./")).unwrap(), None);
        assert!(entry_path(Path::new("a/../../etc/passwd")).is_err());
    }
}
