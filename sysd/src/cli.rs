//! The `corral` command line: `corral system ...` talks to the system
//! engine, `corral ...` to the user engine; both speak the same API.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hyper::Method;
use serde_json::Value;

mod admin;
mod config;
mod os;
mod run;

pub use config::{config_get, ConfigCmd};

use crate::client::{demux, Client, ClientError};

pub const SYSTEM_SOCKET: &str = crate::role::SYSTEM.socket;
pub const USER_SOCKET: &str = crate::role::USER.socket;

#[derive(Debug, Parser)]
#[command(
    name = "corral",
    version,
    about = "Manage Corral's containers and images"
)]
pub struct Cli {
    /// The engine's API socket (default: the user engine's, or the system
    /// engine's for `corral system`).
    #[arg(long, short = 'H', global = true, env = "CORRAL_HOST")]
    pub host: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Top,
}

#[derive(Debug, Subcommand)]
pub enum Top {
    /// The system engine: Corral's own services.
    System {
        #[command(subcommand)]
        command: EngineCmd,
    },
    /// Read and change the system configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Install Corral onto a disk, from the ISO or disk this system
    /// booted from (says what it erases; refuses a disk with data without
    /// --force).
    Install(os::InstallArgs),
    /// The operating system: its version, upgrades and rollback.
    Os {
        #[command(subcommand)]
        command: os::OsCmd,
    },
    /// Administer the host itself (root only: sudo in the SSH session).
    Admin {
        #[command(subcommand)]
        command: admin::AdminCmd,
    },
    #[command(flatten)]
    Engine(EngineCmd),
}

