//! A container's streams: `logs`, `attach` (output, and input for a
//! container created with `-i`) and `resize` of its terminal.
//!
//! Output of a container with a terminal (`-t`) is one raw stream; of one
//! without, Docker's multiplexed frames. Input goes to the container's
//! stdin FIFO, which its monitor holds; the detach keys (Ctrl-P Ctrl-Q
//! unless the client names others) end the session without touching the
//! container, as Docker's do.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::streams::{self, frame, frame_bytes};
use super::{flag, ApiError, ApiResult, Query};
use crate::engine::Engine;
use crate::logs::{Entry, Stream};
use crate::monitor::relay::Control;

fn streams_wanted(q: &Query) -> Result<impl Fn(Stream) -> bool + Clone, ApiError> {
    let stdout = flag(q, "stdout");
    let stderr = flag(q, "stderr");
    if !stdout && !stderr && !flag(q, "stdin") {
        return Err(ApiError::bad(
            "you must choose at least one stream (stdout=1 and/or stderr=1)",
        ));
    }
    Ok(move |s: Stream| match s {
        Stream::Stdout => stdout,
        Stream::Stderr => stderr,
    })
}

/// A log entry as the client reads it: raw for a terminal, else framed.
fn entry_bytes(e: &Entry, timestamps: bool, tty: bool) -> Bytes {
    if tty {
        let mut out = Vec::with_capacity(e.log.len() + 32);
        if timestamps {
            out.extend_from_slice(e.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(e.log.as_bytes());
        out.into()
    } else {
        frame(e, timestamps)
    }
}

/// `since`/`until` as the CLI sends them: Unix seconds with an optional
/// fraction (`1733140000.123456789`); 0 or empty is no bound.
pub fn time_bound(q: &Query, key: &str) -> Result<Option<SystemTime>, ApiError> {
    let Some(v) = q.get(key).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad(format!(
            "{key}={v:?} is not a Unix time (seconds[.nanoseconds])"
        ))
    };
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else if frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit()) {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    if secs == 0 && nanos == 0 {
        return Ok(None);
    }
    Ok(Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)))
}

fn entry_time(e: &Entry) -> Option<SystemTime> {
    humantime::parse_rfc3339(&e.time).ok()
}

pub fn logs(engine: &Arc<Engine>, id: &str, q: &Query) -> ApiResult {
    let wanted = streams_wanted(q)?;
    let tail = match q.get("tail").map(String::as_str) {
        None | Some("all") | Some("") => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| ApiError::bad(format!("tail={n:?} is not a number or \"all\"")))?,
        ),
    };
    let since = time_bound(q, "since")?;
    let until = time_bound(q, "until")?;
    let in_window = move |e: &Entry| {
        let t = entry_time(e);
        since.is_none_or(|s| t.is_some_and(|t| t >= s))
            && until.is_none_or(|u| t.is_some_and(|t| t <= u))
    };
    let follow = flag(q, "follow");
    let timestamps = flag(q, "timestamps");
    let tty = engine.inspect(id)?.record.api.tty;
    // A bound in the past ends the stream there.
    let follow = follow && until.is_none_or(|u| u > SystemTime::now());
    let (history, live, exits) = engine.logs(id, tail, follow)?;
    let mut head = Vec::new();
    for e in history.iter().filter(|e| wanted(e.stream) && in_window(e)) {
        head.extend_from_slice(&entry_bytes(e, timestamps, tty));
    }
    let (Some(live), Some(exits)) = (live, exits) else {
        let mut r = hyper::Response::new(super::full(head));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(streams::RAW_STREAM),
        );
        return Ok(r);
    };
    let mut follow = streams::Follow::new(live, exits);
    Ok(streams::later(
        streams::RAW_STREAM,
        move |mut tx| async move {
            if tx.send_data(head.into()).await.is_err() {
                return;
            }
            loop {
                let next = match until.and_then(|u| u.duration_since(SystemTime::now()).ok()) {
                    Some(left) => match tokio::time::timeout(left, follow.next()).await {
                        Ok(e) => e,
                        Err(_) => return,
                    },
                    None if until.is_some() => return,
                    None => follow.next().await,
                };
                let Some(e) = next else { return };
                if wanted(e.stream)
                    && in_window(&e)
                    && tx
                        .send_data(entry_bytes(&e, timestamps, tty))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        },
    ))
}

