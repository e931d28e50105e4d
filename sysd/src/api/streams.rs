//! The streaming machinery every resource shares: Docker's multiplexed
//! frames (stdcopy), connections hijacked by `attach` and `exec`, and long
//! polls (`wait`, `logs -f`) whose headers go out at once while the body
//! waits.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use log::debug;

use super::Body;
use crate::logs::{Entry, Stream};

/// A container's output from now until its next exit: what `logs -f`
/// (log entries) and `attach` (raw chunks) send. The engine announces an exit only once the log is
/// complete, so what came with the exit is read after it, then the end.
pub struct Follow<T> {
    live: tokio::sync::broadcast::Receiver<T>,
    exits: tokio::sync::watch::Receiver<u64>,
    exited: bool,
}

impl<T: Clone> Follow<T> {
    pub fn new(
        live: tokio::sync::broadcast::Receiver<T>,
        exits: tokio::sync::watch::Receiver<u64>,
    ) -> Self {
        Self {
            live,
            exits,
            exited: false,
        }
    }

    /// The next entry; None after the exit (or if the container is gone).
    pub async fn next(&mut self) -> Option<T> {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        loop {
            if self.exited {
                return match self.live.try_recv() {
                    Ok(e) => Some(e),
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(_) => None,
                };
            }
            tokio::select! {
                e = self.live.recv() => match e {
                    Ok(e) => return Some(e),
                    Err(RecvError::Lagged(n)) => {
                        log::warn!("a follower of a container's output fell {n} lines behind; they are skipped");
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.exits.changed() => self.exited = true,
            }
        }
    }
}

/// `Content-Type` of a stream of frames or raw output.
pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";

/// Docker's multiplexed frame: stream type (0 stdin, 1 stdout, 2 stderr,
/// 3 system error), three zero bytes, the payload length big-endian, the
/// payload.
pub fn frame_bytes(stream: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.into()
}

/// A log entry as a frame, with its time in front when asked.
pub fn frame(entry: &Entry, timestamps: bool) -> Bytes {
    let mut payload = Vec::new();
    if timestamps {
        payload.extend_from_slice(entry.time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(entry.log.as_bytes());
    frame_bytes(
        match entry.stream {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        },
        &payload,
    )
}

/// A body that is fed later: the response (and so its headers) goes out
/// now, and `produce` writes the body through the sender. The CLI calls
/// `wait` before `start` and reads its headers before going on: headers
/// that waited for the exit would deadlock `docker run`.
pub fn later<F, Fut>(content_type: &'static str, produce: F) -> Response<Body>
where
    F: FnOnce(http_body_util::channel::Sender<Bytes, Infallible>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(16);
    tokio::spawn(produce(tx));
    let mut r = Response::new(body.boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r
}

/// The upgraded connection of a hijacked request.
pub type Hijacked = TokioIo<hyper::upgrade::Upgraded>;

/// Answers `101 UPGRADED` (`Upgrade: tcp`), as Docker does for `attach`
/// and `exec start` (a 200 makes the CLI fail with "unable to upgrade to
/// tcp"), and runs `session` on the raw connection once hyper has handed
/// it over.
pub fn hijack<B, F, Fut>(req: Request<B>, session: F) -> Response<Body>
where
    B: Send + 'static,
    F: FnOnce(Hijacked) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => session(TokioIo::new(upgraded)).await,
            Err(e) => debug!("a hijacked connection was not upgraded: {e}"),
        }
    });
    let mut r = Response::new(super::full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    h.insert(hyper::header::UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(RAW_STREAM),
    );
    r
}

/// Whether the client asked for a hijack (`Upgrade: tcp`). Without it
/// (an old client, curl) attach answers as a plain streamed 200.
pub fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// A response body fed by a thread that writes it (an archive: `docker
/// cp`, `docker save`) through a [`ChannelWriter`].
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// The archive as it is written, to the response body; a client gone
/// away ends the writing with a broken pipe.
pub struct ChannelWriter(pub tokio::sync::mpsc::Sender<Bytes>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
            })?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> Entry {
        Entry {
            log: text.into(),
            stream: Stream::Stdout,
            time: "2026-12-01T00:00:00Z".into(),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_follower_gets_what_came_with_the_exit_then_the_end() {
        let (tx, rx) = tokio::sync::broadcast::channel(8);
        let (exit_tx, exit_rx) = tokio::sync::watch::channel(0u64);
        let mut follow = Follow::new(rx, exit_rx);
        tx.send(entry("a\n")).unwrap();
        assert_eq!(follow.next().await.unwrap().log, "a\n");
        // The last line and the exit arrive together.
        tx.send(entry("b\n")).unwrap();
        exit_tx.send_modify(|n| *n += 1);
        assert_eq!(follow.next().await.unwrap().log, "b\n");
        assert!(follow.next().await.is_none());
    }

    #[test]
    fn frames_are_docker_multiplexed() {
        let e = Entry {
            log: "hi\n".into(),
            stream: Stream::Stderr,
            time: "2026-11-24T00:00:00Z".into(),
        };
        assert_eq!(
            &frame(&e, false)[..],
            b"\x02\x00\x00\x00\x00\x00\x00\x03hi\n"
        );
        let f = frame(&e, true);
        assert_eq!(&f[8..], b"2026-11-24T00:00:00Z hi\n");
        assert_eq!(
            u32::from_be_bytes([f[4], f[5], f[6], f[7]]) as usize,
            f.len() - 8
        );
        assert_eq!(
            &frame_bytes(3, b"x")[..],
            b"\x03\x00\x00\x00\x00\x00\x00\x01x"
        );
    }
}