#[derive(Debug, Subcommand)]
pub enum EngineCmd {
    /// Create and start a container; attached, its output is printed and
    /// its exit code is this command's.
    Run(run::RunArgs),
    /// Run a command in a running container; its exit code is this
    /// command's.
    Exec(run::ExecArgs),
    /// List containers.
    Ps {
        /// Only the running ones.
        #[arg(long)]
        running: bool,
    },
    /// Show a container's output.
    Logs {
        /// Keep printing new output until the container stops.
        #[arg(long, short)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, short = 'n')]
        tail: Option<usize>,
        /// Prefix each line with its time.
        #[arg(long, short)]
        timestamps: bool,
        name: String,
    },
    /// Start stopped containers.
    Start {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop running containers (SIGTERM, then SIGKILL after the timeout).
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's own).
        #[arg(long, short = 't')]
        time: Option<u64>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop and start containers again.
    Restart {
        #[arg(long, short = 't')]
        time: Option<u64>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Send a signal to a container's main process.
    Kill {
        #[arg(long, short, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(long, short)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show everything the engine knows about a container, as JSON.
    Inspect { name: String },
    /// List images.
    Images,
    /// Import images from an oci-archive or docker-archive tarball.
    Load {
        /// The archive.
        #[arg(long, short)]
        input: PathBuf,
    },
    /// Remove images (refused while a container uses them).
    Rmi {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Whether an error is stdout's reader having gone away (`corral ps |
/// head`): the end of output, to be left quietly.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause.downcast_ref::<ClientError>().is_some_and(
                |c| matches!(c, ClientError::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe),
            )
    })
}

/// Runs the CLI; returns the exit status.
pub async fn run(cli: Cli) -> Result<i32> {
    let (default, command) = match cli.command {
        Top::System { command } => (SYSTEM_SOCKET, command),
        Top::Engine(command) => (USER_SOCKET, command),
        Top::Config { command } => {
            let client = Client::new(cli.host.unwrap_or_else(|| PathBuf::from(SYSTEM_SOCKET)));
            return config::config_command(&client, command).await;
        }
        Top::Install(args) => {
            let client = Client::new(cli.host.unwrap_or_else(|| PathBuf::from(SYSTEM_SOCKET)));
            return os::install(&client, args, &mut std::io::stdout().lock()).await;
        }
        Top::Os { command } => {
            let client = Client::new(cli.host.unwrap_or_else(|| PathBuf::from(SYSTEM_SOCKET)));
            return os::os_command(&client, command, &mut std::io::stdout().lock()).await;
        }
        Top::Admin { command } => {
            let client = Client::new(cli.host.unwrap_or_else(|| PathBuf::from(SYSTEM_SOCKET)));
            return admin::admin_command(&client, command).await;
        }
    };
    let client = Client::new(cli.host.unwrap_or_else(|| PathBuf::from(default)));
    let mut out = std::io::stdout().lock();
    match command {
        EngineCmd::Run(args) => return run::run(&client, args, &mut out).await,
        EngineCmd::Exec(args) => return run::exec(&client, args, &mut out).await,
        EngineCmd::Ps { running } => {
            let list = client
                .get_json(if running {
                    "/containers/json"
                } else {
                    "/containers/json?all=1"
                })
                .await?;
            let mut rows = vec![vec![
                "NAME".to_owned(),
                "STATUS".to_owned(),
                "PID".to_owned(),
                "RESTARTS".to_owned(),
                "IMAGE".to_owned(),
                "ID".to_owned(),
            ]];
            let mut items: Vec<&Value> = list
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            items.sort_by_key(|c| name_of(c));
            for c in items {
                let id = c["Id"].as_str().unwrap_or_default();
                // PID and restarts are in the full record.
                let detail = client
                    .get_json(&format!("/containers/{id}/json"))
                    .await
                    .ok();
                let pid = detail
                    .as_ref()
                    .and_then(|d| d["State"]["Pid"].as_i64())
                    .filter(|p| *p > 0)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into());
                let restarts = detail
                    .as_ref()
                    .and_then(|d| d["RestartCount"].as_u64())
                    .unwrap_or(0)
                    .to_string();
                rows.push(vec![
                    name_of(c),
                    c["Status"].as_str().unwrap_or_default().to_owned(),
                    pid,
                    restarts,
                    c["Image"].as_str().unwrap_or_default().to_owned(),
                    id.get(..12).unwrap_or(id).to_owned(),
                ]);
            }
            write_table(&mut out, &rows)?;
        }
        EngineCmd::Logs {
            follow,
            tail,
            timestamps,
            name,
        } => {
            let path = format!(
                "/containers/{name}/logs?stdout=1&stderr=1&follow={}&timestamps={}&tail={}",
                follow as u8,
                timestamps as u8,
                tail.map(|t| t.to_string()).unwrap_or_else(|| "all".into())
            );
            let response = client
                .send(
                    Method::GET,
                    &path,
                    http_body_util::BodyExt::boxed(http_body_util::Empty::new()),
                    None,
                )
                .await?;
            if !response.status().is_success() {
                let bytes = http_body_util::BodyExt::collect(response.into_body())
                    .await?
                    .to_bytes();
                bail!("{}", api_message(&bytes));
            }
            let mut body = response.into_body();
            let mut buf = Vec::new();
            let mut err = std::io::stderr();
            while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
                let frame = frame?;
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(data);
                    for (stream, payload) in demux(&mut buf) {
                        if stream == 2 {
                            err.write_all(&payload)?;
                        } else {
                            out.write_all(&payload)?;
                            out.flush()?;
                        }
                    }
                }
            }
        }
        EngineCmd::Start { names } => {
            for n in names {
                client
                    .call(Method::POST, &format!("/containers/{n}/start"), None)
                    .await?;
                writeln!(out, "{n}")?;
            }
        }
        EngineCmd::Stop { time, names } => {
            for n in names {
                let t = time.map(|t| format!("?t={t}")).unwrap_or_default();
                client
                    .call(Method::POST, &format!("/containers/{n}/stop{t}"), None)
                    .await?;
                writeln!(out, "{n}")?;
            }
        }
        EngineCmd::Restart { time, names } => {
            for n in names {
                let t = time.map(|t| format!("?t={t}")).unwrap_or_default();
                client
                    .call(Method::POST, &format!("/containers/{n}/restart{t}"), None)
                    .await?;
                writeln!(out, "{n}")?;
            }
        }
        EngineCmd::Kill { signal, names } => {
            for n in names {
                client
                    .call(
                        Method::POST,
                        &format!("/containers/{n}/kill?signal={signal}"),
                        None,
                    )
                    .await?;
                writeln!(out, "{n}")?;
            }
        }
        EngineCmd::Rm { force, names } => {
            for n in names {
                client
                    .call(
                        Method::DELETE,
                        &format!("/containers/{n}?force={}", force as u8),
                        None,
                    )
                    .await?;
                writeln!(out, "{n}")?;
            }
        }
        EngineCmd::Inspect { name } => {
            let v = client.get_json(&format!("/containers/{name}/json")).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        EngineCmd::Images => {
            let list = client.get_json("/images/json").await?;
            let mut rows = vec![vec![
                "NAME".to_owned(),
                "ID".to_owned(),
                "CREATED".to_owned(),
                "SIZE".to_owned(),
            ]];
            for i in list.as_array().into_iter().flatten() {
                let id = i["Id"].as_str().unwrap_or_default();
                let short = id.strip_prefix("sha256:").unwrap_or(id);
                let names: Vec<String> = i["RepoTags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect();
                let created = i["Created"].as_i64().filter(|t| *t > 0).map(|t| {
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64),
                    )
                    .to_string()
                });
                let size = i["Size"].as_u64().unwrap_or(0);
                rows.push(vec![
                    if names.is_empty() {
                        "<none>".into()
                    } else {
                        names.join(", ")
                    },
                    short.get(..12).unwrap_or(short).to_owned(),
                    created.unwrap_or_else(|| "-".into()),
                    human_size(size),
                ]);
            }
            write_table(&mut out, &rows)?;
        }
        EngineCmd::Load { input } => {
            let (_, body) = client
                .upload("/images/load", &input)
                .await
                .with_context(|| format!("loading {}", input.display()))?;
            for line in String::from_utf8_lossy(&body).lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if let Some(s) = v["stream"].as_str() {
                        write!(out, "{s}")?;
                    }
                }
            }
        }
        EngineCmd::Rmi { names } => {
            for n in names {
                let (_, body) = client
                    .call(Method::DELETE, &format!("/images/{n}"), None)
                    .await?;
                let v: Value = serde_json::from_slice(&body)?;
                for item in v.as_array().into_iter().flatten() {
                    if let Some(u) = item["Untagged"].as_str() {
                        writeln!(out, "Untagged: {u}")?;
                    }
                    if let Some(d) = item["Deleted"].as_str() {
                        writeln!(out, "Deleted: {d}")?;
                    }
                }
            }
        }
    }
    Ok(0)
}

