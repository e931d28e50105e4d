//! Moving the root filesystem from the initramfs to a tmpfs.
//!
//! The kernel unpacks the initramfs into `rootfs`, the root of the whole
//! mount tree, which `pivot_root(2)` refuses to move. Container runtimes
//! need `pivot_root` to give a container its own root without leaving the
//! host's reachable (the `MS_MOVE` + `chroot` fallback can be escaped by a
//! process with `CAP_SYS_CHROOT`). So, as LinuxKit's init does, PID 1
//! first moves every file into a fresh tmpfs (freeing the initramfs copy
//! as it goes), makes that tmpfs the root with `MS_MOVE` + `chroot`, and
//! executes itself again. The second run sees the marker in its
//! environment and goes on with the boot.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};
use nix::unistd::{chdir, chroot, execve};

/// `RAMFS_MAGIC` from linux/magic.h (nix does not name it).
const RAMFS_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x8584_58f6);

/// Set in the environment of the re-executed init.
pub const MARKER: &str = "CORRAL_ROOT=tmpfs";

/// Where the new root is assembled, inside the old one.
const STAGING: &str = "/.corral-root";

/// Whether this init still runs on the initramfs.
pub fn needed() -> bool {
    if std::env::var_os("CORRAL_ROOT").is_some() {
        return false;
    }
    // rootfs is ramfs, or tmpfs when the kernel has it; either way a
    // RAM-backed fs with no device. A disk root needs no switch.
    match nix::sys::statfs::statfs("/") {
        Ok(s) => {
            let t = s.filesystem_type();
            t == RAMFS_MAGIC || t == nix::sys::statfs::TMPFS_MAGIC
        }
        Err(_) => false,
    }
}

/// Moves the root to a tmpfs and re-executes `/init`. Returns only on
/// failure, with the root as it was or partly moved (the caller boots on
/// regardless: everything still works except containers).
pub fn switch() -> io::Error {
    match try_switch() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_switch() -> io::Result<std::convert::Infallible> {
    let staging = Path::new(STAGING);
    fs::create_dir_all(staging)?;
    mount(
        Some("tmpfs"),
        staging,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(|e| io::Error::other(format!("mounting tmpfs on {STAGING}: {e}")))?;
    for entry in fs::read_dir("/")? {
        let entry = entry?;
        let name = entry.file_name();
        if Path::new("/").join(&name) == staging {
            continue;
        }
        move_entry(&entry.path(), &staging.join(&name))?;
    }
    chdir(staging).map_err(io::Error::from)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| io::Error::other(format!("moving the new root onto /: {e}")))?;
    chroot(".").map_err(io::Error::from)?;
    chdir("/").map_err(io::Error::from)?;

    let args: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    env.push(CString::new(MARKER).map_err(io::Error::other)?);
    let init = CString::new("/init").map_err(io::Error::other)?;
    let e = execve(&init, &args, &env).err();
    Err(io::Error::other(format!(
        "re-executing /init on the new root: {}",
        e.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// Moves one tree: copies it with owners, modes and device numbers intact,
/// and deletes the source as it goes so the RAM is not held twice.
pub fn move_entry(src: &Path, dst: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let ft = meta.file_type();
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", src.display()));
    if ft.is_dir() {
        fs::create_dir(dst).map_err(ctx)?;
        for entry in fs::read_dir(src).map_err(ctx)? {
            let entry = entry.map_err(ctx)?;
            move_entry(&entry.path(), &dst.join(entry.file_name()))?;
        }
        fs::remove_dir(src).map_err(ctx)?;
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(ctx)?;
        std::os::unix::fs::symlink(&target, dst).map_err(ctx)?;
        fs::remove_file(src).map_err(ctx)?;
    } else if ft.is_file() {
        fs::copy(src, dst).map_err(ctx)?;
        fs::remove_file(src).map_err(ctx)?;
    } else {
        let kind = if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else if ft.is_fifo() {
            SFlag::S_IFIFO
        } else {
            // Sockets cannot exist before anything ran; skip anything odd.
            return Ok(());
        };
        mknod(
            dst,
            kind,
            Mode::from_bits_truncate(meta.mode()),
            meta.rdev(),
        )
        .map_err(|e| ctx(e.into()))?;
        fs::remove_file(src).map_err(ctx)?;
    }
    // Owner first: chown clears set-id bits, which the mode then restores.
    // Without root (tests) ownership stays the caller's.
    let _ = std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()));
    if !ft.is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(ctx)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_a_tree_with_modes_links_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let dst = dir.path().join("dst");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::write(src.join("bin/busybox"), b"#!binary").unwrap();
        fs::set_permissions(src.join("bin/busybox"), fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("busybox", src.join("bin/sh")).unwrap();
        fs::create_dir(src.join("tmp")).unwrap();
        fs::set_permissions(src.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();

        move_entry(&src, &dst).unwrap();

        assert!(!src.exists(), "the source is deleted");
        assert_eq!(fs::read(dst.join("bin/busybox")).unwrap(), b"#!binary");
        let mode = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("bin/busybox"), 0o4755);
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(
            fs::read_link(dst.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert!(fs::symlink_metadata(dst.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
    }
}
