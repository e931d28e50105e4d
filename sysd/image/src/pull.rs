//! The store's side of a registry pull: verified downloads kept until
//! their image is complete, and the commit that makes the image.
//!
//! A pull fetches each layer blob into `downloads/sha256/<hex>.partial`,
//! hashing it as it arrives; only a blob whose digest and size match is
//! renamed to `downloads/sha256/<hex>`. Those verified downloads survive
//! an interrupted pull (a network cut, the engine killed, a power cut),
//! so pulling again fetches only what is missing. Nothing is listed
//! until [`Store::commit_pull`] has unpacked every layer (checking its
//! diff id) and rewritten the index, exactly as an archive import does.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;

use crate::digest;
use crate::{hex_of, io_err, remove_all, write_atomic, Entry, Error, Loaded, Result, Store};

/// An image a pull has fetched: its config and, bottom first, its layers.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The normalised name it was pulled as (`registry:5000/app:1`);
    /// none for a pull by digest, listed by its repo digest only.
    pub name: Option<String>,
    /// `repo@sha256:...` of the manifest (or of the index it came from).
    pub repo_digest: Option<String>,
    pub config: Vec<u8>,
    pub layers: Vec<PulledLayer>,
}

#[derive(Debug, Clone)]
pub struct PulledLayer {
    /// The blob's digest, as the manifest gives it.
    pub digest: String,
    pub size: u64,
}

impl Pulled {
    fn shown(&self) -> &str {
        self.name
            .as_deref()
            .or(self.repo_digest.as_deref())
            .unwrap_or("the pulled image")
    }
}

/// A layer unpacked ahead of its image's commit (see
/// [`Store::stage_layer`]).
pub struct StagedLayer {
    _dir: tempfile::TempDir,
    path: PathBuf,
    diff_hex: String,
    size: u64,
}

/// How far the commit has got with one layer (index into the manifest's
/// layers), for the progress stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Bytes of the blob read so far while unpacking.
    Extracting {
        read: u64,
        total: u64,
    },
    Done,
}

impl Store {
    fn downloads(&self) -> PathBuf {
        self.root.join("downloads/sha256")
    }

    /// Where a verified download of `digest` is (whether or not it is
    /// there yet), and where its partial download goes.
    pub fn download_paths(&self, digest: &str) -> Result<(PathBuf, PathBuf)> {
        let hex = digest::parse(digest).map_err(Error::Malformed)?;
        let d = self.downloads();
        fs::create_dir_all(&d).map_err(io_err(&d))?;
        Ok((d.join(hex), d.join(format!("{hex}.partial"))))
    }

