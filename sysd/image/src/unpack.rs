//! Unpacking one layer tarball into a directory in overlayfs format.
//!
//! Each layer is kept as its own directory and stacked by overlayfs at
//! container start, so whiteouts are not applied here but converted to
//! what overlayfs understands: `.wh.NAME` becomes a 0:0 character device
//! `NAME`, and `.wh..wh..opq` becomes `trusted.overlay.opaque=y` on its
//! directory.
//!
//! Nothing is ever written through a symlink: every parent of an entry is
//! checked with `lstat`, and an entry whose path climbs out (`..`) or
//! passes through a symlink is refused, as is a hard link to outside.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{mknod, Mode, SFlag};
use nix::sys::time::TimeSpec;

use crate::digest::Hashing;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What unpacking found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// `sha256:` of the uncompressed tar stream.
    pub diff_id: String,
    /// Bytes of regular file content.
    pub size: u64,
}

type Fail = String;

/// Unpacks a (gzip, zstd or plain) layer tarball into `dest`, which is
/// created. Errors are plain messages; the caller names the layer.
pub fn unpack_layer(reader: impl Read, dest: &Path) -> Result<Unpacked, String> {
    let mut hashing = Hashing::new(decompressed(reader)?);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(dest)
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    let size = unpack_tar(&mut hashing, dest)?;
    let (diff_id, _) = hashing
        .finish()
        .map_err(|e| format!("reading after the end of the tar stream: {e}"))?;
    Ok(Unpacked { diff_id, size })
}

/// A layer's tar stream, whichever way it is compressed (gzip, zstd or
/// none: told by its first bytes, as Docker does).
pub(crate) fn decompressed<'a>(reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>, String> {
    let mut reader = BufReader::with_capacity(128 << 10, reader);
    let magic = reader
        .fill_buf()
        .map_err(|e| format!("reading: {e}"))?
        .get(..4)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(reader).map_err(|e| format!("zstd: {e}"))?,
        )
    } else {
        Box::new(reader)
    })
}

