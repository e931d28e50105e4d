//! `corral run` and `corral exec`: a container started, or a command run
//! in one, through the calls the docker CLI makes — create, attach before
//! start and a wait, so no output and no exit is missed; exec create and
//! a hijacked start — with the output split back to stdout and stderr and
//! the exit code passed on as the command's own.

use std::io::Write;

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::client::{demux, Client, ClientError};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run in the background and print the container's id.
    #[arg(long, short)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// An environment variable (KEY=VALUE), again for more.
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// The working directory inside the container.
    #[arg(long, short = 'w')]
    pub workdir: Option<String>,
    /// The user (name or uid[:gid]) inside the container.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// no, always, unless-stopped or on-failure[:N].
    #[arg(long, default_value = "no")]
    pub restart: String,
    pub image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    #[arg(long, short = 'w')]
    pub workdir: Option<String>,
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// The running container.
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// The create body `corral run` sends: Docker's, with what was given.
pub fn create_body(a: &RunArgs) -> Result<Value> {
    let (policy, retries) = match a.restart.split_once(':') {
        Some(("on-failure", n)) => (
            "on-failure",
            n.parse::<i64>()
                .with_context(|| format!("--restart on-failure:{n}: not a number"))?,
        ),
        Some(_) => bail!("--restart {}: only on-failure takes a count", a.restart),
        None => (a.restart.as_str(), 0),
    };
    if !matches!(policy, "no" | "always" | "unless-stopped" | "on-failure") {
        bail!(
            "--restart {}: not one of no, always, unless-stopped, on-failure[:N]",
            a.restart
        );
    }
    if a.rm && policy != "no" {
        bail!("conflicting options: --restart and --rm");
    }
    Ok(json!({
        "Image": a.image,
        "Cmd": if a.command.is_empty() { Value::Null } else { json!(a.command) },
        "Env": a.env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "User": a.user.clone().unwrap_or_default(),
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "HostConfig": {
            "AutoRemove": a.rm,
            "RestartPolicy": { "Name": policy, "MaximumRetryCount": retries },
        },
    }))
}

/// Docker's exit codes for a container that could not start: 127 for a
/// command that is not there, 126 for one that cannot be run, else 125.
fn start_failure(message: &str) -> i32 {
    if message.contains("not found") || message.contains("no such file") {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        125
    }
}

pub async fn run(client: &Client, a: RunArgs, out: &mut impl Write) -> Result<i32> {
    let body = create_body(&a)?;
    let path = match &a.name {
        Some(n) if !crate::engine::valid_name(n) => {
            bail!("invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        }
        Some(n) => format!("/containers/create?name={n}"),
        None => "/containers/create".to_owned(),
    };
    let (_, bytes) = client.call(Method::POST, &path, Some(&body)).await?;
    let created: Value = serde_json::from_slice(&bytes)?;
    let id = created["Id"]
        .as_str()
        .context("the engine's create answer has no Id")?
        .to_owned();
    for w in created["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", w.as_str().unwrap_or_default());
    }
    let start = format!("/containers/{id}/start");
    if a.detach {
        client.call(Method::POST, &start, None).await?;
        writeln!(out, "{id}")?;
        return Ok(0);
    }
    let mut attached = client
        .hijack(
            &format!("/containers/{id}/attach?stream=1&stdout=1&stderr=1"),
            None,
        )
        .await?;
    let condition = if a.rm { "removed" } else { "next-exit" };
    let waiter = Client::new(client.socket());
    let wait = tokio::spawn(async move {
        waiter
            .call(
                Method::POST,
                &format!("/containers/{id}/wait?condition={condition}"),
                None,
            )
            .await
    });
    if let Err(e) = client.call(Method::POST, &start, None).await {
        eprintln!("corral: {e}");
        return Ok(match &e {
            ClientError::Api { message, .. } => start_failure(message),
            _ => 125,
        });
    }
    copy_frames(&mut attached, out).await?;
    let (_, bytes) = wait.await.context("waiting for the container")??;
    let result: Value = serde_json::from_slice(&bytes)?;
    if let Some(m) = result["Error"]["Message"]
        .as_str()
        .filter(|m| !m.is_empty())
    {
        eprintln!("corral: {m}");
    }
    Ok(result["StatusCode"].as_i64().unwrap_or(125) as i32)
}

pub async fn exec(client: &Client, a: ExecArgs, out: &mut impl Write) -> Result<i32> {
    let body = json!({
        "Cmd": a.command,
        "Env": a.env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "User": a.user.clone().unwrap_or_default(),
        "AttachStdout": true,
        "AttachStderr": true,
    });
    let (_, bytes) = client
        .call(
            Method::POST,
            &format!("/containers/{}/exec", a.container),
            Some(&body),
        )
        .await?;
    let created: Value = serde_json::from_slice(&bytes)?;
    let id = created["Id"]
        .as_str()
        .context("the engine's exec answer has no Id")?
        .to_owned();
    let mut stream = client
        .hijack(
            &format!("/exec/{id}/start"),
            Some(&json!({ "Detach": false, "Tty": false })),
        )
        .await?;
    copy_frames(&mut stream, out).await?;
    let state = client.get_json(&format!("/exec/{id}/json")).await?;
    Ok(state["ExitCode"].as_i64().unwrap_or(126) as i32)
}

/// Copies a multiplexed stream to stdout (`out`) and stderr until it ends.
async fn copy_frames(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    out: &mut impl Write,
) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let mut err = std::io::stderr();
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        run: RunArgs,
    }

    fn body(args: &[&str]) -> Result<Value> {
        create_body(&T::try_parse_from([&["t"], args].concat()).unwrap().run)
    }

    #[test]
    fn run_flags_become_docker_s_create_body() {
        let b = body(&[
            "--rm", "-e", "A=1", "-w", "/tmp", "img", "sh", "-c", "exit 3",
        ])
        .unwrap();
        assert_eq!(b["Image"], "img");
        assert_eq!(b["Cmd"], json!(["sh", "-c", "exit 3"]));
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["WorkingDir"], "/tmp");
        assert_eq!(b["HostConfig"]["AutoRemove"], true);
        assert_eq!(body(&["img"]).unwrap()["Cmd"], Value::Null);
        let b = body(&["--restart", "on-failure:3", "img"]).unwrap();
        assert_eq!(b["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);
        let e = body(&["--rm", "--restart", "always", "img"]).unwrap_err();
        assert!(e.to_string().contains("--restart and --rm"), "{e}");
        assert!(body(&["--restart", "sometimes", "img"]).is_err());
        assert_eq!(
            start_failure("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_failure("cgroup: bad"), 125);
    }
}
