//! The raw system calls the runtime needs that `nix` does not wrap, or
//! wraps in a way that is wrong after a bare `clone3` (glibc's
//! `setresuid` and `setgroups` try to signal every thread the parent had).
//! This is the only module with `unsafe`.

use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use libc::{c_char, c_int, c_long};
use nix::errno::Errno;
use nix::unistd::Pid;

/// `struct clone_args` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// From linux/sched.h (libc's constant is deprecated: it overflows i32).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

pub(crate) enum Forked {
    Parent { pid: Pid, pidfd: OwnedFd },
    Child,
}

/// `clone3` like `fork` (own stack copy, SIGCHLD at exit), with a pidfd,
/// straight into the cgroup `cgroup_fd` and into new namespaces
/// (`ns_flags`, CLONE_NEW*).
///
/// In the child only async-signal-safe work may follow: the parent may
/// have other threads, whose locks (malloc's among them) are copied in
/// whatever state they were.
pub(crate) fn clone3(ns_flags: u64, cgroup_fd: RawFd) -> Result<Forked, Errno> {
    let mut pidfd: c_int = -1;
    let mut args = CloneArgs {
        flags: ns_flags | libc::CLONE_PIDFD as u64 | CLONE_INTO_CGROUP,
        pidfd: &mut pidfd as *mut c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_fd as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed; without a
    // stack the child continues on a copy of ours, as after fork.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match r {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: Pid::from_raw(pid as i32),
            // SAFETY: CLONE_PIDFD stored a new descriptor we now own.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
        }),
    }
}

pub(crate) fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

pub(crate) fn pidfd_send_signal(pidfd: RawFd, signal: c_int) -> Result<(), Errno> {
    // SAFETY: plain syscall; a null siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

fn check(r: c_long) -> Result<(), Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

pub(crate) fn setresgid(gid: u32) -> Result<(), Errno> {
    // SAFETY: raw syscall (this thread only), integer arguments.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })
}

pub(crate) fn setresuid(uid: u32) -> Result<(), Errno> {
    // SAFETY: raw syscall (this thread only), integer arguments.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
}

pub(crate) fn setgroups(groups: &[libc::gid_t]) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe a live slice.
    check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) })
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Sets this thread's capability sets (64-bit masks).
pub(crate) fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = CapHeader {
        version: VERSION_3,
        pid: 0,
    };
    let lo = |m: u64| m as u32;
    let hi = |m: u64| (m >> 32) as u32;
    let data = [
        CapData {
            effective: lo(effective),
            permitted: lo(permitted),
            inheritable: lo(inheritable),
        },
        CapData {
            effective: hi(effective),
            permitted: hi(permitted),
            inheritable: hi(inheritable),
        },
    ];
    // SAFETY: header and the two-element data array are what capset(2)
    // reads for version 3.
    check(unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    })
}

pub(crate) fn prctl(option: c_int, arg2: u64, arg3: u64) -> Result<(), Errno> {
    // SAFETY: the options used here take integer arguments only.
    let r = unsafe { libc::prctl(option, arg2, arg3, 0u64, 0u64) };
    Errno::result(r).map(drop)
}

/// Sets the current network namespace's `lo` up with SIOCSIFFLAGS (no
/// allocation, unlike netlink), as runtimes do for a new namespace.
pub(crate) fn loopback_up() -> Result<(), Errno> {
    // SAFETY: socket(2) with constant arguments; the fd is closed below.
    let fd = Errno::result(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name[0] = b'l' as c_char;
    req.ifr_name[1] = b'o' as c_char;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq the
    // pointer refers to, which lives across both calls; the flags member
    // of the union is the one these requests use.
    let r = unsafe {
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req as *mut libc::ifreq);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req as *const libc::ifreq);
        }
        r
    };
    let result = Errno::result(r).map(drop);
    // SAFETY: fd is ours and not used after this.
    unsafe { libc::close(fd) };
    result
}

/// Installs a seccomp BPF program on this thread.
pub(crate) fn seccomp(program: &[libc::sock_filter]) -> Result<(), Errno> {
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the kernel copies the program; `prog` points at a live slice.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    })
}

/// Marks every descriptor from `first` up close-on-exec.
pub(crate) fn cloexec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    check(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    })
}

pub(crate) fn dup2(from: RawFd, to: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 on descriptors; `to` is replaced atomically.
    Errno::result(unsafe { libc::dup2(from, to) }).map(drop)
}

/// Every catchable signal back to its default disposition (a
/// disposition of "ignore", like Rust's for SIGPIPE, survives exec).
pub(crate) fn reset_signals() {
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}

