//! Container output in size-capped, rotated files.
//!
//! One JSON object per line, in Docker's `json-file` format
//! (`{"log":"text\n","stream":"stdout","time":"RFC 3339"}`), so the files
//! are readable with the usual tools. When the file would grow past the
//! cap it is renamed to `.1` (older ones shift up to `.<keep>`, the oldest
//! is dropped) and a new one starts: a chatty service costs at most
//! `max_size * (keep + 1)` bytes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub const DEFAULT_MAX_SIZE: u64 = 1 << 20;
pub const DEFAULT_KEEP: u32 = 2;
/// A line longer than this is split, so one runaway line cannot hold
/// unbounded memory.
const MAX_LINE: usize = 16 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

/// The writer side: assembles lines per stream and appends them.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    pub fn new(path: impl Into<PathBuf>, max_size: u64, keep: u32) -> Self {
        Self {
            path: path.into(),
            max_size: max_size.max(1024),
            keep,
            file: None,
            size: 0,
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// Feeds raw output; complete lines are written and returned (for
    /// followers), a trailing partial line waits for its end.
    pub fn feed(&mut self, stream: Stream, data: &[u8]) -> io::Result<Vec<Entry>> {
        let idx = stream as usize;
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let buf = &mut self.partial[idx];
            let room = MAX_LINE - buf.len();
            let take = match rest.iter().position(|b| *b == b'\n') {
                Some(i) if i < room => i + 1,
                _ => rest.len().min(room),
            };
            buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if buf.last() == Some(&b'\n') || buf.len() >= MAX_LINE {
                let line = std::mem::take(buf);
                out.push(self.write_line(stream, &line)?);
            }
        }
        Ok(out)
    }

    /// Writes out whatever partial lines are buffered (at container exit).
    pub fn flush_partial(&mut self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.partial[stream as usize]);
            if !line.is_empty() {
                out.push(self.write_line(stream, &line)?);
            }
        }
        Ok(out)
    }

    fn write_line(&mut self, stream: Stream, line: &[u8]) -> io::Result<Entry> {
        let entry = Entry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            time: humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
        };
        let mut json = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        json.push(b'\n');
        if self.file.is_none() {
            self.open()?;
        }
        if self.size > 0 && self.size + json.len() as u64 > self.max_size {
            self.rotate()?;
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(&json)?;
            self.size += json.len() as u64;
        }
        Ok(entry)
    }

    fn open(&mut self) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            for i in (1..self.keep).rev() {
                let from = rotated(&self.path, i);
                if from.exists() {
                    fs::rename(&from, rotated(&self.path, i + 1))?;
                }
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.open()
    }
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// Every entry still on disk, oldest first, or the last `tail` of them.
pub fn read(path: &Path, keep: u32, tail: Option<usize>) -> io::Result<Vec<Entry>> {
    let mut files: Vec<PathBuf> = (1..=keep).rev().map(|i| rotated(path, i)).collect();
    files.push(path.to_owned());
    let mut entries = std::collections::VecDeque::new();
    for f in files {
        let file = match File::open(&f) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines() {
            let line = line?;
            // A line cut by a crash mid-write is skipped, not fatal.
            if let Ok(e) = serde_json::from_str::<Entry>(&line) {
                entries.push_back(e);
                if let Some(n) = tail {
                    if entries.len() > n {
                        entries.pop_front();
                    }
                }
            }
        }
    }
    Ok(entries.into())
}

/// Deletes the log and its rotations.
pub fn remove(path: &Path, keep: u32) {
    let _ = fs::remove_file(path);
    for i in 1..=keep {
        let _ = fs::remove_file(rotated(path, i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.log.as_str()).collect()
    }

    #[test]
    fn lines_are_assembled_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = LogWriter::new(&p, DEFAULT_MAX_SIZE, 2);
        assert!(w.feed(Stream::Stdout, b"hel").unwrap().is_empty());
        let e = w.feed(Stream::Stderr, b"oops\n").unwrap();
        assert_eq!((e[0].log.as_str(), e[0].stream), ("oops\n", Stream::Stderr));
        let e = w.feed(Stream::Stdout, b"lo\nworld\npart").unwrap();
        assert_eq!(lines(&e), ["hello\n", "world\n"]);
        assert_eq!(lines(&w.flush_partial().unwrap()), ["part"]);
        let all = read(&p, 2, None).unwrap();
        assert_eq!(lines(&all), ["oops\n", "hello\n", "world\n", "part"]);
        assert_eq!(lines(&read(&p, 2, Some(2)).unwrap()), ["world\n", "part"]);
        // Docker's json-file shape.
        let raw = fs::read_to_string(&p).unwrap();
        assert!(
            raw.starts_with("{\"log\":\"oops\\n\",\"stream\":\"stderr\",\"time\":\""),
            "{raw}"
        );
    }

    #[test]
    fn rotation_caps_the_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = LogWriter::new(&p, 4096, 2);
        for i in 0..1000 {
            w.feed(Stream::Stdout, format!("line {i:04}\n").as_bytes())
                .unwrap();
        }
        let total: u64 = [p.clone(), rotated(&p, 1), rotated(&p, 2)]
            .iter()
            .map(|f| fs::metadata(f).unwrap().len())
            .sum();
        assert!(total <= 3 * 4096, "{total}");
        assert!(!rotated(&p, 3).exists());
        let all = read(&p, 2, None).unwrap();
        assert_eq!(all.last().unwrap().log, "line 0999\n");
        // Contiguous: nothing lost between the files that remain.
        let first: usize = all[0].log[5..9].parse().unwrap();
        assert_eq!(all.len(), 1000 - first);
        // A new writer continues the existing file.
        let mut w = LogWriter::new(&p, 4096, 2);
        w.feed(Stream::Stdout, b"after restart\n").unwrap();
        assert_eq!(read(&p, 2, Some(1)).unwrap()[0].log, "after restart\n");
        remove(&p, 2);
        assert!(!p.exists() && !rotated(&p, 1).exists());
    }

    #[test]
    fn long_lines_are_split_and_bad_bytes_survive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = LogWriter::new(&p, DEFAULT_MAX_SIZE, 1);
        let e = w
            .feed(Stream::Stdout, &vec![b'x'; MAX_LINE * 2 + 10])
            .unwrap();
        assert_eq!(e.len(), 2);
        assert!(e.iter().all(|e| e.log.len() == MAX_LINE));
        // The 10 bytes left over start the next line.
        w.feed(Stream::Stdout, b"\xff\xfe\n").unwrap();
        let all = read(&p, 1, None).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].log, format!("{}\u{fffd}\u{fffd}\n", "x".repeat(10)));
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = LogWriter::new(&p, DEFAULT_MAX_SIZE, 1);
        w.feed(Stream::Stdout, b"ok\n").unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"log\":\"cut").unwrap();
        assert_eq!(lines(&read(&p, 1, None).unwrap()), ["ok\n"]);
    }
}
