//! The `corral` command line: `corral system ...` talks to the system
//! engine, `corral ...` to the user engine; both speak the same API.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hyper::Method;
use serde_json::Value;

use crate::client::{demux, Client, ClientError};
use crate::sysconfig::{Change, Report};
use corral_config::layers::{self, Layer, LayerKind};
use corral_config::{RUN_DIR, STATE_STATUS_PATH};

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
    #[command(flatten)]
    Engine(EngineCmd),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the value at a dotted key (a table as TOML, a list one item
    /// a line); without a key, the whole configuration.
    Get {
        key: Option<String>,
        /// Read this config file instead of the running one.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Save a value in the state disk's config and apply it (VALUE is
    /// TOML: 1400, true, ["a", "b"]; a plain word is a string).
    Set { key: String, value: String },
    /// Remove a key from the state disk's config (the value below it, from
    /// the defaults, applies again).
    Unset { key: String },
    /// Edit the state disk's config in $EDITOR; it is checked before it is
    /// saved, and re-opened when it has a mistake.
    Edit,
    /// Check a config file as it would be saved (over the running
    /// defaults, under the config drive and command line); without FILE,
    /// the saved config.
    Validate { file: Option<PathBuf> },
    /// Print the running (merged) config as TOML, or one layer of it.
    Export {
        /// defaults, state, drive or cmdline.
        #[arg(long)]
        layer: Option<String>,
    },
    /// What the running config changes from the defaults, key by key, with
    /// the layer each value comes from.
    Diff,
}

async fn config_command(client: &Client, command: ConfigCmd) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match command {
        ConfigCmd::Get { key, file } => {
            let file = file.unwrap_or_else(|| corral_config::effective_path().to_owned());
            let config = corral_config::Config::load(&file)?;
            let mut text = config_get(&config, key.as_deref())?;
            if key.as_deref() == Some("state") {
                // What init found, beside what the config asks for.
                match std::fs::read_to_string(STATE_STATUS_PATH) {
                    Ok(s) => text.push_str(&format!("# {}\n", s.trim())),
                    Err(_) => {
                        text.push_str(&format!("# no report from init ({STATE_STATUS_PATH})\n"))
                    }
                }
            }
            out.write_all(text.as_bytes())?;
            Ok(0)
        }
        ConfigCmd::Set { key, value } => send_change(client, Change::Set { key, value }).await,
        ConfigCmd::Unset { key } => send_change(client, Change::Unset { key }).await,
        ConfigCmd::Edit => edit(client).await,
        ConfigCmd::Validate { file } => {
            let (text, origin) = match &file {
                Some(f) => (
                    std::fs::read_to_string(f)
                        .with_context(|| format!("cannot read {}", f.display()))?,
                    f.display().to_string(),
                ),
                None => (
                    saved(client).await?,
                    corral_config::PERSISTED_PATH.to_owned(),
                ),
            };
            match check_as_saved(&text, &origin) {
                Ok(()) => {
                    writeln!(out, "{origin}: valid")?;
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(1)
                }
            }
        }
        ConfigCmd::Export { layer } => {
            let name = match layer.as_deref() {
                None => "effective".to_owned(),
                Some(l) => LayerKind::from_name(l)
                    .with_context(|| {
                        format!("no layer {l:?}: the layers are defaults, state, drive and cmdline")
                    })?
                    .name()
                    .to_owned(),
            };
            let path = Path::new(RUN_DIR).join(format!("{name}.toml"));
            if layer.is_none() {
                // Where the values come from, as comments: still TOML.
                if let Ok(status) = std::fs::read_to_string(Path::new(RUN_DIR).join("status")) {
                    for line in status.lines() {
                        writeln!(out, "# {line}")?;
                    }
                }
            }
            match std::fs::read_to_string(&path) {
                Ok(text) => out.write_all(text.as_bytes())?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && layer.is_some() => {
                    writeln!(out, "# the {name} layer is not in use")?
                }
                Err(e) => bail!("cannot read {}: {e}", path.display()),
            }
            Ok(0)
        }
        ConfigCmd::Diff => {
            let stack = published_stack(None);
            let defaults = stack
                .iter()
                .find(|l| l.kind == LayerKind::Defaults)
                .map(|l| layers::flatten(l.table()))
                .unwrap_or_default();
            let effective = layers::merge(&stack)?;
            let from = layers::provenance(&stack);
            let mut any = false;
            for (key, value) in layers::flatten(&effective.table) {
                let line = match defaults.get(&key) {
                    Some(d) if *d == value => continue,
                    Some(d) => format!("~ {key} = {value}  (default {d})"),
                    None => format!("+ {key} = {value}"),
                };
                let layer = from.get(&key).map_or("?", |k| k.name());
                writeln!(out, "{line}  # {layer}")?;
                any = true;
            }
            if !any {
                writeln!(out, "# the running config is the defaults")?;
            }
            Ok(0)
        }
    }
}

