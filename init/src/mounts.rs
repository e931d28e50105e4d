//! The filesystems init mounts at boot, and the order it takes them down
//! at shutdown.
//!
//! The table is fixed: these are the API filesystems every Linux userspace
//! expects, mounted with the flags systemd and Docker use for them. Each
//! failure is reported and the rest still gets mounted, since a machine with
//! a missing `/dev/shm` is still worth booting to a shell.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::sys::Syscalls;

/// One entry of the boot mount table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOSUID_NODEV_NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);

/// Mounted in this order; a mount point inside another comes after it.
pub const BOOT_MOUNTS: &[Mount] = &[
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    Mount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        // gid 5 is the tty group in /etc/group.
        data: Some("gid=5,mode=0620,ptmxmode=0666"),
    },
    Mount {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
    },
    Mount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=0755"),
    },
    Mount {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
    },
    // Where an administrator mounts disks. Shared (as systemd makes every
    // mount), so that what the console mounts here the user engine sees
    // too, and `docker run -v /mnt/disk:/data` binds the same files.
    Mount {
        source: "tmpfs",
        target: "/mnt",
        fstype: "tmpfs",
        flags: NOSUID_NODEV.union(MsFlags::MS_SHARED),
        data: Some("mode=0755"),
    },
    Mount {
        source: "tmpfs",
        target: "/media",
        fstype: "tmpfs",
        flags: NOSUID_NODEV.union(MsFlags::MS_SHARED),
        data: Some("mode=0755"),
    },
    Mount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        // nsdelegate: cgroup namespaces become delegation boundaries, which
        // the container engine relies on.
        data: Some("nsdelegate"),
    },
];

/// The conventional links devtmpfs does not create.
pub const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    // The syslog service's socket, in a directory it can re-create it in.
    ("/run/corral/syslog/log", "/dev/log"),
];

/// A boot mount that did not happen.
#[derive(Debug)]
pub struct MountFailure {
    pub target: &'static str,
    pub error: MountError,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot create the mount point: {0}")]
    Mkdir(io::Error),
    #[error("mount failed: {0}")]
    Mount(Errno),
}

impl fmt::Display for MountFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.error)
    }
}

/// What `mount_all` did, for the log.
#[derive(Debug, Default)]
pub struct MountReport {
    pub mounted: Vec<&'static str>,
    pub already: Vec<&'static str>,
    pub failed: Vec<MountFailure>,
}

/// Mounts the boot table, skipping what is already mounted (a kernel with
/// `devtmpfs.mount=1`, or init restarted by hand).
pub fn mount_all(sys: &dyn Syscalls, table: &[Mount]) -> MountReport {
    let mut report = MountReport::default();
    for m in table {
        let target = Path::new(m.target);
        if let Err(e) = sys.mkdir_all(target, 0o755) {
            report.failed.push(MountFailure {
                target: m.target,
                error: MountError::Mkdir(e),
            });
            continue;
        }
        if sys.is_mountpoint(target).unwrap_or(false) {
            report.already.push(m.target);
            continue;
        }
        match sys.mount(m) {
            Ok(()) => report.mounted.push(m.target),
            Err(e) => report.failed.push(MountFailure {
                target: m.target,
                error: MountError::Mount(e),
            }),
        }
    }
    report
}

/// Creates the `/dev` symlinks that are missing. Errors are ignored: these
/// are conveniences, and an existing entry is left alone.
pub fn create_dev_symlinks(sys: &dyn Syscalls) {
    for (target, link) in DEV_SYMLINKS {
        let _ = sys.symlink(Path::new(target), Path::new(link));
    }
}

/// Enables every controller the kernel offers for the children of the
/// cgroup at `root`, so the container engine can set memory, cpu, io and
/// pids limits on the cgroups it creates. Returns the ones enabled and, per
/// controller, why it could not be.
pub fn enable_cgroup_controllers(root: &Path) -> io::Result<(Vec<String>, Vec<String>)> {
    let available = std::fs::read_to_string(root.join("cgroup.controllers"))?;
    let control = root.join("cgroup.subtree_control");
    let mut enabled = Vec::new();
    let mut failed = Vec::new();
    // One write per controller: a single write of the whole list fails as a
    // whole if any one controller is refused.
    for name in available.split_whitespace() {
        match crate::sys::write_knob(&control, &format!("+{name}")) {
            Ok(()) => enabled.push(name.to_owned()),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    Ok((enabled, failed))
}

/// A line of /proc/self/mountinfo, as far as shutdown needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
}

impl MountInfo {
    /// Backed by a block device, so data is lost if it is not cleanly
    /// unmounted or made read-only.
    pub fn has_device(&self) -> bool {
        self.source.starts_with("/dev/")
    }
}

/// Parses /proc/self/mountinfo (proc(5)), in mount order. Malformed lines
/// are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let target = fields.nth(4)?;
            // Optional fields end at a lone "-".
            let mut rest = fields.skip_while(|f| *f != "-").skip(1);
            let fstype = rest.next()?;
            let source = rest.next()?;
            Some(MountInfo {
                target: PathBuf::from(unescape(target)),
                fstype: unescape(fstype),
                source: unescape(source),
            })
        })
        .collect()
}

