//! `/containers/{id}/archive`, what `docker cp` calls: `HEAD` stats a
//! path, `GET` answers it as a tar archive (with the stat in a header),
//! `PUT` unpacks a tar archive into a directory. The work is in
//! [`crate::archive`], on a thread the engine gives the container's root
//! ([`Engine::in_root`]); archives stream both ways through channels, so
//! neither is held in memory or spooled to disk.

use std::io::{self, Read};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response};
use tokio::sync::{mpsc, oneshot};

use super::streams::{ChannelBody, ChannelWriter};
use super::{flag, parse_query, ApiError, ApiResult, Body};
use crate::archive::{self, ArchiveError, ExtractOptions, PathStat};
use crate::engine::Engine;

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

pub async fn route(engine: &Arc<Engine>, req: Request<Incoming>, id: &str) -> ApiResult {
    let q = parse_query(req.uri().query());
    let path = match q.get("path").filter(|p| !p.is_empty()) {
        Some(p) => p.clone(),
        None => return Err(ApiError::bad("the path parameter is required")),
    };
    let name = engine
        .inspect(id)
        .map(|s| s.record.name)
        .unwrap_or_else(|_| id.to_owned());
    let not_found = |e: ArchiveError| match e {
        ArchiveError::NotFound(_) => ApiError::new(
            404,
            format!("Could not find the file {path} in container {name}"),
        ),
        ArchiveError::Invalid(m) => ApiError::bad(m),
        e @ ArchiveError::ReadOnly(_) => ApiError::new(403, e.to_string()),
        ArchiveError::Io(m) => ApiError::internal(m),
    };
    match *req.method() {
        Method::HEAD => {
            let p = path.clone();
            let stat = engine
                .in_root(id, None, move |root| archive::stat(root, &p))
                .await?
                .map_err(not_found)?;
            let mut r = super::empty(200);
            set_stat(&mut r, &stat)?;
            Ok(r)
        }
        Method::GET => {
            let (stat_tx, stat_rx) = oneshot::channel();
            let (tx, rx) = mpsc::channel::<Bytes>(16);
            let engine = engine.clone();
            let (id, p) = (id.to_owned(), path.clone());
            let copy = tokio::spawn(async move {
                engine
                    .in_root(&id, Some("archive-path"), move |root| {
                        let stat = archive::stat(root, &p);
                        let found = stat.is_ok();
                        let _ = stat_tx.send(stat);
                        if found {
                            archive::write_tar(root, &p, ChannelWriter(tx))
                        } else {
                            Ok(())
                        }
                    })
                    .await
            });
            let stat = match stat_rx.await {
                Ok(stat) => stat.map_err(not_found)?,
                // The engine failed before it could look.
                Err(_) => {
                    return Err(match copy.await {
                        Ok(Err(e)) => e.into(),
                        _ => ApiError::internal("the copy ended without an answer"),
                    })
                }
            };
            let mut r = Response::new(BodyExt::boxed(ChannelBody(rx)));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-tar"),
            );
            set_stat(&mut r, &stat)?;
            Ok(r)
        }
        Method::PUT => {
            let opts = ExtractOptions {
                copy_uid_gid: flag(&q, "copyUIDGID"),
                no_overwrite_dir_non_dir: flag(&q, "noOverwriteDirNonDir"),
            };
            let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
            let p = path.clone();
            let extract = engine.in_root(id, Some("extract-to-dir"), move |root| {
                archive::extract(root, &p, ChannelReader::new(rx), opts)
            });
            let mut body = req.into_body();
            let feed = async move {
                while let Some(frame) = body.frame().await {
                    let chunk = match frame {
                        Ok(f) => match f.into_data() {
                            Ok(d) => Ok(d),
                            Err(_) => continue,
                        },
                        Err(e) => Err(io::Error::other(format!("reading the upload: {e}"))),
                    };
                    let failed = chunk.is_err();
                    // The extraction stopped (an error): it answers.
                    if tx.send(chunk).await.is_err() || failed {
                        break;
                    }
                }
            };
            let (result, ()) = tokio::join!(extract, feed);
            result?.map_err(not_found)?;
            Ok(super::empty(200))
        }
        ref m => Err(super::no_route(m, "archive")),
    }
}

fn set_stat(r: &mut Response<Body>, stat: &PathStat) -> Result<(), ApiError> {
    let json = serde_json::to_vec(stat).map_err(ApiError::internal)?;
    let value = base64::engine::general_purpose::STANDARD.encode(json);
    r.headers_mut().insert(
        STAT_HEADER,
        HeaderValue::from_str(&value).map_err(ApiError::internal)?,
    );
    Ok(())
}

/// The uploaded archive as it arrives, for the extracting thread.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
