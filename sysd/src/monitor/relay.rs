//! The monitor's loop while its container runs: the container's terminal
//! (its master end) copied to the output FIFO and input from the stdin
//! FIFO copied to it, and the control FIFO's requests (a window size, the
//! end of input) carried out, until the container ends.
//!
//! The monitor, not the engine, holds the terminal and the input, so that
//! an engine restart loses neither: a new engine opens the same FIFOs.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// A request on the control FIFO, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `resize ROWS COLS`: the client's window changed.
    Resize { rows: u16, cols: u16 },
    /// `close-stdin`: the attached client's input ended (`StdinOnce`).
    CloseStdin,
}

impl Control {
    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        match (words.next()?, words.next(), words.next(), words.next()) {
            ("resize", Some(r), Some(c), None) => Some(Control::Resize {
                rows: r.parse().ok()?,
                cols: c.parse().ok()?,
            }),
            ("close-stdin", None, None, None) => Some(Control::CloseStdin),
            _ => None,
        }
    }

    pub fn line(&self) -> String {
        match self {
            Control::Resize { rows, cols } => format!("resize {rows} {cols}\n"),
            Control::CloseStdin => "close-stdin\n".into(),
        }
    }
}

pub struct Relay {
    /// The terminal's master end (non-blocking), when the container has one.
    pub master: Option<File>,
    /// The output FIFO the engine reads (blocking: a full FIFO while no
    /// engine reads holds the container back instead of losing output).
    pub out: File,
    /// The stdin FIFO, opened read-write by the monitor (non-blocking):
    /// while it is held the container's input does not end; with a
    /// terminal the monitor also reads it into the master.
    pub stdin: Option<File>,
    /// The control FIFO, read-write so it never reads as ended.
    pub ctl: File,
}

impl Relay {
    /// Runs until `pidfd` reports the container's end; whatever the
    /// terminal still holds is copied out before returning.
    pub fn run(mut self, pidfd: BorrowedFd<'_>) {
        let mut ctl_buf = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut master_open = self.master.is_some();
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let (exited, ctl_ready, master_in, master_out, stdin_ready) = {
                let mut fds = vec![
                    PollFd::new(pidfd, PollFlags::POLLIN),
                    PollFd::new(self.ctl.as_fd(), PollFlags::POLLIN),
                ];
                let mut master_at = None;
                let mut stdin_at = None;
                if let (Some(m), true) = (&self.master, master_open) {
                    let mut flags = PollFlags::POLLIN;
                    if !pending.is_empty() {
                        flags |= PollFlags::POLLOUT;
                    }
                    master_at = Some(fds.len());
                    fds.push(PollFd::new(m.as_fd(), flags));
                    if let (Some(s), true) = (&self.stdin, pending.is_empty()) {
                        stdin_at = Some(fds.len());
                        fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
                    }
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(_) => return,
                }
                let has = |i: Option<usize>, f: PollFlags| {
                    i.and_then(|i| fds[i].revents())
                        .is_some_and(|r| r.intersects(f))
                };
                let input = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
                (
                    has(Some(0), input),
                    has(Some(1), input),
                    has(master_at, input),
                    has(master_at, PollFlags::POLLOUT),
                    has(stdin_at, input),
                )
            };
            if ctl_ready {
                self.control(&mut ctl_buf);
            }
            if master_in && !self.copy_out(&mut buf) {
                master_open = false;
            }
            if stdin_ready {
                if let Some(s) = &mut self.stdin {
                    match s.read(&mut buf) {
                        Ok(n) if n > 0 => pending.extend_from_slice(&buf[..n]),
                        _ => {}
                    }
                }
            }
            if (master_out || stdin_ready) && !pending.is_empty() {
                if let Some(m) = &mut self.master {
                    match m.write(&pending) {
                        Ok(n) => {
                            pending.drain(..n);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => pending.clear(),
                    }
                }
            }
            if exited {
                if master_open {
                    self.copy_out(&mut buf);
                }
                return;
            }
        }
    }

    /// Copies what the terminal has to the output; false once it has
    /// ended (no process holds its slave end any more).
    fn copy_out(&mut self, buf: &mut [u8]) -> bool {
        let Some(m) = &mut self.master else {
            return false;
        };
        loop {
            match m.read(buf) {
                Ok(0) => return false,
                Ok(n) => {
                    if self.out.write_all(&buf[..n]).is_err() {
                        return false;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // EIO: the slave side is closed.
                Err(_) => return false,
            }
        }
    }

    fn control(&mut self, acc: &mut Vec<u8>) {
        let mut chunk = [0u8; 512];
        loop {
            match self.ctl.read(&mut chunk) {
                Ok(n) if n > 0 => acc.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        while let Some(end) = acc.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = acc.drain(..=end).collect();
            match Control::parse(&String::from_utf8_lossy(&line)) {
                Some(Control::Resize { rows, cols }) => {
                    if let Some(m) = &self.master {
                        let _ = crate::sys::set_window_size(m.as_fd(), rows, cols);
                    }
                }
                // With a terminal the input stays: an end of input is a
                // ^D the client types, as on any terminal.
                Some(Control::CloseStdin) if self.master.is_none() => self.stdin = None,
                Some(Control::CloseStdin) | None => {}
            }
        }
        // A line this long is no request of ours.
        if acc.len() > 4096 {
            acc.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_round_trip() {
        for c in [Control::Resize { rows: 24, cols: 80 }, Control::CloseStdin] {
            assert_eq!(Control::parse(&c.line()), Some(c));
        }
        assert_eq!(Control::parse("resize 24"), None);
        assert_eq!(Control::parse("resize 24 x"), None);
        assert_eq!(Control::parse("resize 1 2 3"), None);
        assert_eq!(Control::parse("reboot"), None);
    }
}