/// The detach keys as Docker spells them: comma-separated, each a single
/// character or `ctrl-X` (X a letter or one of `@[\]^_`).
pub fn detach_keys(spec: Option<&str>) -> Result<Vec<u8>, ApiError> {
    let Some(spec) = spec.filter(|s| !s.is_empty()) else {
        return Ok(vec![0x10, 0x11]);
    };
    let bad = |k: &str| {
        ApiError::bad(format!(
            "detachKeys={spec:?}: {k:?} is not a key (a character or ctrl-<value>)"
        ))
    };
    spec.split(',')
        .map(|k| {
            let lower = k.to_ascii_lowercase();
            match lower.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => {
                    let c = c.as_bytes()[0];
                    match c {
                        b'a'..=b'z' => Ok(c - b'a' + 1),
                        b'@' => Ok(0),
                        b'[' | b'\\' | b']' | b'^' | b'_' => Ok(c - b'@'),
                        _ => Err(bad(k)),
                    }
                }
                Some(_) => Err(bad(k)),
                None if k.len() == 1 => Ok(k.as_bytes()[0]),
                None => Err(bad(k)),
            }
        })
        .collect()
}

/// Finds the detach keys in the input, holding back a partial match
/// until it is known not to be one (as Docker's escape proxy does).
pub struct Escape {
    keys: Vec<u8>,
    matched: usize,
}

impl Escape {
    pub fn new(keys: Vec<u8>) -> Self {
        Self { keys, matched: 0 }
    }

    /// Appends to `out` what goes on to the container; true when the
    /// keys were typed (nothing after them is passed on).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if self.keys.get(self.matched) == Some(&b) {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return true;
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if self.keys.first() == Some(&b) {
                self.matched = 1;
                if self.keys.len() == 1 {
                    return true;
                }
            } else {
                out.push(b);
            }
        }
        false
    }
}