    /// Partial downloads an interrupted pull left, and verified ones no
    /// pull has come back for in a week (a pull given up on).
    pub(crate) fn clear_partial_downloads(&self) {
        const ABANDONED: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
        for e in fs::read_dir(self.downloads())
            .into_iter()
            .flatten()
            .flatten()
        {
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > ABANDONED);
            if e.file_name().to_string_lossy().ends_with(".partial") || stale {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// Whether the store holds the layer with this diff id (another
    /// image's layer is shared, not fetched again).
    pub fn has_layer(&self, diff_id: &str) -> bool {
        digest::parse(diff_id).is_ok() && self.layer_dir(hex_of(diff_id)).is_dir()
    }

    /// The id an image with this config would have, if the store has it.
    pub fn has_image(&self, config: &[u8]) -> Result<Option<String>> {
        let id = digest::sha256(config);
        let index = self.read_index()?;
        Ok(index.images.iter().any(|e| e.id == id).then_some(id))
    }

    /// The layer archives of an image as the store keeps them (what a
    /// push uploads), bottom first.
    pub fn layer_archives(&self, image: &crate::Image) -> Result<Vec<PathBuf>> {
        image
            .layers
            .iter()
            .map(|dir| {
                let hex = dir.file_name().map(|n| n.to_string_lossy().into_owned());
                let blob = self.layer_blob(hex.as_deref().unwrap_or_default());
                if blob.is_file() {
                    Ok(blob)
                } else {
                    Err(Error::Layer {
                        layer: format!("sha256:{}", hex.unwrap_or_default()),
                        message: format!(
                            "{}: its archive was not kept (imported by an earlier release); load or pull the image again",
                            image.names.first().unwrap_or(&image.id)
                        ),
                    })
                }
            })
            .collect()
    }

    /// The config blob of an image, byte for byte (its digest is the id).
    pub fn config_bytes(&self, image: &crate::Image) -> Result<Vec<u8>> {
        let p = self.config_path(&image.id);
        fs::read(&p).map_err(io_err(&p))
    }

    /// Records that the image is in a registry under `repo_digest`
    /// (after a push).
    pub fn add_repo_digest(&self, id: &str, repo_digest: &str) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.read_index()?;
        let repo = repo_digest.split('@').next().unwrap_or_default();
        if let Some(e) = index.images.iter_mut().find(|e| e.id == id) {
            e.repo_digests
                .retain(|d| d.split('@').next().unwrap_or_default() != repo);
            e.repo_digests.push(repo_digest.to_owned());
            self.write_index(&index)?;
        }
        Ok(())
    }

    /// Unpacks one pulled layer from its verified download into the
    /// store's staging area, checking its diff id, so that a pull can
    /// unpack a layer while it still downloads the next; `commit_pull`
    /// takes it in. Dropped unused, it is removed.
    pub fn stage_layer(
        &self,
        layer: &PulledLayer,
        diff_id: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<StagedLayer> {
        let hex = digest::parse(diff_id).map_err(Error::Malformed)?.to_owned();
        let tmp = self.root.join("tmp");
        let dir = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(&tmp)
            .map_err(io_err(&tmp))?;
        let (blob, _) = self.download_paths(&layer.digest)?;
        let path = dir.path().join("layer");
        let unpacked = unpack_download(&blob, layer, &path, progress)?;
        if unpacked.diff_id != diff_id {
            return Err(Error::Digest {
                blob: format!("{} (uncompressed)", layer.digest),
                expected: diff_id.to_owned(),
                actual: unpacked.diff_id,
            });
        }
        Ok(StagedLayer {
            _dir: dir,
            path,
            diff_hex: hex,
            size: unpacked.size,
        })
    }

    /// Makes the pulled image: every layer the store lacks is unpacked
    /// from its verified download (its diff id checked against the
    /// config), the config written, then the index. On any error what
    /// this commit made is removed again; the downloads stay for the next
    /// attempt, and are removed once their layer is in the store.
    pub fn commit_pull(
        &self,
        pulled: &Pulled,
        staged: Vec<StagedLayer>,
        progress: &mut dyn FnMut(usize, Commit),
    ) -> Result<Loaded> {
        let config: ImageConfiguration = serde_json::from_slice(&pulled.config)
            .map_err(|e| Error::Malformed(format!("{}: image config: {e}", pulled.shown())))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != pulled.layers.len() {
            return Err(Error::Malformed(format!(
                "{}: the manifest lists {} layers and the config {}",
                pulled.shown(),
                pulled.layers.len(),
                diff_ids.len()
            )));
        }
        let id = digest::sha256(&pulled.config);
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let staging = tempfile::Builder::new()
            .prefix("pull-")
            .tempdir_in(self.root.join("tmp"))
            .map_err(io_err(self.root.join("tmp")))?;
        let mut made: Vec<PathBuf> = Vec::new();
        let mut used: Vec<PathBuf> = Vec::new();
        let result = (|| -> Result<Loaded> {
            let mut size = 0;
            let mut layers = Vec::new();
            for (i, (layer, diff_id)) in pulled.layers.iter().zip(diff_ids).enumerate() {
                let hex = digest::parse(diff_id)
                    .map_err(|e| Error::Malformed(format!("{}: config: {e}", pulled.shown())))?
                    .to_owned();
                let dir = self.layer_dir(&hex);
                let pre = staged.iter().position(|st| st.diff_hex == hex);
                if dir.is_dir() {
                    size += crate::dir_size(&dir);
                } else {
                    let (blob, _) = self.download_paths(&layer.digest)?;
                    let (tmp, unpacked_size) = match pre {
                        // Unpacked already; its staging directory goes
                        // when `staged` does, after the rename.
                        Some(k) => (staged[k].path.clone(), staged[k].size),
                        None => {
                            let tmp = staging.path().join(format!("layer-{hex}"));
                            let unpacked = unpack_download(&blob, layer, &tmp, &mut |read| {
                                progress(
                                    i,
                                    Commit::Extracting {
                                        read,
                                        total: layer.size,
                                    },
                                )
                            })?;
                            if unpacked.diff_id != *diff_id {
                                return Err(Error::Digest {
                                    blob: format!("{} (uncompressed)", layer.digest),
                                    expected: diff_id.clone(),
                                    actual: unpacked.diff_id,
                                });
                            }
                            (tmp, unpacked.size)
                        }
                    };
                    fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
                    made.push(dir);
                    size += unpacked_size;
                    let kept = self.layer_blob(&hex);
                    if !kept.exists() {
                        fs::hard_link(&blob, &kept).map_err(io_err(&kept))?;
                        made.push(kept);
                    }
                    used.push(blob);
                }
                progress(i, Commit::Done);
                layers.push(hex);
            }
            let mut index = self.read_index()?;
            let names: Vec<String> = pulled.name.iter().cloned().collect();
            // A name moves to the image that now carries it.
            for other in &mut index.images {
                other.names.retain(|n| !names.contains(n));
            }
            match index.images.iter_mut().find(|e| e.id == id) {
                Some(e) => {
                    for n in &names {
                        if !e.names.contains(n) {
                            e.names.push(n.clone());
                        }
                    }
                    if let Some(d) = &pulled.repo_digest {
                        if !e.repo_digests.contains(d) {
                            e.repo_digests.push(d.clone());
                        }
                    }
                }
                None => index.images.push(Entry {
                    id: id.clone(),
                    names: names.clone(),
                    layers,
                    size,
                    created: config.created().clone(),
                    repo_digests: pulled.repo_digest.iter().cloned().collect(),
                    parent: None,
                }),
            }
            write_atomic(&self.config_path(&id), &pulled.config)?;
            self.write_index(&index)?;
            Ok(Loaded {
                id: id.clone(),
                names,
            })
        })();
        match &result {
            Ok(_) => {
                for blob in &used {
                    let _ = fs::remove_file(blob);
                }
            }
            Err(_) => {
                for p in &made {
                    let _ = remove_all(p);
                }
            }
        }
        result
    }
}

/// Unpacks a verified download, reporting bytes read. The blob is not
/// hashed again: its content is checked by the diff id (and gzip's own
/// CRC), so a blob changed on disk since is refused all the same.
fn unpack_download(
    blob: &Path,
    layer: &PulledLayer,
    dest: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<crate::Unpacked> {
    let f = fs::File::open(blob).map_err(io_err(blob))?;
    let mut raw = Counting {
        inner: f,
        read: 0,
        reported: 0,
        progress,
    };
    let unpacked = crate::unpack_layer(&mut raw, dest).map_err(|message| Error::Layer {
        layer: layer.digest.clone(),
        message,
    })?;
    std::io::copy(&mut raw, &mut std::io::sink()).map_err(io_err(blob))?;
    let size = raw.read;
    if size != layer.size {
        return Err(Error::Size {
            blob: layer.digest.clone(),
            expected: layer.size,
            actual: size,
        });
    }
    Ok(unpacked)
}

/// Counts bytes read, reporting every 512 KiB or so.
struct Counting<'a, R> {
    inner: R,
    read: u64,
    reported: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read - self.reported >= 512 << 10 || (n == 0 && self.read != self.reported) {
            self.reported = self.read;
            (self.progress)(self.read);
        }
        Ok(n)
    }
}
