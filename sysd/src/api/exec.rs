//! `/exec/...` and `POST /containers/{id}/exec`: a process started in a
//! running container, its stream (hijacked, as `attach`'s), its
//! terminal's size and its exit code.

use std::sync::Arc;

use bollard_stubs::models::{
    ExecConfig as ApiExecConfig, ExecInspectResponse, ExecStartConfig, ProcessConfig,
};
use hyper::body::Incoming;
use hyper::{Method, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use super::attach::{detach_keys, window_size, Escape};
use super::streams::{self, frame_bytes, Hijacked};
use super::{json_response, parse_json, parse_query, read_body, ApiError, ApiResult};
use crate::engine::{Engine, Exec, ExecConfig, ExecStreams, StartFailure};

/// `POST /containers/{id}/exec`.
pub async fn create(engine: &Arc<Engine>, req: Request<Incoming>, container: &str) -> ApiResult {
    let body = read_body(req, 1 << 20).await?;
    let c: ApiExecConfig = parse_json(&body, "invalid exec config")?;
    let size = |v: Option<Vec<usize>>| -> Result<Option<(u16, u16)>, ApiError> {
        match v.as_deref() {
            Some([rows, cols]) if *rows > 0 && *cols > 0 => {
                let n = |x: usize| {
                    u16::try_from(x).map_err(|_| {
                        ApiError::bad(format!("ConsoleSize: {x} is not a window size"))
                    })
                };
                Ok(Some((n(*rows)?, n(*cols)?)))
            }
            _ => Ok(None),
        }
    };
    if let Some(keys) = c.detach_keys.as_deref() {
        detach_keys(Some(keys))?;
    }
    let config = ExecConfig {
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        user: c.user,
        working_dir: c.working_dir,
        tty: c.tty.unwrap_or(false),
        attach: [
            c.attach_stdin.unwrap_or(false),
            c.attach_stdout.unwrap_or(false),
            c.attach_stderr.unwrap_or(false),
        ],
        privileged: c.privileged.unwrap_or(false),
        detach_keys: c.detach_keys,
        console_size: size(c.console_size)?,
    };
    if let Some(kv) = config
        .env
        .iter()
        .find(|kv| kv.starts_with('=') || kv.is_empty())
    {
        return Err(ApiError::bad(format!("Env: {kv:?} has no variable name")));
    }
    let id = engine.exec_create(container, config)?;
    // Docker's key is `Id`; bollard's IdResponse writes `id`, which Go
    // clients read (their decoding ignores case) but docker-py does not.
    Ok(json_response(201, &serde_json::json!({ "Id": id })))
}

/// `/exec/{id}/start|resize|json`.
pub async fn route(engine: &Arc<Engine>, req: Request<Incoming>, rest: &[&str]) -> ApiResult {
    let q = parse_query(req.uri().query());
    let (method, [id, action]) = (req.method().clone(), rest) else {
        return Err(super::no_route(
            req.method(),
            &format!("exec/{}", rest.join("/")),
        ));
    };
    let exec = engine.exec_get(id)?;
    match (method, *action) {
        (Method::GET, "json") => Ok(json_response(200, &inspect(&exec))),
        (Method::POST, "resize") => {
            let (rows, cols) = window_size(&q)?;
            engine.exec_resize(&exec, rows, cols)?;
            Ok(super::empty(200))
        }
        (Method::POST, "start") => start(engine, req, exec).await,
        (m, _) => Err(super::no_route(&m, &format!("exec/{id}/{action}"))),
    }
}

fn inspect(exec: &Exec) -> ExecInspectResponse {
    let s = exec.state();
    let c = &exec.config;
    ExecInspectResponse {
        can_remove: Some(false),
        detach_keys: Some(c.detach_keys.clone().unwrap_or_default()),
        id: Some(exec.id.clone()),
        running: Some(s.running),
        exit_code: s.exit_code,
        process_config: Some(ProcessConfig {
            privileged: Some(c.privileged),
            user: Some(c.user.clone().unwrap_or_default()),
            tty: Some(c.tty),
            entrypoint: c.cmd.first().cloned(),
            arguments: Some(c.cmd.iter().skip(1).cloned().collect()),
        }),
        open_stdin: Some(c.attach[0]),
        open_stdout: Some(c.attach[1]),
        open_stderr: Some(c.attach[2]),
        container_id: Some(exec.container.clone()),
        pid: Some(i64::from(s.pid.unwrap_or(0))),
    }
}

async fn start(engine: &Arc<Engine>, req: Request<Incoming>, exec: Arc<Exec>) -> ApiResult {
    let (parts, body) = req.into_parts();
    // The body is small; read it, then rebuild the request for the upgrade.
    let bytes = {
        use http_body_util::BodyExt;
        let limited = http_body_util::Limited::new(body, 1 << 16);
        limited
            .collect()
            .await
            .map_err(|e| ApiError::bad(format!("reading the request: {e}")))?
            .to_bytes()
    };
    let start: ExecStartConfig = if bytes.iter().all(u8::is_ascii_whitespace) {
        ExecStartConfig::default()
    } else {
        parse_json(&bytes, "invalid exec start config")?
    };
    let detach = start.detach.unwrap_or(false);
    if detach {
        return match engine.exec_start(&exec, true).await {
            Ok(_) => Ok(super::empty(200)),
            Err(Ok(f)) => Err(ApiError::new(500, f.message)),
            Err(Err(e)) => Err(e.into()),
        };
    }
    let req = Request::from_parts(parts, http_body_util::Empty::<bytes::Bytes>::new());
    if !streams::wants_upgrade(&req) {
        return Err(ApiError::bad(
            "exec start without Detach needs a hijacked connection (Upgrade: tcp)",
        ));
    }
    let keys = detach_keys(exec.config.detach_keys.as_deref())?;
    let engine = engine.clone();
    Ok(streams::hijack(req, move |io| async move {
        let tty = exec.config.tty;
        let started = engine.exec_start(&exec, false).await;
        let streams = match started {
            Ok(s) => Ok(s),
            Err(Ok(f)) => Err(f),
            Err(Err(e)) => Err(StartFailure {
                message: e.to_string(),
                exit_code: 126,
            }),
        };
        session(io, streams, tty, keys).await;
    }))
}

/// Copies the client's input to the process and its output back, framed
/// unless it has a terminal, until its output ends and its exit code is
/// recorded (the CLI asks for it as soon as the stream ends).
async fn session(
    io: Hijacked,
    streams: Result<ExecStreams, StartFailure>,
    tty: bool,
    keys: Vec<u8>,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let encode = move |stream: u8, data: &[u8]| -> bytes::Bytes {
        if tty {
            bytes::Bytes::copy_from_slice(data)
        } else {
            frame_bytes(stream, data)
        }
    };
    let mut s = match streams {
        Ok(s) => s,
        Err(f) => {
            // As Docker: the reason on the output, the code in inspect.
            let _ = wr
                .write_all(&encode(1, format!("{}\r\n", f.message).as_bytes()))
                .await;
            let _ = wr.shutdown().await;
            return;
        }
    };
    let (sink, out1, out2) = match s.master.take() {
        Some(master) => {
            set_nonblocking(&master);
            let writer = master
                .try_clone()
                .ok()
                .and_then(|w| pipe::Sender::from_owned_fd_unchecked(w).ok());
            let reader = pipe::Receiver::from_owned_fd_unchecked(master).ok();
            (writer, reader, None)
        }
        None => (
            s.stdin
                .take()
                .and_then(|w| pipe::Sender::from_owned_fd(w).ok()),
            s.stdout
                .take()
                .and_then(|r| pipe::Receiver::from_owned_fd(r).ok()),
            s.stderr
                .take()
                .and_then(|r| pipe::Receiver::from_owned_fd(r).ok()),
        ),
    };
    let (detached_tx, detached_rx) = tokio::sync::oneshot::channel::<()>();
    let input = sink.map(|mut sink| {
        tokio::spawn(async move {
            let mut escape = Escape::new(keys);
            let mut buf = vec![0u8; 8192];
            let mut out = Vec::new();
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        out.clear();
                        let detach = escape.feed(&buf[..n], &mut out);
                        if sink.write_all(&out).await.is_err() {
                            break;
                        }
                        if detach {
                            let _ = detached_tx.send(());
                            return;
                        }
                    }
                }
            }
            // Dropping the sink ends the process's input (a pipe).
        })
    });
    let detached = async move {
        if detached_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(detached);
    let (mut o1, mut o2) = (out1, out2);
    let (mut b1, mut b2) = (vec![0u8; 16 << 10], vec![0u8; 16 << 10]);
    while o1.is_some() || o2.is_some() {
        tokio::select! {
            r = read_some(&mut o1, &mut b1) => match r {
                Some(n) => if wr.write_all(&encode(1, &b1[..n])).await.is_err() { break },
                None => o1 = None,
            },
            r = read_some(&mut o2, &mut b2) => match r {
                Some(n) => if wr.write_all(&encode(2, &b2[..n])).await.is_err() { break },
                None => o2 = None,
            },
            _ = &mut detached => {
                if let Some(t) = input { t.abort(); }
                let _ = wr.shutdown().await;
                return;
            }
        }
    }
    while !*s.done.borrow_and_update() {
        if s.done.changed().await.is_err() {
            break;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
    if let Some(t) = input {
        t.abort();
    }
}

/// Some bytes from `r`; None at its end (EOF, or EIO from a terminal
/// whose process side is closed). A missing reader never answers.
async fn read_some(r: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> Option<usize> {
    match r {
        Some(r) => match r.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

fn set_nonblocking(fd: &std::os::fd::OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
        );
    }
}
