//! The privileged operations init performs, in one place.
//!
//! Mount handling goes through the [`Syscalls`] trait so the code that
//! decides what to mount and unmount is unit tested with a recording fake
//! instead of root. The few operations that need `unsafe` (the code that
//! runs between `fork` and `exec`, raw ioctls) live here and nowhere else.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::unistd::Pid;

use crate::mounts::Mount;

/// What init needs from the kernel to set up and tear down mounts.
pub trait Syscalls {
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Whether something is mounted on `path` (its device differs from its
    /// parent's).
    fn is_mountpoint(&self, path: &Path) -> io::Result<bool>;
    fn mount(&self, m: &Mount) -> Result<(), Errno>;
    fn umount(&self, target: &Path) -> Result<(), Errno>;
    fn remount_readonly(&self, target: &Path) -> Result<(), Errno>;
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
}

/// The real kernel.
pub struct Linux;

impl Syscalls for Linux {
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }

    fn is_mountpoint(&self, path: &Path) -> io::Result<bool> {
        let here = std::fs::symlink_metadata(path)?;
        let parent = std::fs::symlink_metadata(path.join(".."))?;
        // Same device and inode: `path` is `/`, which is always mounted.
        Ok(here.dev() != parent.dev() || here.ino() == parent.ino())
    }

    fn mount(&self, m: &Mount) -> Result<(), Errno> {
        // mount(2) takes a propagation type only on its own, for a mount
        // that exists: a second call.
        let propagation = MsFlags::MS_SHARED | MsFlags::MS_SLAVE | MsFlags::MS_PRIVATE;
        let flags = m.flags.difference(propagation);
        nix::mount::mount(Some(m.source), m.target, Some(m.fstype), flags, m.data)?;
        if m.flags.intersects(propagation) {
            nix::mount::mount(
                None::<&str>,
                m.target,
                None::<&str>,
                m.flags.intersection(propagation),
                None::<&str>,
            )?;
        }
        Ok(())
    }

    fn umount(&self, target: &Path) -> Result<(), Errno> {
        nix::mount::umount2(target, MntFlags::empty())
    }

    fn remount_readonly(&self, target: &Path) -> Result<(), Errno> {
        nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }
}

/// Makes sure file descriptors 0, 1 and 2 are open. The kernel starts init
/// with them on `/dev/console` only if that node exists; if they were
/// closed, the first files init opens would land on 0–2 and its log lines
/// would be written into them.
pub fn ensure_stdio() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only reads the descriptor's flags; any integer is
        // a valid argument and an unused one fails with EBADF.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 && Errno::last() == Errno::EBADF;
        if closed {
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open("/dev/console")
                .or_else(|_| OpenOptions::new().read(true).write(true).open("/dev/null"));
            if let Ok(file) = opened {
                let raw = file.as_raw_fd();
                if raw == fd {
                    // Landed on the free slot: keep it open there.
                    std::mem::forget(file);
                } else {
                    // SAFETY: `fd` is closed (EBADF above), so dup2 onto it
                    // cannot clobber a descriptor anything else owns; `raw`
                    // stays owned by `file` and is closed when it drops.
                    unsafe { libc::dup2(raw, fd) };
                }
            }
        }
    }
}

/// How the supervised program's standard streams are connected.
pub enum Stdio3 {
    /// The console as stdin/stdout/stderr and as controlling terminal of a
    /// new session: what a shell needs for job control and ^C.
    Terminal(File),
    /// stdin from /dev/null, output to init's own stdout/stderr (the
    /// console), in a new session without a controlling terminal.
    Daemon,
}

/// Opens a terminal device for a child without making it init's own
/// controlling terminal.
pub fn open_terminal(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
}

/// Starts `program` with `args` and a clean environment, in a session of its
/// own. Returns its pid; init reaps it itself, never through `Child::wait`.
pub fn spawn<I, K, V>(program: &str, args: &[String], env: I, stdio: Stdio3) -> io::Result<Pid>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).env_clear().envs(env).current_dir("/");
    let terminal = match stdio {
        Stdio3::Terminal(tty) => {
            cmd.stdin(tty.try_clone()?)
                .stdout(tty.try_clone()?)
                .stderr(tty);
            true
        }
        Stdio3::Daemon => {
            cmd.stdin(Stdio::null());
            false
        }
    };
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called. It calls sigemptyset(3),
    // sigprocmask(2), setsid(2) and ioctl(2) through libc on a stack
    // sigset, allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            // init keeps its signals blocked for sigtimedwait, and a blocked
            // mask survives fork and exec: without this the shell would
            // never see SIGHUP or SIGINT.
            let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            if libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut()) < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // Take the terminal on stdin as controlling terminal, stealing
            // it from a previous session if one still holds it (arg 1;
            // allowed because init's children run as root).
            if terminal && libc::ioctl(0, libc::TIOCSCTTY, 1) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Dropping `Child` neither waits nor kills: the reaper owns the pid.
    Ok(Pid::from_raw(child.id() as i32))
}

/// Whether the calling process runs as root; only root may ask init to shut
/// down or call reboot(2).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Writes `data` to a file that already exists (a /proc or /sys knob).
pub fn write_knob(path: &Path, data: &str) -> io::Result<()> {
    use std::io::Write;
    // O_TRUNC like a shell redirection; knobs ignore it, plain files need it.
    let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(data.as_bytes())
}

/// Waits up to `timeout` (forever with `None`) for one of the signals in
/// `mask`, which must be blocked. Returns the signal taken, or `None` on
/// timeout or interruption.
///
/// init uses sigtimedwait(2), as tini does, rather than a signalfd: it
/// needs no file descriptor, so there is no set-up step that could fail and
/// leave PID 1 deaf to SIGCHLD, and the timeout drives the restart backoff.
pub fn wait_signal(
    mask: &nix::sys::signal::SigSet,
    timeout: Option<std::time::Duration>,
) -> Result<Option<i32>, Errno> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos()),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `mask` is a valid, initialised sigset_t borrowed for the call;
    // the siginfo pointer may be null (the caller only needs the number);
    // `ts_ptr` is null or points at `ts`, which outlives the call.
    let r = unsafe { libc::sigtimedwait(mask.as_ref(), std::ptr::null_mut(), ts_ptr) };
    if r >= 0 {
        return Ok(Some(r));
    }
    match Errno::last() {
        Errno::EAGAIN | Errno::EINTR => Ok(None),
        e => Err(e),
    }
}

// WDIOC_SETTIMEOUT in linux/watchdog.h: _IOWR('W', 6, int).
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);

/// Sets a watchdog device's timeout; returns the timeout the driver chose
/// (it may round).
pub fn set_watchdog_timeout(dev: &std::fs::File, secs: i32) -> nix::Result<i32> {
    use std::os::fd::AsRawFd;
    let mut t: libc::c_int = secs;
    // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through the
    // pointer, which points at a live local for the whole call; the fd is
    // borrowed from an open File.
    unsafe { wdioc_settimeout(dev.as_raw_fd(), &mut t) }?;
    Ok(t)
}
