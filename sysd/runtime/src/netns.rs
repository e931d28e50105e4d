//! Network namespaces kept as files, `ip netns`'s way: a bind mount of
//! the namespace on a file keeps it alive with no process in it, so a
//! container's network can be set up before its process starts and torn
//! down after it ends (netavark needs the namespace for both).
//!
//! A bind mount lives in the mount namespace that made it. An engine that
//! restarts gets a new one and sees the files empty; it pins the
//! namespaces of the containers it adopts again from `/proc/PID/ns/net`
//! ([`pin`]).

use std::io;
use std::path::Path;

use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// `NSFS_MAGIC` from linux/magic.h: what statfs says of a namespace file.
const NSFS_MAGIC: i64 = 0x6e73_6673;

fn touch(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
}

fn bind(from: &Path, to: &Path) -> io::Result<()> {
    nix::mount::mount(Some(from), to, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| {
        io::Error::other(format!(
            "binding {} on {}: {e}",
            from.display(),
            to.display()
        ))
    })
}

/// Makes a new network namespace with its loopback up and keeps it at
/// `path`. The namespace is made in a thread of its own, which leaves the
/// caller's threads in theirs.
pub fn create(path: &Path) -> io::Result<()> {
    touch(path)?;
    let target = path.to_owned();
    let made = std::thread::spawn(move || -> io::Result<()> {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| io::Error::other(format!("unshare(CLONE_NEWNET): {e}")))?;
        crate::sys::loopback_up().map_err(|e| io::Error::other(format!("setting lo up: {e}")))?;
        bind(Path::new("/proc/thread-self/ns/net"), &target)
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")));
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Keeps the namespace at `from` (`/proc/PID/ns/net`) at `path` too.
pub fn pin(from: &Path, path: &Path) -> io::Result<()> {
    if is_pinned(path) {
        return Ok(());
    }
    touch(path)?;
    bind(from, path)
}

/// Whether `path` holds a namespace (is a bind mount of one), not an
/// empty file left by an engine that has gone.
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// Lets the namespace go (it ends with the last process in it) and
/// removes the file. A path that is gone already is not an error.
pub fn release(path: &Path) -> io::Result<()> {
    if is_pinned(path) {
        umount2(path, MntFlags::MNT_DETACH)
            .map_err(|e| io::Error::other(format!("unmounting {}: {e}", path.display())))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::other(format!(
            "removing {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (unshare and mount), as the runtime's other tests do.
    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_kept_namespace_is_pinned_until_released() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        create(&path).unwrap();
        assert!(is_pinned(&path));
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let st = nix::sys::stat::stat(&path).unwrap();
        let own = nix::sys::stat::stat("/proc/self/ns/net").unwrap();
        assert_ne!(
            st.st_ino, own.st_ino,
            "a new namespace, not ours ({ours:?})"
        );
        // Pinning again at another path keeps the same namespace.
        let again = dir.path().join("again");
        pin(&path, &again).unwrap();
        assert_eq!(nix::sys::stat::stat(&again).unwrap().st_ino, st.st_ino);
        release(&again).unwrap();
        release(&path).unwrap();
        assert!(!path.exists());
        release(&path).unwrap();
        // An empty file is not a namespace.
        std::fs::write(&path, "").unwrap();
        assert!(!is_pinned(&path));
    }
}