/// `execve` with null-terminated pointer arrays built beforehand, so the
/// child allocates nothing. Returns only on failure.
pub(crate) fn execve(path: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: both arrays are null-terminated and point at CStrings that
    // outlive the call.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

/// Writes the whole buffer (small, below PIPE_BUF, so atomic) to `fd`.
pub(crate) fn write_raw(fd: RawFd, buf: &[u8]) {
    // SAFETY: the pointer and length describe a live slice.
    let _ = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
}

/// Leaves the child without running atexit handlers or flushing the
/// parent's copied stdio buffers.
pub(crate) fn exit_child(code: c_int) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Borrows a descriptor the caller keeps open for as long as it is used.
pub(crate) fn borrow_fd(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: callers pass descriptors that stay open until the child
    // exec's or exits (the parent holds them across the clone).
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

pub(crate) fn setrlimit(resource: c_int, limit: &libc::rlimit64) -> Result<(), Errno> {
    // SAFETY: `limit` is a valid rlimit64 for the call's duration.
    Errno::result(unsafe { libc::setrlimit64(resource as _, limit) }).map(drop)
}

/// A new pseudo-terminal from the multiplexer at `ptmx` (the
/// container's own `/dev/ptmx`): (master, slave), both close-on-exec, the
/// slave opened through the master (TIOCGPTPEER) so that no path under
/// `/dev/pts` has to be looked up. As runc does, the pair is made inside
/// the container, so that the terminal's name there is its own.
pub(crate) fn open_pty(ptmx: &CStr) -> Result<(RawFd, RawFd), Errno> {
    // SAFETY: open with a valid C string.
    let master = unsafe {
        libc::open(
            ptmx.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if master < 0 {
        return Err(Errno::last());
    }
    let unlock: c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int.
    let r = unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock as *const c_int) };
    if r < 0 {
        let e = Errno::last();
        // SAFETY: our own descriptor.
        unsafe { libc::close(master) };
        return Err(e);
    }
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd.
    let slave = unsafe {
        libc::ioctl(
            master,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        let e = Errno::last();
        // SAFETY: our own descriptor.
        unsafe { libc::close(master) };
        return Err(e);
    }
    Ok((master, slave))
}

/// Makes the terminal on `fd` the session's controlling terminal.
pub(crate) fn set_controlling_tty(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an int argument by value.
    Errno::result(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) }).map(drop)
}

pub(crate) fn fchown(fd: RawFd, uid: u32) -> Result<(), Errno> {
    // SAFETY: plain syscall; gid -1 leaves the group alone.
    Errno::result(unsafe { libc::fchown(fd, uid, u32::MAX) }).map(drop)
}

pub(crate) fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and does not use it again.
    unsafe { libc::close(fd) };
}

/// Sends one descriptor over a Unix socket (SCM_RIGHTS) without
/// allocating: the control buffer is on the stack.
pub(crate) fn send_fd(sock: RawFd, fd: RawFd) -> Result<(), Errno> {
    #[repr(C)]
    union Control {
        buf: [u8; 64],
        _align: libc::cmsghdr,
    }
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = Control { buf: [0; 64] };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) } as usize;
    // SAFETY: a zeroed msghdr is valid; the pointers set below point at
    // locals that outlive the sendmsg call, and `space` fits the buffer.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<c_int>(), fd);
        Errno::result(libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL)).map(drop)
    }
}

/// Joins the namespace behind `fd` for the calling thread only (a pid
/// namespace applies to the thread's future children).
pub(crate) fn setns_thread(fd: RawFd, nstype: c_int) -> Result<(), Errno> {
    // SAFETY: plain syscall on a descriptor the caller holds.
    Errno::result(unsafe { libc::setns(fd, nstype) }).map(drop)
}

/// Receives the descriptor a child sent with [`send_fd`]; Ok(None) when
/// the socket closed without one (the child failed before).
pub(crate) fn recv_fd(sock: RawFd) -> Result<Option<OwnedFd>, Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = loop {
        match recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(Errno::EINTR) => continue,
            other => break other?,
        }
    };
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: SCM_RIGHTS installed a new descriptor we now own.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
    }
    Ok(None)
}

/// `union bpf_attr` as `BPF_PROG_LOAD` reads it (the fields up to
/// `expected_attach_type`), padded with zeros as the kernel requires.
#[repr(C)]
struct BpfProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _rest: [u8; 64],
}

/// `union bpf_attr` as `BPF_PROG_ATTACH` reads it.
#[repr(C)]
struct BpfProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _rest: [u8; 108],
}

const BPF_PROG_LOAD: c_int = 5;
const BPF_PROG_ATTACH: c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// No flag: one program per cgroup, which a later attach replaces (a
/// restarted container reuses its cgroup; its programs must not pile up).
const BPF_F_ALLOW_NONE: u32 = 0;

/// Loads a device-cgroup program; the descriptor holds it.
pub(crate) fn bpf_load_cgroup_device(insns: &[crate::devices::Insn]) -> Result<OwnedFd, Errno> {
    let license = b"Apache-2.0\0";
    let mut name = [0u8; 16];
    name[..14].copy_from_slice(b"corral_devices");
    let attr = BpfProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| Errno::E2BIG)?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
        _rest: [0; 64],
    };
    // SAFETY: the attribute is a properly laid out, fully initialised
    // bpf_attr of the size passed; the instruction and license pointers
    // are valid (and the instructions laid out as struct bpf_insn) for the
    // duration of the call, which copies them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const BpfProgLoad,
            std::mem::size_of::<BpfProgLoad>(),
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Attaches a loaded device program to the cgroup directory `cgroup`.
pub(crate) fn bpf_attach_cgroup_device(cgroup: RawFd, prog: RawFd) -> Result<(), Errno> {
    let attr = BpfProgAttach {
        target_fd: cgroup as u32,
        attach_bpf_fd: prog as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_NONE,
        replace_bpf_fd: 0,
        _rest: [0; 108],
    };
    // SAFETY: the attribute is a fully initialised bpf_attr of the size
    // passed; the descriptors are the caller's, open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const BpfProgAttach,
            std::mem::size_of::<BpfProgAttach>(),
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(())
}
