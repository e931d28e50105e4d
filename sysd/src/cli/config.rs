//! `corral config ...`: read, change, check and compare the system
//! config through the system engine's `/corral/config` endpoints.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use hyper::Method;

use crate::client::{Client, ClientError};
use crate::sysconfig::{Change, Report};
use corral_config::layers::{self, Layer, LayerKind};
use corral_config::{RUN_DIR, STATE_STATUS_PATH};

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

pub(super) async fn config_command(client: &Client, command: ConfigCmd) -> Result<i32> {
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
}
