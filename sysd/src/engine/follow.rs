//! Following a running container: its output from the FIFOs into the log
//! (and to followers), and its end, which its monitor records.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use log::{error, warn};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use tokio::sync::{broadcast, watch};

use super::{Engine, Running};
use crate::logs::{Entry, LogWriter, Stream};
use crate::restart::Exit;
use corral_runtime::Process;

impl Engine {
    /// Follows a running process: its output into the log, its exit into
    /// the record and the restart policy.
    pub(super) fn watch(
        self: &Arc<Self>,
        id: String,
        generation: u64,
        running: Arc<Running>,
        child: bool,
        readers: Option<(std::fs::File, std::fs::File)>,
    ) {
        let engine = self.clone();
        let (tx_done, rx_done) = watch::channel(false);
        let pump_engine = self.clone();
        let pump_id = id.clone();
        let pump =
            tokio::spawn(async move { pump_engine.pump_logs(pump_id, readers, rx_done).await });
        tokio::spawn(async move {
            let _ = wait_exit(&running.monitor, child).await;
            // The monitor wrote how the container ended before it exited.
            let exit = crate::monitor::read_exit(&engine.run_dir(&id))
                .map_or(Exit::Unknown, |e| Exit::Code(e.code));
            let _ = tx_done.send(true);
            // The log is complete before anyone waiting hears of the exit.
            let _ = pump.await;
            engine.on_exit(&id, generation, exit).await;
        });
    }

    /// The engine's (reading) ends of the container's output FIFOs.
    pub(super) fn open_readers(&self, id: &str) -> std::io::Result<(std::fs::File, std::fs::File)> {
        use std::os::unix::fs::OpenOptionsExt;
        let run_dir = self.run_dir(id);
        let open = |stream: &str| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(run_dir.join(stream))
        };
        Ok((open("stdout")?, open("stderr")?))
    }

    async fn pump_logs(
        self: Arc<Self>,
        id: String,
        readers: Option<(std::fs::File, std::fs::File)>,
        mut done: watch::Receiver<bool>,
    ) {
        let files = match readers {
            Some(r) => Ok(r),
            None => self.open_readers(&id),
        };
        let pair =
            files.and_then(|(o, e)| Ok((crate::sys::async_file(o)?, crate::sys::async_file(e)?)));
        let (out, err) = match pair {
            Ok(p) => p,
            Err(e) => {
                warn!("{id}: cannot read its output: {e}");
                return;
            }
        };
        let mut writer =
            LogWriter::new(self.log_path(&id), self.cfg.log_max_size, self.cfg.log_keep);
        let sender = match self.lock().containers.get(&id) {
            Some(c) => Senders {
                logs: c.logs.clone(),
                output: c.output.clone(),
            },
            None => return,
        };
        let mut buf = vec![0u8; 16 << 10];
        // A FIFO whose writers have all closed stays readable (EOF) for
        // good: stop polling it, or the task would spin.
        let (mut out_eof, mut err_eof) = (false, false);
        loop {
            let mut finished = false;
            tokio::select! {
                r = out.readable(), if !out_eof => if let Ok(mut g) = r {
                    out_eof = drain(&mut g, &mut buf, Stream::Stdout, &mut writer, &sender);
                },
                r = err.readable(), if !err_eof => if let Ok(mut g) = r {
                    err_eof = drain(&mut g, &mut buf, Stream::Stderr, &mut writer, &sender);
                },
                _ = done.changed() => finished = true,
            }
            if finished {
                // Whatever the process wrote before it ended.
                for (fd, stream) in [(&out, Stream::Stdout), (&err, Stream::Stderr)] {
                    read_all(fd.get_ref(), &mut buf, stream, &mut writer, &sender);
                }
                if let Ok(entries) = writer.flush_partial() {
                    for e in entries {
                        let _ = sender.logs.send(e);
                    }
                }
                return;
            }
        }
    }
}

/// Where what is read goes: lines to the log's followers, chunks to
/// attached clients.
struct Senders {
    logs: broadcast::Sender<Entry>,
    output: broadcast::Sender<super::Chunk>,
}

/// Reads what is there; true at end of file (no writer left).
fn drain(
    guard: &mut tokio::io::unix::AsyncFdReadyGuard<'_, std::fs::File>,
    buf: &mut [u8],
    stream: Stream,
    writer: &mut LogWriter,
    sender: &Senders,
) -> bool {
    let fd = guard.get_inner();
    match read_all(fd, buf, stream, writer, sender) {
        Drained::Empty => {
            guard.clear_ready();
            false
        }
        Drained::Eof => true,
    }
}

enum Drained {
    /// Nothing more for now (EAGAIN).
    Empty,
    /// No writer left.
    Eof,
}

/// Reads until the FIFO is empty or closed.
fn read_all(
    f: &std::fs::File,
    buf: &mut [u8],
    stream: Stream,
    writer: &mut LogWriter,
    sender: &Senders,
) -> Drained {
    use std::io::Read;
    let mut f = f;
    loop {
        match f.read(buf) {
            Ok(0) => return Drained::Eof,
            Ok(n) => match writer.feed(stream, &buf[..n]) {
                Ok(entries) => {
                    let _ = sender
                        .output
                        .send((stream, bytes::Bytes::copy_from_slice(&buf[..n])));
                    for e in entries {
                        let _ = sender.logs.send(e);
                    }
                }
                Err(e) => warn!("writing a container log: {e}"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Drained::Empty,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!("reading container output: {e}");
                return Drained::Eof;
            }
        }
    }
}

/// Waits for the process to end. For our own child the status comes from
/// `waitid` (which also reaps it); for an adopted process only the fact.
async fn wait_exit(process: &Process, child: bool) -> Exit {
    let fd = match process
        .pidfd
        .try_clone()
        .map(std::fs::File::from)
        .and_then(crate::sys::async_file)
    {
        Ok(fd) => fd,
        Err(e) => {
            error!("watching pid {}: {e}", process.pid);
            return Exit::Unknown;
        }
    };
    loop {
        match fd.readable().await {
            Ok(mut g) => {
                g.clear_ready();
                // A pidfd turns readable once, at exit; check to be sure.
                match reap(std::os::fd::AsFd::as_fd(fd.get_ref()), child) {
                    Some(exit) => return exit,
                    None => continue,
                }
            }
            Err(e) => {
                error!("watching pid {}: {e}", process.pid);
                return Exit::Unknown;
            }
        }
    }
}

fn reap(fd: BorrowedFd<'_>, child: bool) -> Option<Exit> {
    use nix::sys::wait::{waitid, Id};
    if !child {
        // Readable means exited; only the parent can learn the status.
        return Some(Exit::Unknown);
    }
    match waitid(Id::PIDFd(fd), WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG) {
        Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(Exit::Code(128 + sig as i32)),
        Ok(WaitStatus::StillAlive) => None,
        Ok(_) => None,
        Err(nix::errno::Errno::EINTR) => None,
        Err(_) => Some(Exit::Unknown),
    }
}
