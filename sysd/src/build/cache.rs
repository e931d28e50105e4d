//! The layer cache: which image a step made before, keyed by what
//! Docker's classic builder compares (the parent image, the step's
//! history text, and what else decides its result: the hash of what a
//! `COPY` copies, the config a metadata step leaves). A hit reuses that
//! image, so a rebuild with nothing changed runs no step.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::BuildError;

/// One build cache for the engine: builds may run side by side.
static CACHE_LOCK: Mutex<()> = Mutex::new(());

pub fn key(parent: Option<&str>, created_by: &str, extra: &str) -> String {
    let mut h = Sha256::new();
    h.update(parent.unwrap_or("scratch").as_bytes());
    h.update([0]);
    h.update(created_by.as_bytes());
    h.update([0]);
    h.update(extra.as_bytes());
    hex::encode(h.finalize())
}

pub struct Cache {
    pub path: PathBuf,
}

impl Cache {
    fn read(&self) -> BTreeMap<String, String> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let _g = CACHE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        self.read().get(key).cloned()
    }

    /// Written whole to a new file and renamed over: a crash leaves the
    /// old cache or the new one.
    pub fn put(
        &self,
        key: &str,
        image: &str,
        live: impl Fn(&str) -> bool,
    ) -> Result<(), BuildError> {
        let _g = CACHE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = self.read();
        // Entries whose images are gone (removed, pruned) go with them.
        map.retain(|_, v| live(v));
        map.insert(key.to_owned(), image.to_owned());
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&map).map_err(|e| BuildError::new(e.to_string()))?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| BuildError::new(format!("{}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_changes_with_each_input() {
        let a = key(Some("sha256:1"), "/bin/sh -c make", "");
        assert_eq!(a, key(Some("sha256:1"), "/bin/sh -c make", ""));
        assert_ne!(a, key(Some("sha256:2"), "/bin/sh -c make", ""));
        assert_ne!(a, key(Some("sha256:1"), "|1 V=2 /bin/sh -c make", ""));
        assert_ne!(a, key(Some("sha256:1"), "/bin/sh -c make", "stage"));
        assert_ne!(a, key(None, "/bin/sh -c make", ""));
    }

    #[test]
    fn the_cache_forgets_images_that_are_gone() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache {
            path: d.path().join("build-cache.json"),
        };
        c.put("k1", "sha256:a", |_| true).unwrap();
        c.put("k2", "sha256:b", |id| id != "sha256:a").unwrap();
        assert_eq!(c.get("k1"), None);
        assert_eq!(c.get("k2").as_deref(), Some("sha256:b"));
    }
}