/// The layers init (and sysd) published, with `state` (if given) in
/// place of the saved one.
fn published_stack(state: Option<Layer>) -> Vec<Layer> {
    layers::published(Path::new(RUN_DIR), state).0
}

/// Checks a document as the state disk's config: on its own (syntax,
/// keys, types, values, with its lines) and in the running stack.
fn check_as_saved(text: &str, origin: &str) -> Result<(), corral_config::ConfigError> {
    let layer = Layer::parse(LayerKind::State, origin, text)?;
    layers::merge(&published_stack(Some(layer)))?;
    Ok(())
}

async fn saved(client: &Client) -> Result<String> {
    let (_, body) = client
        .call(Method::GET, "/corral/config/saved", None)
        .await
        .map_err(config_error)
        .context("reading the saved config from the system engine")?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn send_change(client: &Client, change: Change) -> Result<i32> {
    let body = serde_json::to_value(&change)?;
    let (_, bytes) = client
        .call(Method::POST, "/corral/config", Some(&body))
        .await
        .map_err(config_error)?;
    let report: Report = serde_json::from_slice(&bytes)?;
    print_report(&report)
}

/// The engine's refusal as it is (it already names the file, line and
/// key), without a "talking to the engine" wrapper.
fn config_error(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Api { message, .. } => anyhow::Error::msg(message),
        ClientError::Connect { ref source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            anyhow::Error::msg(format!(
                "{e}: {source}; changing the system config needs root: run it with sudo"
            ))
        }
        other => anyhow::Error::new(other),
    }
}

fn print_report(r: &Report) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    if r.unchanged {
        writeln!(out, "no change: the saved config already says so")?;
        return Ok(0);
    }
    writeln!(out, "saved {}", corral_config::PERSISTED_PATH)?;
    for a in &r.applied {
        writeln!(out, "applied: {a}")?;
    }
    for n in &r.next_boot {
        writeln!(out, "takes effect at next boot: {n}")?;
    }
    for o in r.overridden.iter().chain(&r.notes) {
        writeln!(out, "note: {o}")?;
    }
    if !r.persistent {
        writeln!(
            out,
            "note: there is no state disk, so this lasts until the machine reboots"
        )?;
    }
    for e in &r.errors {
        eprintln!("error: {e}");
    }
    Ok(if r.errors.is_empty() { 0 } else { 1 })
}

