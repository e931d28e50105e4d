//! `corral install` and `corral os ...`: through the system engine, which
//! sees the machine's disks and the boot loaders (`/corral/os/...`).

use std::io::Write;
use std::path::PathBuf;

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
    /// Write a signed upgrade bundle (a file, or an http(s) URL) into the
    /// other slot and reboot into it on trial; it stays only if it becomes
    /// healthy.
    Upgrade {
        /// The bundle: a path, or an http:// or https:// URL.
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
            let bundle = read_source(&source).await?;
            let path = format!("/corral/os/upgrade?reboot={}", u8::from(!no_reboot));
            let response = client
                .send(
                    Method::POST,
                    &path,
                    http_body_util::Full::new(bytes::Bytes::from(bundle)).boxed(),
                    Some("application/octet-stream"),
                )
                .await?;
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

/// The bundle's bytes, from a file or downloaded. The signature, checked
/// by the system engine, is what makes a bundle trusted, so a plain
/// http:// mirror is as safe as https://.
async fn read_source(source: &str) -> Result<Vec<u8>> {
    let max = corral_disk::bundle::MAX_SIZE;
    if !(source.starts_with("http://") || source.starts_with("https://")) {
        let len = std::fs::metadata(source)
            .with_context(|| format!("reading {source}"))?
            .len();
        if len > max {
            bail!(
                "{source}: {} MiB is more than a boot slot holds ({} MiB)",
                len >> 20,
                max >> 20
            );
        }
        return std::fs::read(source).with_context(|| format!("reading {source}"));
    }
    crate::registry::init_tls();
    let mut http = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(30));
    if source.starts_with("http://") {
        // No TLS, so no need for the system's CA certificates (which a
        // session may not have).
        http = http.tls_certs_only([]);
    }
    let http = http.build().map_err(|e| {
        anyhow::anyhow!(
            "the HTTPS client: {} (download the bundle and give its path instead)",
            crate::registry::error_chain(&e)
        )
    })?;
    let fail = |e: reqwest::Error| {
        anyhow::anyhow!("downloading {source}: {}", crate::registry::error_chain(&e))
    };
    let mut res = http.get(source).send().await.map_err(fail)?;
    if !res.status().is_success() {
        bail!("downloading {source}: the server answered {}", res.status());
    }
    let mut data = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(fail)? {
        data.extend_from_slice(&chunk);
        if data.len() as u64 > max {
            bail!(
                "{source}: more than a boot slot holds ({} MiB): not a Corral upgrade bundle",
                max >> 20
            );
        }
    }
    Ok(data)
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
