//! `corral install` and `corral os ...`: through the system engine, which
//! sees the machine's disks and the boot loaders (`/corral/os/...`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

use crate::client::Client;

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The whole disk to install onto, e.g. /dev/sda or /dev/nvme0n1
    #[arg(long)]
    pub device: String,
    /// The system config the installed machine boots with (TOML, checked
    /// first) [default: this system's saved config]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Erase a disk that holds partitions or data
    #[arg(long)]
    pub force: bool,
}

pub async fn install(client: &Client, args: InstallArgs, out: &mut impl Write) -> Result<i32> {
    let config = match &args.config {
        Some(f) => {
            Some(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?)
        }
        None => None,
    };
    let body = json!({
        "device": args.device,
        "config": config,
        "config_origin": args.config.as_ref().map(|f| f.display().to_string()),
        "force": args.force,
    });
    let response = client
        .send(
            Method::POST,
            "/corral/os/install",
            http_body_util::Full::new(bytes::Bytes::from(body.to_string())).boxed(),
            Some("application/json"),
        )
        .await?;
    steps(response, "install", out).await
}

/// Prints the steps an install or upgrade streams (one JSON object a
/// line, lines may span frames) until it says it is done.
async fn steps(
    response: hyper::Response<hyper::body::Incoming>,
    what: &str,
    out: &mut impl Write,
) -> Result<i32> {
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        let msg = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        bail!("{msg}");
    }
    // One JSON object a line; lines may span frames.
    let mut pending = Vec::new();
    let mut done = false;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=nl).collect();
            let v: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
            if let Some(s) = v["status"].as_str() {
                writeln!(out, "{s}")?;
                out.flush()?;
            }
            if let Some(e) = v["error"].as_str() {
                bail!("{what} failed: {e}");
            }
            if v["done"].as_bool() == Some(true) {
                done = true;
            }
        }
    }
    if !done {
        bail!("the system engine ended the {what} without saying it finished");
    }
    Ok(0)
}

#[derive(Debug, Subcommand)]
pub enum OsCmd {
    /// The running version and slot, the other slot's version, and the
    /// last upgrade with its outcome.
    Version {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a signed upgrade bundle (a file, a URL or an image) into the
    /// other slot and reboot into it on trial; it stays only if it becomes
    /// healthy.
    Upgrade {
        /// The bundle: a path, an http:// or https:// URL, or an image in a
        /// registry that holds it as /corral.bundle (`make release` writes
        /// one: out/corral-VERSION.oci.tar)
        source: String,
        /// Write it and leave the reboot for later.
        #[arg(long)]
        no_reboot: bool,
    },
    /// Make the other slot the default, and reboot into it.
    Rollback {
        #[arg(long)]
        no_reboot: bool,
    },
}

pub async fn os_command(client: &Client, cmd: OsCmd, out: &mut impl Write) -> Result<i32> {
    match cmd {
        OsCmd::Version { json } => {
            let v = client.get_json("/corral/os").await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                write!(out, "{}", render_version(&v))?;
            }
            Ok(0)
        }
        OsCmd::Upgrade { source, no_reboot } => {
            let reboot = u8::from(!no_reboot);
            let query = match Source::of(&source)? {
                // The system engine fetches these: on the host's network,
                // with the machine's registry settings and CAs.
                Source::Image(image) => {
                    writeln!(out, "pulling the bundle from {image}")?;
                    Some(("image", image))
                }
                Source::Url(url) => {
                    writeln!(out, "downloading {url}")?;
                    Some(("url", url))
                }
                Source::File(_) => None,
            };
            out.flush()?;
            let response = match query {
                Some((key, value)) => {
                    let path = format!(
                        "/corral/os/upgrade?reboot={reboot}&{key}={}",
                        form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
                    );
                    client
                        .send(
                            Method::POST,
                            &path,
                            http_body_util::Empty::new().boxed(),
                            None,
                        )
                        .await?
                }
                None => {
                    let bundle = read_file(&source)?;
                    let path = format!("/corral/os/upgrade?reboot={reboot}");
                    client
                        .send(
                            Method::POST,
                            &path,
                            http_body_util::Full::new(bytes::Bytes::from(bundle)).boxed(),
                            Some("application/octet-stream"),
                        )
                        .await?
                }
            };
            steps(response, "upgrade", out).await
        }
        OsCmd::Rollback { no_reboot } => {
            let path = format!("/corral/os/rollback?reboot={}", u8::from(!no_reboot));
            let response = client
                .send(
                    Method::POST,
                    &path,
                    http_body_util::Empty::new().boxed(),
                    None,
                )
                .await?;
            let status = response.status();
            let bytes = response.into_body().collect().await?.to_bytes();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let msg = v["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            if !status.is_success() {
                bail!("{msg}");
            }
            writeln!(out, "{msg}")?;
            if v["rebooting"].as_bool() == Some(true) {
                writeln!(out, "rebooting")?;
            }
            Ok(0)
        }
    }
}