fn unpack_tar(reader: &mut dyn Read, dest: &Path) -> Result<u64, Fail> {
    let mut archive = tar::Archive::new(reader);
    let mut size = 0u64;
    // Directory times are set last: entries inside change them.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let entries = archive.entries().map_err(|e| format!("reading tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("reading tar: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("bad entry path: {e}"))?
            .into_owned();
        let rel = clean(&raw)?;
        let kind = entry.header().entry_type();
        let Some(name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            // The layer's root ("./"): nothing to create.
            continue;
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        make_parents(dest, parent)?;
        if name == OPAQUE {
            let dir = dest.join(parent);
            xattr::set(&dir, OPAQUE_XATTR, b"y")
                .map_err(|e| format!("{}: marking opaque: {e}", raw.display()))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(format!("{}: invalid whiteout name", raw.display()));
            }
            let target = dest.join(parent).join(hidden);
            remove_existing(&target)?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| format!("{}: making the whiteout: {e}", raw.display()))?;
            continue;
        }
        let full = dest.join(&rel);
        let existing = fs::symlink_metadata(&full).ok();
        let is_dir_entry = kind == tar::EntryType::Directory;
        match &existing {
            Some(m) if m.is_dir() && is_dir_entry => {}
            Some(_) => remove_existing(&full)?,
            None => {}
        }
        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|e| format!("{}: {e}", raw.display()))?
            & 0o7777;
        let uid = header
            .uid()
            .map_err(|e| format!("{}: {e}", raw.display()))?;
        let gid = header
            .gid()
            .map_err(|e| format!("{}: {e}", raw.display()))?;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let at = |what: &str, e: &dyn std::fmt::Display| format!("{}: {what}: {e}", raw.display());
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full)
                    .map_err(|e| at("creating", &e))?;
                size += io::copy(&mut entry, &mut f).map_err(|e| at("writing", &e))?;
            }
            tar::EntryType::Directory => {
                if existing.is_none() {
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&full)
                        .map_err(|e| at("creating", &e))?;
                }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| at("link target", &e))?
                    .ok_or_else(|| format!("{}: symlink without a target", raw.display()))?;
                std::os::unix::fs::symlink(&target, &full).map_err(|e| at("symlink", &e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| at("link target", &e))?
                    .ok_or_else(|| format!("{}: hard link without a target", raw.display()))?;
                let target_rel = clean(&target)?;
                check_parents(dest, target_rel.parent().unwrap_or(Path::new("")))?;
                let src = dest.join(&target_rel);
                match fs::symlink_metadata(&src) {
                    Ok(m) if !m.is_dir() => {}
                    Ok(_) => return Err(format!("{}: hard link to a directory", raw.display())),
                    Err(_) => {
                        return Err(format!(
                            "{}: hard link target {} is not in this layer",
                            raw.display(),
                            target.display()
                        ))
                    }
                }
                fs::hard_link(&src, &full).map_err(|e| at("hard link", &e))?;
                // The link shares the target's inode and metadata.
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (flag, dev) = match kind {
                    tar::EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let major = header.device_major().ok().flatten().unwrap_or(0);
                        let minor = header.device_minor().ok().flatten().unwrap_or(0);
                        let flag = if kind == tar::EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (flag, nix::sys::stat::makedev(major.into(), minor.into()))
                    }
                };
                match mknod(&full, flag, Mode::from_bits_truncate(0o600), dev) {
                    Ok(()) => {}
                    // Device nodes only where allowed (not in a user
                    // namespace, say); the container gets /dev anyway.
                    Err(nix::errno::Errno::EPERM) => {
                        log::warn!("{}: device node skipped (not permitted)", raw.display());
                        continue;
                    }
                    Err(e) => return Err(at("mknod", &e)),
                }
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                log::warn!("{}: entry type {other:?} skipped", raw.display());
                continue;
            }
        }
        std::os::unix::fs::lchown(&full, Some(uid as u32), Some(gid as u32))
            .map_err(|e| at("chown", &e))?;
        if kind != tar::EntryType::Symlink {
            // After chown, which clears setuid bits.
            fs::set_permissions(&full, fs::Permissions::from_mode(mode))
                .map_err(|e| at("chmod", &e))?;
        }
        if let Some(exts) = entry.pax_extensions().map_err(|e| at("pax header", &e))? {
            for ext in exts {
                let ext = ext.map_err(|e| at("pax header", &e))?;
                let Ok(key) = ext.key() else { continue };
                if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                    if kind == tar::EntryType::Symlink {
                        continue;
                    }
                    if let Err(e) = xattr::set(&full, attr, ext.value_bytes()) {
                        // security.* or trusted.* may be refused where the
                        // store lives; the file is still usable.
                        log::warn!("{}: xattr {attr} not set: {e}", raw.display());
                    }
                }
            }
        }
        if kind == tar::EntryType::Directory {
            dir_times.push((full, mtime));
        } else {
            set_mtime(&full, mtime).map_err(|e| at("utimes", &e))?;
        }
    }
    for (dir, mtime) in dir_times.iter().rev() {
        let _ = set_mtime(dir, *mtime);
    }
    Ok(size)
}

fn set_mtime(p: &Path, mtime: i64) -> nix::Result<()> {
    let t = TimeSpec::new(mtime, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
}

/// The entry's path relative to the layer root; `..` is refused.
pub(crate) fn clean(p: &Path) -> Result<PathBuf, Fail> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("{}: path traversal (\"..\") refused", p.display()))
            }
        }
    }
    Ok(out)
}

/// Makes the entry's parent directories, refusing to pass through a
/// symlink or a non-directory.
fn make_parents(dest: &Path, parent: &Path) -> Result<(), Fail> {
    let mut dir = dest.to_owned();
    for c in parent.components() {
        dir.push(c);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{}: refusing to write through the symlink {}",
                    parent.display(),
                    dir.strip_prefix(dest).unwrap_or(&dir).display()
                ))
            }
            Ok(_) => {
                return Err(format!(
                    "{}: {} is not a directory",
                    parent.display(),
                    dir.strip_prefix(dest).unwrap_or(&dir).display()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    Ok(())
}

/// Like [`make_parents`] but only checks.
fn check_parents(dest: &Path, parent: &Path) -> Result<(), Fail> {
    let mut dir = dest.to_owned();
    for c in parent.components() {
        dir.push(c);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            _ => {
                return Err(format!(
                    "hard link target through {}: not a directory of this layer",
                    dir.strip_prefix(dest).unwrap_or(&dir).display()
                ))
            }
        }
    }
    Ok(())
}

fn remove_existing(p: &Path) -> Result<(), Fail> {
    crate::remove_all(p).map_err(|e| format!("{}: replacing: {e}", p.display()))
}
