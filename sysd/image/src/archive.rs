//! Reading image archives: `oci-archive` (an OCI image layout in a tar)
//! and `docker-archive` (what `docker save` writes: `manifest.json` with
//! configs and layers by path).
//!
//! The archive is first staged to a directory (regular files only; its
//! symlinks, which old `docker save` uses for repeated layers, are kept
//! as a map and resolved lexically inside the archive), then every blob is
//! checked against its descriptor.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;

use crate::digest::{self, Hashing};
use crate::unpack::{unpack_layer, Unpacked};
use crate::{io_err, reference, Error, Result};

const SYMLINKS: &str = ".corral-symlinks.json";

/// One image found in an archive, verified except for its layers.
#[derive(Debug)]
pub(crate) struct ImageSource {
    pub names: Vec<String>,
    pub config_digest: String,
    pub config_bytes: Vec<u8>,
    pub created: Option<String>,
    pub layers: Vec<LayerSource>,
}

#[derive(Debug)]
pub(crate) struct LayerSource {
    /// Path inside the archive.
    pub path: String,
    /// The blob's digest and size when the archive states them.
    pub blob: Option<(String, Option<u64>)>,
    /// The uncompressed digest the config lists for it.
    pub diff_id: String,
}

/// Extracts the archive's regular files into `dir`.
pub(crate) fn stage(reader: impl Read, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut archive = tar::Archive::new(reader);
    let mut links: HashMap<String, String> = HashMap::new();
    let bad = |e: io::Error| Error::Malformed(format!("reading the archive: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let rel = clean(&path).ok_or_else(|| {
            Error::Malformed(format!("{}: path traversal refused", path.display()))
        })?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let full = dir.join(&rel);
                if let Some(p) = full.parent() {
                    fs::create_dir_all(p).map_err(io_err(p))?;
                }
                let mut f = fs::File::create(&full).map_err(io_err(&full))?;
                io::copy(&mut entry, &mut f).map_err(|e| {
                    Error::Malformed(format!("{}: truncated or unreadable: {e}", rel.display()))
                })?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry.link_name().map_err(bad)?.ok_or_else(|| {
                    Error::Malformed(format!("{}: link without target", rel.display()))
                })?;
                let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                    rel.parent().unwrap_or(Path::new("")).join(&target)
                } else {
                    target.into_owned()
                };
                let resolved = clean(&resolved).ok_or_else(|| {
                    Error::Malformed(format!(
                        "{}: link out of the archive refused",
                        rel.display()
                    ))
                })?;
                links.insert(
                    rel.to_string_lossy().into_owned(),
                    resolved.to_string_lossy().into_owned(),
                );
            }
            _ => {}
        }
    }
    let p = dir.join(SYMLINKS);
    let json = serde_json::to_vec(&links).map_err(|e| Error::Malformed(e.to_string()))?;
    fs::write(&p, json).map_err(io_err(&p))
}

/// Lexical clean; `None` when the path climbs out.
fn clean(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

struct Staged<'a> {
    dir: &'a Path,
    links: HashMap<String, String>,
}

impl Staged<'_> {
    fn open(dir: &Path) -> Result<Staged<'_>> {
        let p = dir.join(SYMLINKS);
        let links = fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Staged { dir, links })
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        let mut name = clean(Path::new(name))
            .ok_or_else(|| Error::Malformed(format!("{name}: path traversal refused")))?
            .to_string_lossy()
            .into_owned();
        for _ in 0..8 {
            match self.links.get(&name) {
                Some(t) => name = t.clone(),
                None => break,
            }
        }
        let p = self.dir.join(&name);
        if !p.is_file() {
            return Err(Error::Malformed(format!(
                "{name}: named by the archive's manifest but missing from it"
            )));
        }
        Ok(p)
    }

    fn exists(&self, name: &str) -> bool {
        self.dir.join(name).is_file()
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.path(name)?;
        fs::read(&p).map_err(io_err(p))
    }

    /// A small blob (manifest, config), checked against its descriptor.
    fn blob(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        let digest = desc.digest().to_string();
        let hex = digest::parse(&digest).map_err(Error::Malformed)?;
        let bytes = self.read(&format!("blobs/sha256/{hex}"))?;
        if bytes.len() as u64 != desc.size() {
            return Err(Error::Size {
                blob: digest,
                expected: desc.size(),
                actual: bytes.len() as u64,
            });
        }
        let actual = digest::sha256(&bytes);
        if actual != digest {
            return Err(Error::Digest {
                blob: digest,
                expected: desc.digest().to_string(),
                actual,
            });
        }
        Ok(bytes)
    }
}