/// Where `corral os upgrade` takes the bundle from.
#[derive(Debug, PartialEq, Eq)]
enum Source<'a> {
    File(&'a str),
    Url(&'a str),
    /// An image reference (`registry/corral:0.2`, or `docker://...` as
    /// skopeo writes it).
    Image(&'a str),
}

impl<'a> Source<'a> {
    /// A path that exists is a file, whatever it looks like; so is one
    /// that looks like a path (`/`, `.`, a `.bundle` name), which is then
    /// reported missing rather than looked up in a registry.
    fn of(s: &'a str) -> Result<Source<'a>> {
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Source::Url(s));
        }
        if let Some(image) = s.strip_prefix("docker://") {
            return Ok(Source::Image(image));
        }
        if Path::new(s).exists()
            || s.starts_with('/')
            || s.starts_with('.')
            || s.ends_with(".bundle")
            || s.contains("://")
        {
            return Ok(Source::File(s));
        }
        if s.is_empty()
            || s.chars()
                .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
        {
            bail!(
                "{s:?} is neither a file, an http(s) URL nor an image reference \
                 (registry/name:tag, in lower case)"
            );
        }
        Ok(Source::Image(s))
    }
}

/// The bundle's bytes, from a file (refused before it is read when it
/// cannot be one).
fn read_file(path: &str) -> Result<Vec<u8>> {
    let max = corral_disk::bundle::MAX_SIZE;
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {path}"))?
        .len();
    if len > max {
        bail!(
            "{path}: {} MiB is more than a boot slot holds ({} MiB)",
            len >> 20,
            max >> 20
        );
    }
    std::fs::read(path).with_context(|| format!("reading {path}"))
}

fn render_version(v: &Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    let mut t = format!(
        "running:      {}{}\nbooted:       {}\n",
        v["name"].as_str().unwrap_or("Corral"),
        if v["trial"].as_bool() == Some(true) && !s("pending_trial").is_empty() {
            " (on trial)"
        } else {
            ""
        },
        s("booted")
    );
    if let Some(slot) = v["slot"].as_str() {
        let other = &v["other"];
        t.push_str(&format!(
            "slot:         {slot} (default: {})\nother slot:   {} ({})\n",
            v["default"].as_str().unwrap_or("?"),
            other["slot"].as_str().unwrap_or("?"),
            other["version"]
                .as_str()
                .map(|v| format!("Corral {v}"))
                .unwrap_or_else(|| "empty".into())
        ));
        t.push_str(&format!(
            "last upgrade: {}\n",
            v["last_upgrade"].as_str().unwrap_or("none")
        ));
        if let Some(o) = v["outcome"].as_str() {
            t.push_str(&format!("outcome:      {o}\n"));
        }
    }
    if let Some(e) = v["error"].as_str() {
        t.push_str(&format!("error:        {e}\n"));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_source_is_a_file_a_url_or_an_image() {
        assert_eq!(
            Source::of("https://x/c.bundle").unwrap(),
            Source::Url("https://x/c.bundle")
        );
        assert_eq!(
            Source::of("http://10.0.2.2:8000/c").unwrap(),
            Source::Url("http://10.0.2.2:8000/c")
        );
        // Looks like a path: a missing file, not a registry lookup.
        for f in ["/tmp/no-such", "./c", "corral-0.2.bundle", "ftp://x/y"] {
            assert_eq!(Source::of(f).unwrap(), Source::File(f), "{f}");
        }
        for i in [
            "registry.lan:5000/corral:0.2",
            "ghcr.io/me/corral@sha256:ab",
            "corral:0.2",
        ] {
            assert_eq!(Source::of(i).unwrap(), Source::Image(i), "{i}");
        }
        assert_eq!(
            Source::of("docker://reg/corral:1").unwrap(),
            Source::Image("reg/corral:1")
        );
        for bad in ["", "Corral:1", "a b"] {
            assert!(Source::of(bad).is_err(), "{bad:?}");
        }
    }
}
