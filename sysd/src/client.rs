//! A small client for the engine's API over its unix socket, for the
//! `corral` CLI and the tests.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    // The cause is the error's source: a report that walks the chain
    // (`{:#}`) prints it once.
    #[error("cannot connect to the engine at {}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to the engine: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("{message}")]
    Api { status: StatusCode, message: String },
    #[error("the engine sent something that is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct Client {
    socket: PathBuf,
}

type Body = BoxBody<Bytes, Infallible>;

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends a request and returns the response with its body unread.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut sender = self.connect().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://corral/v1.41{path}"))
            .header(hyper::header::HOST, "corral");
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        let response = sender.send_request(req.body(body)?).await?;
        Ok(response)
    }

    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Body>, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Upgrades allowed: `hijack` takes the connection over.
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }

    /// A POST whose connection the engine takes over (`attach`, `exec
    /// start`): the raw stream after the engine's `101`, as the docker CLI
    /// asks for it (`Upgrade: tcp`).
    pub async fn hijack(
        &self,
        path: &str,
        json: Option<&Value>,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, ClientError> {
        let mut sender = self.connect().await?;
        let body = match json {
            Some(v) => Full::new(Bytes::from(v.to_string())).boxed(),
            None => Empty::new().boxed(),
        };
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://corral/v1.41{path}"))
            .header(hyper::header::HOST, "corral")
            .header(hyper::header::CONNECTION, "Upgrade")
            .header(hyper::header::UPGRADE, "tcp")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(body)?;
        let response = sender.send_request(req).await?;
        let status = response.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let bytes = response.into_body().collect().await?.to_bytes();
            check(status, bytes)?;
            return Err(ClientError::Api {
                status,
                message: format!("{path}: the engine answered {status}, not 101 (an upgrade)"),
            });
        }
        Ok(TokioIo::new(hyper::upgrade::on(response).await?))
    }

    /// A request whose answer is read whole; 4xx and 5xx become
    /// `ClientError::Api` with the engine's message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        json: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let (body, ct) = match json {
            Some(v) => (
                Full::new(Bytes::from(v.to_string())).boxed(),
                Some("application/json"),
            ),
            None => (Empty::new().boxed(), None),
        };
        let response = self.send(method, path, body, ct).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        check(status, bytes)
    }

    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let (_, bytes) = self.call(Method::GET, path, None).await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Uploads a file as the request body, streamed in chunks.
    pub async fn upload(
        &self,
        path: &str,
        file: &Path,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        use tokio::io::AsyncReadExt;
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                if tx
                    .send_data(Bytes::copy_from_slice(&buf[..n]))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        });
        let response = self
            .send(Method::POST, path, body.boxed(), Some("application/x-tar"))
            .await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        if let Ok(Err(e)) = reader.await {
            return Err(std::io::Error::new(e.kind(), format!("{}: {e}", file.display())).into());
        }
        check(status, bytes)
    }
}

/// Splits Docker's multiplexed stream into (stream, payload) frames; what
/// is left over (an incomplete frame) stays in `buf`.
pub fn demux(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        if buf.len() < 8 {
            return out;
        }
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < 8 + len {
            return out;
        }
        let stream = buf[0];
        let payload = buf[8..8 + len].to_vec();
        buf.drain(..8 + len);
        out.push((stream, payload));
    }
}

/// An error status becomes [`ClientError::Api`] with the body's JSON
/// `message` (or the body itself).
fn check(status: StatusCode, bytes: Bytes) -> Result<(StatusCode, Bytes), ClientError> {
    if status.is_client_error() || status.is_server_error() {
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(ClientError::Api { status, message });
    }
    Ok((status, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_handles_partial_frames() {
        let mut buf =
            b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n\x02\x00\x00\x00\x00\x00\x00\x04er".to_vec();
        let frames = demux(&mut buf);
        assert_eq!(frames, [(1, b"hi\n".to_vec())]);
        buf.extend_from_slice(b"r\n");
        assert_eq!(demux(&mut buf), [(2, b"err\n".to_vec())]);
        assert!(buf.is_empty());
    }
}
