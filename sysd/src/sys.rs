//! The engine's `unsafe` calls: registering a file descriptor with
//! tokio's reactor, ignoring a signal, and a terminal's window size
//! (set and read).

use std::fs::File;
use std::io;

use tokio::io::unix::AsyncFd;

/// Watches an owned file (a FIFO, a pidfd) for readiness.
pub fn async_file(file: File) -> io::Result<AsyncFd<File>> {
    // SAFETY: `register` requires the descriptor to stay open and refer to
    // the same file for as long as the AsyncFd lives. The File is moved into
    // the AsyncFd, which owns it and closes it only when dropped (after
    // deregistering), so nothing else can close or reuse the descriptor.
    unsafe { AsyncFd::register(file) }.map_err(io::Error::from)
}

/// Ignores `signal` in this process (the monitor: only SIGKILL ends it).
pub fn ignore_signal(signal: nix::sys::signal::Signal) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN installs no handler, so no code can run in signal
    // context; the previous action is not needed.
    let _ = unsafe { sigaction(signal, &ignore) };
}

nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

/// Sets the window size of the terminal whose master (or slave) is `fd`;
/// the kernel sends SIGWINCH to its foreground process group.
pub fn set_window_size(fd: std::os::fd::BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which is
    // valid for the call; the descriptor is borrowed, so open.
    unsafe { tiocswinsz(fd.as_raw_fd(), &size) }
        .map(drop)
        .map_err(io::Error::from)
}

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);

/// The window size (rows, columns) of the terminal `fd` is, if it is one.
pub fn window_size(fd: std::os::fd::BorrowedFd<'_>) -> Option<(u16, u16)> {
    use std::os::fd::AsRawFd;
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which is
    // valid and writable for the call; the descriptor is borrowed, so open.
    unsafe { tiocgwinsz(fd.as_raw_fd(), &mut size) }.ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}
