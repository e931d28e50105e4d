//! `/corral/admin/...`: host administration, system engine only (whose
//! socket is root's: the SSH session's `sudo` reaches it, its processes
//! and user containers do not).
//!
//! `POST /corral/admin/shell` takes `{"Tty", "ConsoleSize": [rows, cols],
//! "User", "SshClient", "Cmd"}` (`User` and `SshClient` what the client
//! says of itself, for the log; `Cmd` a command instead of a login shell) and answers `{"Id"}`: an exec of a login shell in the
//! host's namespaces, started, resized and inspected through
//! `/exec/{id}/...` as `docker exec`'s are.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request};
use serde::Deserialize;

use super::{json_response, parse_json, read_body, ApiError, ApiResult, Peer};
use crate::engine::admin::Requester;
use crate::engine::Engine;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ShellRequest {
    tty: bool,
    console_size: Option<[u16; 2]>,
    user: Option<String>,
    ssh_client: Option<String>,
    cmd: Vec<String>,
}

pub async fn route(engine: &Arc<Engine>, req: Request<Incoming>, rest: &[&str]) -> ApiResult {
    if !engine.config().role.manages_os {
        return Err(ApiError::new(
            404,
            "this engine does not administer the machine: use the system engine's socket (/run/corral/system.sock)",
        ));
    }
    match (req.method(), rest) {
        (&Method::POST, ["shell"]) => shell(engine, req).await,
        (m, _) => Err(super::no_route(m, "corral/admin")),
    }
}

async fn shell(engine: &Arc<Engine>, req: Request<Incoming>) -> ApiResult {
    let peer = req.extensions().get::<Peer>().copied();
    let body = read_body(req, 1 << 16).await?;
    let r: ShellRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ShellRequest::default()
    } else {
        parse_json(&body, "invalid admin shell request")?
    };
    // Only the kernel's word decides; the rest is for the log, cut short
    // so a client cannot flood the console with it.
    let short = |s: Option<String>| {
        s.filter(|s| !s.is_empty())
            .map(|s| s.chars().filter(|c| !c.is_control()).take(64).collect())
    };
    let who = Requester {
        uid: peer.map_or(u32::MAX, |p| p.uid),
        pid: peer.and_then(|p| p.pid),
        claimed_user: short(r.user),
        ssh_client: short(r.ssh_client),
    };
    let size = r
        .console_size
        .filter(|[rows, cols]| *rows > 0 && *cols > 0)
        .map(|[rows, cols]| (rows, cols));
    let id = engine.admin_shell_create(&who, r.cmd, r.tty, size)?;
    Ok(json_response(201, &serde_json::json!({ "Id": id })))
}
