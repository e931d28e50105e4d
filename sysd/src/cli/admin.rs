//! `corral admin shell`: a root shell in the host's namespaces, opened by
//! the system engine (so only root, e.g. `sudo` in the SSH session, can
//! ask) and announced on the console and in syslog.
//!
//! On a terminal it behaves like `docker exec -it`: the local terminal in
//! raw mode, its size passed on and kept up with (SIGWINCH). Without one
//! (`sudo corral admin shell <<'EOF'`) the shell reads its commands from
//! stdin and its output comes back on stdout and stderr. Either way its
//! exit code is this command's.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{demux, Client};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCmd {
    /// A root shell in the host's namespaces, with every capability (to
    /// load a kernel module, mount a disk, write /proc/sys); announced on
    /// the console and logged with who asked.
    Shell {
        /// A command to run there instead of a login shell (`sudo corral
        /// admin shell mount /dev/vdb /mnt/data`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

pub async fn admin_command(client: &Client, command: AdminCmd) -> Result<i32> {
    match command {
        AdminCmd::Shell { command } => shell(client, command).await,
    }
}

/// The terminal's settings, put back however the shell ends.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Result<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).context("reading the terminal's settings")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).context("setting the terminal raw")?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// What the client says of itself: the user behind sudo and the SSH
/// client's address and port (for the log only; the engine decides on
/// the socket's credentials).
fn requester() -> (Option<String>, Option<String>) {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .ok();
    let ssh = std::env::var("SSH_CONNECTION").ok().and_then(|c| {
        let mut f = c.split_whitespace();
        Some(format!("{} port {}", f.next()?, f.next()?))
    });
    (user, ssh)
}

async fn shell(client: &Client, command: Vec<String>) -> Result<i32> {
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let size = crate::sys::window_size(std::io::stdout().as_fd());
    let (user, ssh) = requester();
    let (_, bytes) = client
        .call(
            Method::POST,
            "/corral/admin/shell",
            Some(&json!({
                "Tty": tty,
                "ConsoleSize": size.map(|(r, c)| [r, c]),
                "User": user,
                "SshClient": ssh,
                "Cmd": command,
            })),
        )
        .await?;
    let created: Value = serde_json::from_slice(&bytes)?;
    let id = created["Id"]
        .as_str()
        .context("the engine's admin shell answer has no Id")?
        .to_owned();
    let stream = client
        .hijack(
            &format!("/exec/{id}/start"),
            Some(&json!({ "Detach": false, "Tty": tty })),
        )
        .await?;
    let raw = if tty { Some(RawMode::enter()?) } else { None };
    let (mut rd, mut wr) = tokio::io::split(stream);

    // stdin on a thread of its own: a blocking read that never returns
    // (the shell exited, the user typed nothing) must not hold the exit.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let input = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // End of input: the shell sees end of file.
        let _ = wr.shutdown().await;
    });
    let resizer = tty.then(|| {
        let client = Client::new(client.socket());
        let id = id.clone();
        tokio::spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some((rows, cols)) = crate::sys::window_size(std::io::stdout().as_fd()) {
                    let _ = client
                        .call(
                            Method::POST,
                            &format!("/exec/{id}/resize?h={rows}&w={cols}"),
                            None,
                        )
                        .await;
                }
            }
        })
    });

    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        if tty {
            out.write_all(&chunk[..n])?;
            out.flush()?;
            continue;
        }
        buf.extend_from_slice(&chunk[..n]);
        for (which, payload) in demux(&mut buf) {
            match which {
                2 => err.write_all(&payload)?,
                3 => eprintln!("corral: {}", String::from_utf8_lossy(&payload).trim_end()),
                _ => {
                    out.write_all(&payload)?;
                    out.flush()?;
                }
            }
        }
    }
    input.abort();
    if let Some(r) = resizer {
        r.abort();
    }
    drop(raw);
    let state = client.get_json(&format!("/exec/{id}/json")).await?;
    Ok(state["ExitCode"].as_i64().unwrap_or(126) as i32)
}