/// `corral config edit`: the saved config in $EDITOR (vi by default),
/// saved only once the engine accepts it.
async fn edit(client: &Client) -> Result<i32> {
    use std::io::BufRead;
    let original = saved(client).await?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &original)?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    loop {
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "$CORRAL_EDITOR \"$1\"", "corral-edit"])
            .arg(&path)
            .env("CORRAL_EDITOR", &editor)
            .status()
            .with_context(|| format!("running {editor}"))?;
        if !status.success() {
            let kept = dir.keep();
            bail!(
                "{editor} failed ({status}); nothing was saved (the file is {})",
                kept.join("config.toml").display()
            );
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                let kept = dir.keep();
                bail!(
                    "cannot read the edited file ({e}); nothing was saved (it is {})",
                    kept.join("config.toml").display()
                );
            }
        };
        if text == original {
            writeln!(std::io::stdout(), "no change")?;
            return Ok(0);
        }
        let change = Change::Replace {
            text: text.clone(),
            expect: original.clone(),
        };
        let body = serde_json::to_value(&change)?;
        match client
            .call(Method::POST, "/corral/config", Some(&body))
            .await
        {
            Ok((_, bytes)) => return print_report(&serde_json::from_slice(&bytes)?),
            Err(ClientError::Api { status, message }) if status.as_u16() == 400 => {
                let shown = message.replace(corral_config::PERSISTED_PATH, "config.toml");
                eprintln!("{shown}");
                eprint!("Edit again? [Y/n] ");
                let mut answer = String::new();
                let read = std::io::stdin().lock().read_line(&mut answer);
                if read.is_err() || answer.trim().eq_ignore_ascii_case("n") || answer.is_empty() {
                    let kept = dir.keep();
                    eprintln!(
                        "nothing was saved; your edit is kept in {}",
                        kept.join("config.toml").display()
                    );
                    return Ok(1);
                }
            }
            Err(e) => {
                // Nothing was saved: keep the user's work.
                let kept = dir.keep();
                return Err(config_error(e).context(format!(
                    "your edit is kept in {}",
                    kept.join("config.toml").display()
                )));
            }
        }
    }
}

/// `corral config get`: the value at `key` of the parsed config
/// (defaults filled in), as text.
pub fn config_get(config: &corral_config::Config, key: Option<&str>) -> Result<String> {
    let mut value = toml::Value::try_from(config).context("serializing the config")?;
    if let Some(key) = key {
        let parts = layers::parse_key(key).map_err(anyhow::Error::msg)?;
        for part in &parts {
            value = match value {
                toml::Value::Table(mut t) => t.remove(part.as_str()).with_context(|| {
                    format!("no such key: {key} (it is unset, or not a key of the config)")
                })?,
                _ => bail!("no such key: {key} ({part:?} is inside a value that is not a table)"),
            };
        }
    }
    Ok(match value {
        toml::Value::String(s) => format!("{s}\n"),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => format!("{s}\n"),
                other => format!("{other}\n"),
            })
            .collect(),
        toml::Value::Table(t) => toml::to_string(&t).context("formatting the table")?,
        other => format!("{other}\n"),
    })
}

#[derive(Debug, Subcommand)]
pub enum EngineCmd {
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
            return config_command(&client, command).await;
        }
    };
    let client = Client::new(cli.host.unwrap_or_else(|| PathBuf::from(default)));
    let mut out = std::io::stdout().lock();
    match command {
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
    fn config_get_prints_values_lists_and_tables() {
        let c = corral_config::Config::parse(
            "[ssh]\nauthorized-keys = [\"ssh-ed25519 AAAAC3 a@b\", \"ssh-rsa AAAAB3 c@d\"]\n[init]\nmax-restarts = 3\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            config_get(&c, Some("ssh.authorized-keys")).unwrap(),
            "ssh-ed25519 AAAAC3 a@b\nssh-rsa AAAAB3 c@d\n"
        );
        assert_eq!(config_get(&c, Some("init.max-restarts")).unwrap(), "3\n");
        let state = config_get(&c, Some("state")).unwrap();
        assert!(state.contains("autoformat = true"), "{state}");
        let e = config_get(&c, Some("ssh.keys")).unwrap_err().to_string();
        assert!(e.contains("no such key: ssh.keys"), "{e}");
        let e = config_get(&c, Some("init.max-restarts.x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a table"), "{e}");
        // No keys configured: nothing printed, so sshd finds no key.
        let d = corral_config::Config::default();
        assert_eq!(config_get(&d, Some("ssh.authorized-keys")).unwrap(), "");
    }

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
    }
}