fn api_message(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
}

fn name_of(c: &Value) -> String {
    c["Names"][0]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned()
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// Columns padded to their widest cell, separated by three spaces.
pub fn write_table(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut out = Vec::new();
        write_table(
            &mut out,
            &[
                vec!["NAME".into(), "STATUS".into(), "PID".into()],
                vec!["console".into(), "Up 5 seconds".into(), "42".into()],
                vec!["x".into(), "Exited (0)".into(), "-".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME      STATUS         PID\nconsole   Up 5 seconds   42\nx         Exited (0)     -\n"
        );
    }

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(is_broken_pipe(&anyhow::Error::new(pipe)));
        let wrapped = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing the table");
        assert!(is_broken_pipe(&wrapped));
        assert!(!is_broken_pipe(&anyhow::anyhow!("no such container: x")));
    }

    #[test]
    fn a_connect_error_names_its_cause_once() {
        let e = anyhow::Error::new(ClientError::Connect {
            path: "/run/x.sock".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        let text = format!("{e:#}");
        assert_eq!(
            text,
            "cannot connect to the engine at /run/x.sock: entity not found"
        );
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(2_400_000), "2.4MB");
    }

    #[test]
    fn system_and_user_commands_parse() {
        let c = Cli::try_parse_from(["corral", "system", "logs", "-f", "--tail", "5", "console"])
            .unwrap();
        assert!(matches!(
            c.command,
            Top::System {
                command: EngineCmd::Logs {
                    follow: true,
                    tail: Some(5),
                    ..
                }
            }
        ));
        let c = Cli::try_parse_from(["corral", "--host", "/tmp/s.sock", "images"]).unwrap();
        assert_eq!(c.host.as_deref(), Some(std::path::Path::new("/tmp/s.sock")));
        assert!(Cli::try_parse_from(["corral", "system", "stop"]).is_err());
        let c = Cli::try_parse_from(["corral", "load", "-i", "x.tar"]).unwrap();
        assert!(matches!(c.command, Top::Engine(EngineCmd::Load { .. })));
        // The command after the image (or container) is the container's,
        // its options included.
        let c = Cli::try_parse_from(["corral", "run", "--rm", "img", "echo", "-n", "hi"]).unwrap();
        match c.command {
            Top::Engine(EngineCmd::Run(r)) => {
                assert!(r.rm);
                assert_eq!(
                    (r.image.as_str(), r.command),
                    ("img", vec!["echo".into(), "-n".into(), "hi".into()])
                );
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["corral", "system", "exec", "syslog", "ls", "-l"]).unwrap();
        assert!(matches!(
            c.command,
            Top::System {
                command: EngineCmd::Exec(_)
            }
        ));
        assert!(Cli::try_parse_from(["corral", "exec", "box"]).is_err());
    }
}
