//! `corral install`: through the system engine, which sees the machine's
//! disks and the boot loaders (`POST /corral/os/install`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
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
                bail!("install failed: {e}");
            }
            if v["done"].as_bool() == Some(true) {
                done = true;
            }
        }
    }
    if !done {
        bail!("the system engine ended the install without saying it finished");
    }
    Ok(0)
}
