//! Corral's OCI image store.
//!
//! Layout below the store's root:
//!
//! ```text
//! index.json              names and layers of every image (atomic rewrite)
//! blobs/sha256/<hex>      image configs; the image id is the config digest
//! layers/<hex>/           one unpacked layer, named by its diff id, in
//!                         overlayfs format (whiteouts are 0:0 char devices,
//!                         opaque dirs carry trusted.overlay.opaque=y)
//! layer-blobs/<hex>       the layer as the archive carried it (compressed
//!                         or not), by diff id: what `save` writes out
//! tmp/                    imports in progress; emptied when the store opens
//! downloads/sha256/<hex>  verified blobs of a pull not yet complete, by
//!                         their digest: a pull resumes from them (see
//!                         `pull`); `<hex>.partial` is one being fetched
//! ```
//!
//! An import stages the archive, verifies every blob (digest and size) and
//! every layer's diff id while unpacking it, keeps the layer's blob, and
//! only then writes the config and the index. On any error the layers it made are removed, so a
//! failed import leaves the store as it was.

mod archive;
pub mod build;
mod commit;
mod digest;
mod layer_file;
mod pull;
pub mod reference;
mod save;
mod unpack;

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

pub use commit::diff_tar;
pub use layer_file::{find_file, LayerFile};
pub use pull::{Commit, Pulled, PulledLayer, StagedLayer};
pub use unpack::{unpack_layer, Unpacked};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("image {0} is in use by a container; remove the container first")]
    InUse(String),
    #[error("conflict: unable to delete {0} - image has dependent child images")]
    HasChildren(String),
    #[error("{0:?} matches several images; give more of the id")]
    Ambiguous(String),
    #[error("invalid image archive: {0}")]
    Malformed(String),
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    #[error("blob {blob}: digest mismatch: expected {expected}, got {actual}")]
    Digest {
        blob: String,
        expected: String,
        actual: String,
    },
    #[error("blob {blob}: size mismatch: expected {expected} bytes, got {actual}")]
    Size {
        blob: String,
        expected: u64,
        actual: u64,
    },
    #[error("layer {layer}: {message}")]
    Layer { layer: String, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// Labels Corral's system images carry (written by `corral-mkimage
/// --recipe`, read by sysd).
pub mod labels {
    /// The image's default service definition (TOML).
    pub const SERVICE: &str = "io.corral.service";
    /// Why the definition grants what it does: `key: reason` a line.
    pub const REASONS: &str = "io.corral.reasons";
    /// The Debian packages (`name=version`) files were taken from.
    pub const PACKAGES: &str = "io.corral.packages";
}

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:<hex>` of the config.
    pub id: String,
    /// `name:tag` references, normalised (see [`reference::normalize`]).
    pub names: Vec<String>,
    pub config: ImageConfiguration,
    /// Unpacked layer directories, bottom first.
    pub layers: Vec<PathBuf>,
    /// Uncompressed size of all layers.
    pub size: u64,
    pub created: Option<String>,
    /// `repo@sha256:...` of the manifests it was pulled by.
    pub repo_digests: Vec<String>,
    /// The image a build step made it from.
    pub parent: Option<String>,
}

impl Image {
    /// The value of a label of the image's config.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.config
            .config()
            .as_ref()
            .and_then(|c| c.labels().as_ref())
            .and_then(|l| l.get(key))
            .map(String::as_str)
    }
}

/// One image an import brought in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub id: String,
    pub names: Vec<String>,
}

/// What `remove` did, in Docker's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    images: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    id: String,
    names: Vec<String>,
    /// Diff ids (hex), bottom first.
    layers: Vec<String>,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    repo_digests: Vec<String>,
    /// The image a build made this one from (`docker build`'s steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
}

pub struct Store {
    root: PathBuf,
    /// Serialises imports and removals; readers go without it because
    /// the index is only ever replaced by rename.
    lock: Mutex<()>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, and clears what an
    /// interrupted import left.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for d in [
            "blobs/sha256",
            "layers",
            "layer-blobs",
            "tmp",
            "downloads/sha256",
        ] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let store = Store {
            root,
            lock: Mutex::new(()),
        };
        store.clear_tmp();
        store.clear_partial_downloads();
        store.collect_garbage()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn clear_tmp(&self) {
        let tmp = self.root.join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let _ = remove_all(&e.path());
            }
        }
    }

    /// Removes layer dirs and configs no image refers to: what a crash
    /// between unpacking and writing the index left.
    fn collect_garbage(&self) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let index = self.read_index()?;
        let layers: HashSet<&str> = index
            .images
            .iter()
            .flat_map(|i| i.layers.iter().map(String::as_str))
            .collect();
        let configs: HashSet<&str> = index.images.iter().map(|i| hex_of(&i.id)).collect();
        for (dir, keep) in [
            ("layers", &layers),
            ("layer-blobs", &layers),
            ("blobs/sha256", &configs),
        ] {
            let dir = self.root.join(dir);
            for e in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if !keep.contains(name.as_ref()) {
                    log::info!("image store: removing unreferenced {}", e.path().display());
                    let _ = remove_all(&e.path());
                }
            }
        }
        Ok(())
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn read_index(&self) -> Result<Index> {
        let p = self.index_path();
        match fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Malformed(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(io_err(&p)(e)),
        }
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let p = self.index_path();
        let json = serde_json::to_vec_pretty(index).map_err(|e| Error::Io {
            path: p.clone(),
            source: io::Error::other(e),
        })?;
        write_atomic(&p, &json)
    }

    fn layer_dir(&self, diff_hex: &str) -> PathBuf {
        self.root.join("layers").join(diff_hex)
    }

    /// The layer's blob as imported; absent for a layer an earlier
    /// release imported.
    fn layer_blob(&self, diff_hex: &str) -> PathBuf {
        self.root.join("layer-blobs").join(diff_hex)
    }

    fn config_path(&self, id: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex_of(id))
    }

    fn image(&self, e: &Entry) -> Result<Image> {
        let p = self.config_path(&e.id);
        let bytes = fs::read(&p).map_err(io_err(&p))?;
        let config: ImageConfiguration = serde_json::from_slice(&bytes)
            .map_err(|err| Error::Malformed(format!("{}: {err}", p.display())))?;
        Ok(Image {
            id: e.id.clone(),
            names: e.names.clone(),
            config,
            layers: e.layers.iter().map(|l| self.layer_dir(l)).collect(),
            size: e.size,
            created: e.created.clone(),
            repo_digests: e.repo_digests.clone(),
            parent: e.parent.clone(),
        })
    }

    pub fn list(&self) -> Result<Vec<Image>> {
        self.read_index()?
            .images
            .iter()
            .map(|e| self.image(e))
            .collect()
    }

    /// Finds an image by name (`busybox`, `busybox:latest`), by id
    /// (`sha256:<hex>`) or by a unique prefix of the id's hex.
    pub fn get(&self, reference: &str) -> Result<Image> {
        let index = self.read_index()?;
        let i = find(&index, reference)?;
        self.image(&index.images[i.0])
    }

    /// Imports every image in an oci-archive or docker-archive tarball.
    pub fn load(&self, archive: &Path) -> Result<Vec<Loaded>> {
        let f = fs::File::open(archive).map_err(io_err(archive))?;
        self.load_reader(io::BufReader::new(f))
    }

    pub fn load_reader(&self, reader: impl Read) -> Result<Vec<Loaded>> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let staging = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(self.root.join("tmp"))
            .map_err(io_err(self.root.join("tmp")))?;
        let archive_dir = staging.path().join("archive");
        archive::stage(reader, &archive_dir)?;
        let images = archive::read(&archive_dir)?;
        if images.is_empty() {
            return Err(Error::Malformed("the archive holds no image".into()));
        }

        let mut index = self.read_index()?;
        let known: HashSet<String> = index
            .images
            .iter()
            .flat_map(|i| i.layers.iter().cloned())
            .collect();
        // Layers this import made, to remove again if it fails.
        let mut made: Vec<PathBuf> = Vec::new();
        let result = (|| -> Result<Vec<Loaded>> {
            let mut loaded = Vec::new();
            let mut configs: Vec<(String, Vec<u8>)> = Vec::new();
            for img in &images {
                let mut size = 0;
                let mut layers = Vec::new();
                for layer in &img.layers {
                    let hex = hex_of(&layer.diff_id).to_owned();
                    let dir = self.layer_dir(&hex);
                    if known.contains(&hex) || made.contains(&dir) {
                        size += dir_size(&dir);
                    } else {
                        let tmp = staging.path().join(format!("layer-{hex}"));
                        let unpacked = archive::unpack_verified(&archive_dir, layer, &tmp)?;
                        fs::rename(&tmp, &dir).map_err(io_err(&dir))?;
                        made.push(dir);
                        size += unpacked.size;
                    }
                    // The blob as verified, for `save`: moved out of the
                    // staging area, which goes with this import anyway.
                    let blob = self.layer_blob(&hex);
                    if !blob.exists() {
                        let staged = archive::staged_path(&archive_dir, layer)?;
                        fs::rename(&staged, &blob).map_err(io_err(&blob))?;
                        made.push(blob);
                    }
                    layers.push(hex);
                }
                let id = img.config_digest.clone();
                configs.push((id.clone(), img.config_bytes.clone()));
                let names: Vec<String> = img.names.clone();
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
                    }
                    None => index.images.push(Entry {
                        id: id.clone(),
                        names: names.clone(),
                        layers,
                        size,
                        created: img.created.clone(),
                        repo_digests: Vec::new(),
                        parent: None,
                    }),
                }
                loaded.push(Loaded { id, names });
            }
            for (id, bytes) in &configs {
                write_atomic(&self.config_path(id), bytes)?;
            }
            self.write_index(&index)?;
            Ok(loaded)
        })();
        if result.is_err() {
            for dir in &made {
                let _ = remove_all(dir);
            }
        }
        result
    }

    /// Gives the image `reference` names the name `name` too (`docker
    /// tag`), taking it from the image that had it. Returns the image id.
    pub fn tag(&self, reference: &str, name: &str) -> Result<String> {
        let name = reference::normalize(name).map_err(Error::InvalidReference)?;
        if name.contains('@') {
            return Err(Error::InvalidReference(format!(
                "{name}: a digest is not a tag"
            )));
        }
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.read_index()?;
        let (i, _) = find(&index, reference)?;
        for e in &mut index.images {
            e.names.retain(|n| *n != name);
        }
        index.images[i].names.push(name);
        self.write_index(&index)?;
        Ok(index.images[i].id.clone())
    }

    /// Removes a name, or the image when `reference` is its id or its
    /// only name. Refuses while `in_use` says a container uses it.
    pub fn remove(&self, reference: &str, in_use: &dyn Fn(&Image) -> bool) -> Result<Vec<Removed>> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut index = self.read_index()?;
        let (i, by_name) = find(&index, reference)?;
        let entry = index.images[i].clone();
        if let Some(name) = by_name.filter(|_| entry.names.len() > 1) {
            index.images[i].names.retain(|n| *n != name);
            self.write_index(&index)?;
            return Ok(vec![Removed::Untagged(name)]);
        }
        let image = self.image(&entry)?;
        if in_use(&image) {
            return Err(Error::InUse(reference.to_owned()));
        }
        if index
            .images
            .iter()
            .any(|e| e.parent.as_deref() == Some(&entry.id))
        {
            return Err(Error::HasChildren(reference.to_owned()));
        }
        let mut out: Vec<Removed> = entry.names.iter().cloned().map(Removed::Untagged).collect();
        let mut gone = vec![entry];
        // The build steps it was made from go with it, as with Docker's
        // rmi: each untagged parent no other image or container uses.
        while let Some(parent) = gone.last().and_then(|e| e.parent.clone()) {
            let Some(p) = index.images.iter().position(|e| e.id == parent) else {
                break;
            };
            let other_children = index.images.iter().any(|e| {
                e.parent.as_deref() == Some(&parent) && !gone.iter().any(|g| g.id == e.id)
            });
            let p_entry = index.images[p].clone();
            if !p_entry.names.is_empty() || other_children || in_use(&self.image(&p_entry)?) {
                break;
            }
            gone.push(p_entry);
        }
        let ids: Vec<&str> = gone.iter().map(|e| e.id.as_str()).collect();
        index.images.retain(|e| !ids.contains(&e.id.as_str()));
        self.write_index(&index)?;
        let still: HashSet<&String> = index.images.iter().flat_map(|e| &e.layers).collect();
        for e in &gone {
            for l in &e.layers {
                if !still.contains(l) {
                    let _ = remove_all(&self.layer_dir(l));
                    let _ = fs::remove_file(self.layer_blob(l));
                }
            }
            let _ = fs::remove_file(self.config_path(&e.id));
            out.push(Removed::Deleted(e.id.clone()));
        }
        Ok(out)
    }
}

/// The index position of the image `reference` names, and the name it
/// matched by, if it matched by name.
fn find(index: &Index, reference: &str) -> Result<(usize, Option<String>)> {
    if let Ok(name) = reference::normalize(reference) {
        if let Some(i) = index.images.iter().position(|e| e.names.contains(&name)) {
            return Ok((i, Some(name)));
        }
        // An image pulled by digest is found by its repo digest.
        if name.contains('@') {
            if let Some(i) = index
                .images
                .iter()
                .position(|e| e.repo_digests.contains(&name))
            {
                return Ok((i, None));
            }
        }
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let hex = hex.to_ascii_lowercase();
        let matches: Vec<usize> = index
            .images
            .iter()
            .enumerate()
            .filter(|(_, e)| hex_of(&e.id).starts_with(&hex))
            .map(|(i, _)| i)
            .collect();
        match matches[..] {
            [i] => return Ok((i, None)),
            [] => {}
            _ => return Err(Error::Ambiguous(reference.to_owned())),
        }
    }
    Err(Error::NotFound(reference.to_owned()))
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Temp file, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub(crate) fn remove_all(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The bytes of the files below `dir` (a layer's size, a container's
/// upper dir's).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests;