/// The images in a staged archive.
pub(crate) fn read(dir: &Path) -> Result<Vec<ImageSource>> {
    let staged = Staged::open(dir)?;
    if staged.exists("manifest.json") && !staged.exists("index.json") {
        read_docker(&staged)
    } else if staged.exists("index.json") {
        read_oci(&staged)
    } else {
        Err(Error::Malformed(
            "neither index.json (oci-archive) nor manifest.json (docker-archive) in the archive"
                .into(),
        ))
    }
}

fn json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Malformed(format!("{what}: {e}")))
}

fn config_of(what: &str, bytes: &[u8]) -> Result<ImageConfiguration> {
    json(what, bytes)
}

fn names(list: impl IntoIterator<Item = String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for n in list {
        let n = reference::normalize(&n).map_err(Error::Malformed)?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

fn read_oci(staged: &Staged<'_>) -> Result<Vec<ImageSource>> {
    let index: ImageIndex = json("index.json", &staged.read("index.json")?)?;
    let mut out = Vec::new();
    for desc in index.manifests() {
        collect_oci(staged, desc, Vec::new(), 0, &mut out)?;
    }
    // The same image listed once per tag: merge.
    let mut merged: Vec<ImageSource> = Vec::new();
    for img in out {
        match merged
            .iter_mut()
            .find(|m| m.config_digest == img.config_digest)
        {
            Some(m) => {
                for n in img.names {
                    if !m.names.contains(&n) {
                        m.names.push(n);
                    }
                }
            }
            None => merged.push(img),
        }
    }
    Ok(merged)
}

fn ref_names(desc: &Descriptor) -> Vec<String> {
    let Some(a) = desc.annotations() else {
        return Vec::new();
    };
    if let Some(n) = a.get("io.containerd.image.name") {
        return vec![n.clone()];
    }
    // A bare tag ("latest") names no repository; only full references do.
    match a.get("org.opencontainers.image.ref.name") {
        Some(n) if n.contains(':') || n.contains('/') => vec![n.clone()],
        _ => Vec::new(),
    }
}

fn collect_oci(
    staged: &Staged<'_>,
    desc: &Descriptor,
    mut inherited: Vec<String>,
    depth: u32,
    out: &mut Vec<ImageSource>,
) -> Result<()> {
    if depth > 4 {
        return Err(Error::Malformed("image indexes nested too deep".into()));
    }
    inherited.extend(ref_names(desc));
    let digest = desc.digest().to_string();
    match desc.media_type() {
        MediaType::ImageIndex => {
            let index: ImageIndex = json(&digest, &staged.blob(desc)?)?;
            let wanted: Vec<&Descriptor> = index
                .manifests()
                .iter()
                .filter(|d| {
                    d.platform().as_ref().is_none_or(|p| {
                        p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
                    })
                })
                .collect();
            let Some(first) = wanted.first() else {
                return Err(Error::Malformed(format!(
                    "index {digest}: no manifest for linux/amd64"
                )));
            };
            collect_oci(staged, first, inherited, depth + 1, out)
        }
        MediaType::ImageManifest => {
            let manifest: ImageManifest = json(&digest, &staged.blob(desc)?)?;
            let config_bytes = staged.blob(manifest.config())?;
            let config_digest = manifest.config().digest().to_string();
            let config = config_of(&config_digest, &config_bytes)?;
            let diff_ids = config.rootfs().diff_ids();
            if diff_ids.len() != manifest.layers().len() {
                return Err(Error::Malformed(format!(
                    "manifest {digest}: {} layers but its config lists {} diff ids",
                    manifest.layers().len(),
                    diff_ids.len()
                )));
            }
            let mut layers = Vec::new();
            for (l, diff_id) in manifest.layers().iter().zip(diff_ids) {
                let ld = l.digest().to_string();
                let hex = digest::parse(&ld).map_err(Error::Malformed)?;
                digest::parse(diff_id).map_err(Error::Malformed)?;
                layers.push(LayerSource {
                    path: format!("blobs/sha256/{hex}"),
                    blob: Some((ld.clone(), Some(l.size()))),
                    diff_id: diff_id.clone(),
                });
            }
            out.push(ImageSource {
                names: names(inherited)?,
                config_digest,
                created: config.created().clone(),
                config_bytes,
                layers,
            });
            Ok(())
        }
        other => Err(Error::Malformed(format!(
            "{digest}: unsupported media type {other}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The hex digest a docker-archive path carries in its name
/// (`<hex>.json`, `blobs/sha256/<hex>`), if any.
fn hex_in_path(p: &str) -> Option<String> {
    let name = p.rsplit('/').next()?;
    let stem = name.strip_suffix(".json").unwrap_or(name);
    (stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit())).then(|| stem.to_owned())
}

fn read_docker(staged: &Staged<'_>) -> Result<Vec<ImageSource>> {
    let manifests: Vec<DockerManifest> = json("manifest.json", &staged.read("manifest.json")?)?;
    let mut out = Vec::new();
    for m in manifests {
        let config_bytes = staged.read(&m.config)?;
        let config_digest = digest::sha256(&config_bytes);
        if let Some(hex) = hex_in_path(&m.config) {
            let expected = format!("sha256:{hex}");
            if expected != config_digest {
                return Err(Error::Digest {
                    blob: m.config.clone(),
                    expected,
                    actual: config_digest,
                });
            }
        }
        let config = config_of(&m.config, &config_bytes)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != m.layers.len() {
            return Err(Error::Malformed(format!(
                "manifest.json: {} layers but config {} lists {} diff ids",
                m.layers.len(),
                m.config,
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in m.layers.iter().zip(diff_ids) {
            digest::parse(diff_id).map_err(Error::Malformed)?;
            let blob = path
                .starts_with("blobs/sha256/")
                .then(|| hex_in_path(path))
                .flatten()
                .map(|hex| (format!("sha256:{hex}"), None));
            layers.push(LayerSource {
                path: path.clone(),
                blob,
                diff_id: diff_id.clone(),
            });
        }
        out.push(ImageSource {
            names: names(m.repo_tags.unwrap_or_default())?,
            config_digest,
            created: config.created().clone(),
            config_bytes,
            layers,
        });
    }
    Ok(out)
}

/// Where the staged archive holds a layer's blob.
pub(crate) fn staged_path(dir: &Path, layer: &LayerSource) -> Result<PathBuf> {
    Staged::open(dir)?.path(&layer.path)
}

/// Unpacks a layer into `dest`, checking the blob's digest and size and
/// the uncompressed stream's diff id.
pub(crate) fn unpack_verified(dir: &Path, layer: &LayerSource, dest: &Path) -> Result<Unpacked> {
    let staged = Staged::open(dir)?;
    let name = layer
        .blob
        .as_ref()
        .map(|b| b.0.clone())
        .unwrap_or_else(|| layer.path.clone());
    let path = staged.path(&layer.path)?;
    let f = fs::File::open(&path).map_err(io_err(&path))?;
    let mut raw = Hashing::new(f);
    let unpacked = unpack_layer(&mut raw, dest).map_err(|message| Error::Layer {
        layer: name.clone(),
        message,
    })?;
    let (actual, size) = raw.finish().map_err(io_err(&path))?;
    if let Some((expected, expected_size)) = &layer.blob {
        if let Some(es) = expected_size.filter(|es| *es != size) {
            return Err(Error::Size {
                blob: name,
                expected: es,
                actual: size,
            });
        }
        if *expected != actual {
            return Err(Error::Digest {
                blob: name,
                expected: expected.clone(),
                actual,
            });
        }
    }
    if unpacked.diff_id != layer.diff_id {
        return Err(Error::Digest {
            blob: format!("{name} (uncompressed)"),
            expected: layer.diff_id.clone(),
            actual: unpacked.diff_id,
        });
    }
    Ok(unpacked)
}