/// `attach`: the container's output from now until its next exit (what
/// `docker run` without `-d` reads; it attaches before it starts the
/// container), and with `stdin=1` the client's input into the
/// container's. `logs=1` sends what it printed before first.
pub fn attach(engine: &Arc<Engine>, req: Request<Incoming>, id: &str, q: &Query) -> ApiResult {
    let wanted = streams_wanted(q)?;
    let stream = flag(q, "stream");
    let snap = engine.inspect(id)?;
    let api = snap.record.api;
    let tty = api.tty;
    let keys = detach_keys(q.get("detachKeys").map(String::as_str))?;
    let input = match flag(q, "stdin") && api.open_stdin {
        true => Some(engine.open_input(id)?),
        false => None,
    };
    let history = if flag(q, "logs") {
        engine.logs(id, None, false)?.0
    } else {
        Vec::new()
    };
    let (live, exits) = engine.subscribe(id)?;
    let mut follow = streams::Follow::new(live, exits);
    let chunk_bytes = move |(s, b): &(Stream, Bytes)| -> Bytes {
        match (tty, s) {
            (true, _) => b.clone(),
            (false, Stream::Stdout) => frame_bytes(1, b),
            (false, Stream::Stderr) => frame_bytes(2, b),
        }
    };
    if !streams::wants_upgrade(&req) {
        // A plain request (an old client, curl): the output as a streamed
        // body; there is no way to send input.
        let head: Vec<u8> = history
            .iter()
            .filter(|e| wanted(e.stream))
            .flat_map(|e| entry_bytes(e, false, tty).to_vec())
            .collect();
        return Ok(streams::later(
            streams::RAW_STREAM,
            move |mut tx| async move {
                if tx.send_data(head.into()).await.is_err() || !stream {
                    return;
                }
                while let Some(c) = follow.next().await {
                    if wanted(c.0) && tx.send_data(chunk_bytes(&c)).await.is_err() {
                        return;
                    }
                }
            },
        ));
    }
    let engine = engine.clone();
    let id = id.to_owned();
    Ok(streams::hijack(req, move |io| async move {
        let (mut rd, mut wr) = tokio::io::split(io);
        let (detached_tx, detached_rx) = tokio::sync::oneshot::channel::<()>();
        let input_task = input.map(|mut sink| {
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
                // The client's input ended: with StdinOnce so does the
                // container's, once what was written is in its hands.
                if api.stdin_once {
                    engine.close_input(&id, sink).await;
                }
            })
        });
        let detached = async move {
            // Only a detach ends the output early; an input that merely
            // ended does not.
            if detached_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(detached);
        for e in history.iter().filter(|e| wanted(e.stream)) {
            if wr.write_all(&entry_bytes(e, false, tty)).await.is_err() {
                return;
            }
        }
        if stream {
            loop {
                tokio::select! {
                    c = follow.next() => match c {
                        Some(c) if wanted(c.0) => {
                            if wr.write_all(&chunk_bytes(&c)).await.is_err() {
                                break;
                            }
                        }
                        Some(_) => {}
                        None => break,
                    },
                    _ = &mut detached => break,
                }
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
        if let Some(t) = input_task {
            t.abort();
        }
    }))
}

/// `resize?h=&w=`: the container's terminal's window size.
pub fn resize(engine: &Arc<Engine>, id: &str, q: &Query) -> ApiResult {
    let (rows, cols) = window_size(q)?;
    if !engine.inspect(id)?.record.api.tty {
        return Err(ApiError::new(
            409,
            format!("container {id} has no terminal to resize (it was not created with -t)"),
        ));
    }
    engine.control(id, &Control::Resize { rows, cols })?;
    Ok(super::empty(200))
}

/// `h` and `w` of a resize request.
pub fn window_size(q: &Query) -> Result<(u16, u16), ApiError> {
    let get = |k: &str| {
        let v = q.get(k).map(String::as_str).unwrap_or("");
        v.parse::<u16>()
            .map_err(|_| ApiError::bad(format!("{k}={v:?} is not a window size (0-65535)")))
    };
    Ok((get("h")?, get("w")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn detach_keys_parse_as_docker_spells_them() {
        assert_eq!(detach_keys(None).unwrap(), vec![0x10, 0x11]);
        assert_eq!(detach_keys(Some("ctrl-a,x")).unwrap(), vec![1, b'x']);
        assert_eq!(detach_keys(Some("ctrl-@,ctrl-_")).unwrap(), vec![0, 0x1f]);
        let e = detach_keys(Some("ctrl-a,ctrl-ab")).unwrap_err();
        assert!(e.message.contains("\"ctrl-ab\""), "{}", e.message);
    }

    #[test]
    fn the_escape_proxy_holds_back_a_partial_match() {
        let mut esc = Escape::new(vec![0x10, 0x11]);
        let mut out = Vec::new();
        assert!(!esc.feed(b"ab\x10", &mut out));
        assert_eq!(out, b"ab");
        // Not the second key: the held-back one goes on after all.
        assert!(!esc.feed(b"c\x10\x10", &mut out));
        assert_eq!(out, b"ab\x10c\x10");
        assert!(esc.feed(b"\x11zz", &mut out));
        assert_eq!(out, b"ab\x10c\x10");
    }

    #[test]
    fn time_bounds_read_unix_seconds_and_fractions() {
        let t = time_bound(&q(&[("since", "1700000000.5")]), "since").unwrap();
        assert_eq!(
            t,
            Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000))
        );
        assert_eq!(time_bound(&q(&[("since", "0")]), "since").unwrap(), None);
        assert_eq!(time_bound(&q(&[]), "until").unwrap(), None);
        let e = time_bound(&q(&[("until", "yesterday")]), "until").unwrap_err();
        assert!(e.message.contains("until=\"yesterday\""), "{}", e.message);
    }

    #[test]
    fn window_sizes_are_checked() {
        assert_eq!(
            window_size(&q(&[("h", "24"), ("w", "80")])).unwrap(),
            (24, 80)
        );
        assert!(window_size(&q(&[("h", "24")])).is_err());
        assert!(window_size(&q(&[("h", "-1"), ("w", "80")])).is_err());
    }
}