/// The kernel writes space, tab, newline and backslash in mountinfo as
/// three-digit octal escapes (`\040`).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\' {
            if let Some(code) = bytes
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(code);
                i += 4;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The order to take mounts down at shutdown: newest first, so a mount is
/// unmounted before the one it sits on, and never the root.
pub fn unmount_order(mounts: &[MountInfo]) -> Vec<MountInfo> {
    mounts
        .iter()
        .rev()
        .filter(|m| m.target != Path::new("/"))
        .cloned()
        .collect()
}

/// What happened to one mount at shutdown.
#[derive(Debug, PartialEq, Eq)]
pub enum Teardown {
    Unmounted,
    /// Still in use (init's own console, a process that survived SIGKILL):
    /// made read-only so nothing more is written to it.
    RemountedReadOnly(Errno),
    Failed {
        umount: Errno,
        remount: Errno,
    },
}

/// Unmounts everything in `order`; what cannot be unmounted is remounted
/// read-only.
pub fn unmount_all(sys: &dyn Syscalls, order: &[MountInfo]) -> Vec<(MountInfo, Teardown)> {
    order
        .iter()
        .map(|m| {
            let result = match sys.umount(&m.target) {
                Ok(()) => Teardown::Unmounted,
                Err(umount) => match sys.remount_readonly(&m.target) {
                    Ok(()) => Teardown::RemountedReadOnly(umount),
                    Err(remount) => Teardown::Failed { umount, remount },
                },
            };
            (m.clone(), result)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;

    /// Records every call; fails the ones it is told to.
    #[derive(Default)]
    struct Fake {
        calls: RefCell<Vec<String>>,
        mounted: HashSet<&'static str>,
        fail_mount: HashSet<&'static str>,
        busy: HashSet<&'static str>,
    }

    impl Syscalls for Fake {
        fn mkdir_all(&self, path: &Path, _mode: u32) -> io::Result<()> {
            self.calls
                .borrow_mut()
                .push(format!("mkdir {}", path.display()));
            Ok(())
        }
        fn is_mountpoint(&self, path: &Path) -> io::Result<bool> {
            Ok(self.mounted.iter().any(|m| Path::new(m) == path))
        }
        fn mount(&self, m: &Mount) -> Result<(), Errno> {
            self.calls.borrow_mut().push(format!(
                "mount {} {} {}",
                m.fstype,
                m.target,
                m.data.unwrap_or("")
            ));
            if self.fail_mount.contains(m.target) {
                return Err(Errno::ENODEV);
            }
            Ok(())
        }
        fn umount(&self, target: &Path) -> Result<(), Errno> {
            self.calls
                .borrow_mut()
                .push(format!("umount {}", target.display()));
            if self.busy.iter().any(|b| Path::new(b) == target) {
                return Err(Errno::EBUSY);
            }
            Ok(())
        }
        fn remount_readonly(&self, target: &Path) -> Result<(), Errno> {
            self.calls
                .borrow_mut()
                .push(format!("remount-ro {}", target.display()));
            if target == Path::new("/broken") {
                return Err(Errno::EINVAL);
            }
            Ok(())
        }
        fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
            self.calls.borrow_mut().push(format!(
                "symlink {} {}",
                link.display(),
                target.display()
            ));
            Ok(())
        }
    }

    #[test]
    fn table_has_every_api_filesystem_and_parents_come_first() {
        let targets: Vec<_> = BOOT_MOUNTS.iter().map(|m| m.target).collect();
        for t in [
            "/proc",
            "/sys",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/run",
            "/tmp",
            "/sys/fs/cgroup",
            "/mnt",
            "/media",
        ] {
            assert!(targets.contains(&t), "{t} missing");
        }
        // The console's mounts there must reach the user engine.
        for m in BOOT_MOUNTS
            .iter()
            .filter(|m| ["/mnt", "/media"].contains(&m.target))
        {
            assert!(m.flags.contains(MsFlags::MS_SHARED), "{}", m.target);
        }
        for (i, m) in BOOT_MOUNTS.iter().enumerate() {
            for parent in &BOOT_MOUNTS[i + 1..] {
                assert!(
                    !Path::new(m.target).starts_with(parent.target),
                    "{} is mounted before its parent {}",
                    m.target,
                    parent.target
                );
            }
        }
        let cgroup = BOOT_MOUNTS
            .iter()
            .find(|m| m.target == "/sys/fs/cgroup")
            .unwrap();
        assert_eq!(cgroup.fstype, "cgroup2");
        // Nothing writable by users allows setuid binaries or device nodes.
        for m in BOOT_MOUNTS {
            assert!(
                m.flags.contains(MsFlags::MS_NOSUID),
                "{} lacks nosuid",
                m.target
            );
        }
    }

    #[test]
    fn mounts_in_order_and_skips_what_is_mounted() {
        let fake = Fake {
            mounted: ["/dev"].into(),
            ..Fake::default()
        };
        let report = mount_all(&fake, BOOT_MOUNTS);
        assert_eq!(report.already, ["/dev"]);
        assert!(report.failed.is_empty());
        let calls = fake.calls.borrow();
        let mounts: Vec<_> = calls.iter().filter(|c| c.starts_with("mount ")).collect();
        assert_eq!(
            mounts,
            [
                "mount proc /proc ",
                "mount sysfs /sys ",
                "mount devpts /dev/pts gid=5,mode=0620,ptmxmode=0666",
                "mount tmpfs /dev/shm mode=1777",
                "mount tmpfs /run mode=0755",
                "mount tmpfs /tmp mode=1777",
                "mount tmpfs /mnt mode=0755",
                "mount tmpfs /media mode=0755",
                "mount cgroup2 /sys/fs/cgroup nsdelegate",
            ]
        );
        // Every mount point is created before it is mounted.
        let mkdir = calls.iter().position(|c| c == "mkdir /proc").unwrap();
        let mount = calls
            .iter()
            .position(|c| c.starts_with("mount proc"))
            .unwrap();
        assert!(mkdir < mount);
    }

    #[test]
    fn a_failed_mount_does_not_stop_the_rest() {
        let fake = Fake {
            fail_mount: ["/dev/shm"].into(),
            ..Fake::default()
        };
        let report = mount_all(&fake, BOOT_MOUNTS);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(
            report.failed[0].to_string(),
            "/dev/shm: mount failed: ENODEV: No such device"
        );
        assert_eq!(report.mounted.len(), BOOT_MOUNTS.len() - 1);
    }

    #[test]
    fn dev_symlinks_point_into_proc() {
        let fake = Fake::default();
        create_dev_symlinks(&fake);
        assert!(fake
            .calls
            .borrow()
            .contains(&"symlink /dev/fd /proc/self/fd".to_owned()));
    }

    #[test]
    fn enables_each_available_controller() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        // A regular file accepts every write; the last one is what remains.
        std::fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
        let (enabled, failed) = enable_cgroup_controllers(dir.path()).unwrap();
        assert_eq!(enabled, ["cpuset", "cpu", "io", "memory", "pids"]);
        assert!(failed.is_empty());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("cgroup.subtree_control")).unwrap(),
            "+pids"
        );
    }

    #[test]
    fn controller_failures_are_reported_per_controller() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        // No subtree_control file: every write fails.
        let (enabled, failed) = enable_cgroup_controllers(dir.path()).unwrap();
        assert!(enabled.is_empty());
        assert_eq!(failed.len(), 2);
        assert!(failed[0].starts_with("memory: "), "{failed:?}");
        assert!(enable_cgroup_controllers(&dir.path().join("absent")).is_err());
    }

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw - rootfs rootfs rw
23 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw
24 22 0:23 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
25 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,size=1024k,mode=755
26 25 0:24 / /dev/pts rw,nosuid,noexec - devpts devpts rw,gid=5,mode=620
27 24 0:25 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate
28 22 254:0 / /var/lib/corral rw,relatime shared:5 master:1 - ext4 /dev/vda rw
29 22 0:26 / /mnt/with\\040space rw - tmpfs tmpfs rw
garbage
";

    #[test]
    fn parses_mountinfo_with_optional_fields_and_escapes() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 8);
        assert_eq!(m[1].target, Path::new("/proc"));
        assert_eq!(m[1].fstype, "proc");
        assert_eq!(m[6].source, "/dev/vda");
        assert_eq!(m[6].fstype, "ext4");
        assert!(m[6].has_device());
        assert!(!m[1].has_device());
        assert_eq!(m[7].target, Path::new("/mnt/with space"));
    }

    #[test]
    fn unmounts_children_first_and_never_root() {
        let order = unmount_order(&parse_mountinfo(MOUNTINFO));
        let targets: Vec<_> = order.iter().map(|m| m.target.to_str().unwrap()).collect();
        assert_eq!(
            targets,
            [
                "/mnt/with space",
                "/var/lib/corral",
                "/sys/fs/cgroup",
                "/dev/pts",
                "/dev",
                "/sys",
                "/proc"
            ]
        );
    }

    #[test]
    fn busy_mounts_are_made_read_only() {
        let fake = Fake {
            busy: ["/dev", "/broken"].into(),
            ..Fake::default()
        };
        let mounts = [
            MountInfo {
                target: "/broken".into(),
                fstype: "ext4".into(),
                source: "/dev/vdb".into(),
            },
            MountInfo {
                target: "/dev".into(),
                fstype: "devtmpfs".into(),
                source: "devtmpfs".into(),
            },
            MountInfo {
                target: "/proc".into(),
                fstype: "proc".into(),
                source: "proc".into(),
            },
        ];
        let results: Vec<_> = unmount_all(&fake, &mounts)
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(
            results,
            [
                Teardown::Failed {
                    umount: Errno::EBUSY,
                    remount: Errno::EINVAL
                },
                Teardown::RemountedReadOnly(Errno::EBUSY),
                Teardown::Unmounted,
            ]
        );
    }
}
