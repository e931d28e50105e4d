//! The engine's one `unsafe` call: registering a file descriptor with
//! tokio's reactor.

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
