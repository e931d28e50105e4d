//! The JSON message stream `docker pull` and `docker push` render:
//! one object a line, `{"status","id","progressDetail","progress"}`, the
//! CLI drawing one line per `id` (a layer's short digest) and a bar from
//! `progressDetail`; an error ends it as `{"errorDetail":{"message"},"error"}`.

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Where progress goes; a closed receiver (the client went away) turns
/// every send into a no-op, and [`Progress::gone`] says so.
#[derive(Clone)]
pub struct Progress {
    tx: Option<mpsc::Sender<Bytes>>,
    /// Sends nothing, but still tells when the client went away (`docker
    /// build -q`).
    muted: bool,
}

impl Progress {
    pub fn new(tx: mpsc::Sender<Bytes>) -> Progress {
        Progress {
            tx: Some(tx),
            muted: false,
        }
    }

    /// Progress nobody reads (the engine's own pulls).
    pub fn none() -> Progress {
        Progress {
            tx: None,
            muted: false,
        }
    }

    /// The same client, told nothing.
    pub fn muted(&self) -> Progress {
        Progress {
            tx: self.tx.clone(),
            muted: true,
        }
    }

    pub fn gone(&self) -> bool {
        self.tx.as_ref().is_some_and(|t| t.is_closed())
    }

    /// Resolves when the client went away (never, for progress nobody
    /// reads).
    pub async fn closed(&self) {
        match &self.tx {
            Some(tx) => tx.closed().await,
            None => std::future::pending().await,
        }
    }

    pub async fn send(&self, v: Value) {
        if self.muted {
            return;
        }
        if let Some(tx) = &self.tx {
            let mut line = v.to_string();
            line.push('\n');
            let _ = tx.send(Bytes::from(line)).await;
        }
    }

    /// The same, from a blocking thread (the layer commit).
    pub fn blocking_send(&self, v: Value) {
        if self.muted {
            return;
        }
        if let Some(tx) = &self.tx {
            let mut line = v.to_string();
            line.push('\n');
            let _ = tx.blocking_send(Bytes::from(line));
        }
    }

    pub async fn status(&self, status: &str) {
        self.send(json!({ "status": status })).await
    }

    pub async fn layer(&self, id: &str, status: &str) {
        self.send(json!({ "status": status, "progressDetail": {}, "id": id }))
            .await
    }

    pub async fn error(&self, message: &str) {
        self.send(json!({ "errorDetail": { "message": message }, "error": message }))
            .await
    }
}

/// A layer's progress line: Docker's bar (`[==>    ]  1.2MB/3.4MB`) in
/// `progress` for clients that print it, the numbers in `progressDetail`.
pub fn bar(id: &str, status: &str, current: u64, total: u64) -> Value {
    json!({
        "status": status,
        "progressDetail": { "current": current, "total": total },
        "progress": bar_text(current, total),
        "id": id,
    })
}

fn bar_text(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let filled = (current.min(total) * WIDTH).checked_div(total).unwrap_or(0) as usize;
    let mut s = String::from("[");
    s.push_str(&"=".repeat(filled));
    if filled < WIDTH as usize {
        s.push('>');
        s.push_str(&" ".repeat(WIDTH as usize - filled - 1));
    }
    s.push(']');
    format!("{s} {:>8}/{}", human(current), human(total))
}

/// Sizes as Docker's progress prints them (decimal units).
fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        let num = format!("{v:.2}");
        let num = num.trim_end_matches('0').trim_end_matches('.');
        format!("{num}{}", units[u])
    }
}

/// A digest's first 12 hex digits: the id a layer's line carries.
pub fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map(|(_, h)| h).unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_ids() {
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        let b = bar("x", "Downloading", 500, 1000);
        assert_eq!(b["progressDetail"]["current"], 500);
        let text = b["progress"].as_str().unwrap();
        assert!(text.starts_with(&format!("[{}>", "=".repeat(25))), "{text}");
        assert!(text.ends_with("500B/1kB"), "{text}");
        assert!(bar_text(10, 10).starts_with(&format!("[{}]", "=".repeat(50))));
    }
}
