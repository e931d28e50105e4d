//! `docker pull`: the manifest (an index or manifest list resolved to
//! linux/amd64; Docker schema 2 or OCI), the config, then the layers the
//! store lacks, fetched three at a time and hashed as they stream into
//! the store's downloads, then unpacked and committed as one image.
//!
//! [`resolve`] does everything that can fail before a byte of progress
//! (the reference, the registry, credentials, the manifest), so those
//! failures are HTTP errors as Docker's are; [`fetch`] streams progress.

use std::sync::Arc;

use futures_util::StreamExt;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::{Client, Reference};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;

use super::progress::{bar, short, Progress};
use super::{familiar_repository, reference, store_name, BlobLocks, Credentials, Error, Settings};
use corral_image::{Loaded, Pulled, PulledLayer, Store};

/// Media types of layers the store can unpack.
const LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
];

/// What [`resolve`] found: enough to fetch the rest.
pub struct Plan {
    client: Client,
    /// The reference blobs are fetched by (a mirror's, for Docker Hub
    /// images a mirror has).
    reference: Reference,
    /// What the store lists it as (`busybox:latest`); None for a pull by
    /// digest, which Docker lists by its digest only.
    name: Option<String>,
    /// `repo@sha256:...`.
    repo_digest: String,
    manifest: OciImageManifest,
    config: Vec<u8>,
    /// Shown in messages: what the user asked for.
    shown: String,
}

impl Plan {
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The image's layers, bottom first.
    pub fn layers(&self) -> &[OciDescriptor] {
        &self.manifest.layers
    }

    /// One blob, in memory, checked against its size and digest; at most
    /// `max` bytes (a larger one is refused before it is fetched).
    pub async fn blob(&self, layer: &OciDescriptor, max: u64) -> Result<Vec<u8>, Error> {
        let blob_err =
            |m: String| Error::Registry(format!("{} (blob {}): {m}", self.shown, layer.digest));
        let total = layer.size.max(0) as u64;
        if total > max {
            return Err(blob_err(format!(
                "{} MiB, more than the {} MiB allowed",
                total >> 20,
                max >> 20
            )));
        }
        let registry = self.reference.resolve_registry().to_owned();
        let mut stream = self
            .client
            .pull_blob_stream(&self.reference, layer)
            .await
            .map_err(|e| {
                Error::from_oci(
                    &format!("{} (blob {})", self.shown, layer.digest),
                    &registry,
                    e,
                )
            })?;
        let mut data = Vec::with_capacity(total as usize);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => data.extend_from_slice(&c),
                // All in: oci-client's own digest check failed; ours says so.
                Err(_) if data.len() as u64 == total => break,
                Err(e) => {
                    return Err(blob_err(format!(
                        "the download from {registry} broke off after {} of {total} bytes: {}",
                        data.len(),
                        super::error_chain(&e)
                    )))
                }
            }
            if data.len() as u64 > total {
                return Err(blob_err(format!(
                    "{registry} sent more than the {total} bytes the manifest gives"
                )));
            }
        }
        if data.len() as u64 != total {
            return Err(blob_err(format!(
                "truncated: {registry} sent {} of {total} bytes",
                data.len()
            )));
        }
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        if actual != layer.digest {
            return Err(blob_err(format!(
                "the registry sent content with digest {actual}"
            )));
        }
        Ok(data)
    }
}

/// Finds the image in its registry (or a mirror) and fetches its manifest
/// and config.
pub async fn resolve(
    settings: &Settings,
    image: &str,
    given: Option<Credentials>,
) -> Result<Plan, Error> {
    let r = reference(image)?;
    let shown = store_name(&r);
    let registry = r.registry().to_owned();
    let creds = settings.credentials_for(&registry, given);
    let auth = creds.to_oci();
    let mut candidates = Vec::new();
    if registry == super::DOCKER_HUB {
        for m in &settings.mirrors {
            let mut mr = r.clone();
            mr.set_mirror_registry(m.clone());
            candidates.push((mr, m.clone()));
        }
    }
    candidates.push((r.clone(), registry.clone()));
    let mut last = None;
    for (cand, host) in candidates {
        let client = settings.client_for(&host, &creds);
        let got = client
            .pull_image_manifest_and_list_digest(&cand, &auth)
            .await;
        let (manifest, digest, list_digest) = match got {
            Ok(m) => m,
            Err(e) => {
                let err = Error::from_oci(&shown, &host, e);
                if host != registry {
                    log::warn!("mirror {host}: {err}; trying the next");
                }
                last = Some(err);
                continue;
            }
        };
        if let Some(t) = manifest
            .layers
            .iter()
            .map(|l| l.media_type.as_str())
            .find(|t| !LAYER_TYPES.contains(t))
        {
            return Err(Error::Registry(format!(
                "{shown}: layer media type {t} is not a container image layer"
            )));
        }
        let mut config = Vec::new();
        client
            .pull_blob(&cand, &manifest.config, &mut config)
            .await
            .map_err(|e| {
                Error::from_oci(
                    &format!("{shown} (config {})", manifest.config.digest),
                    &host,
                    e,
                )
            })?;
        let repo_digest = format!(
            "{}@{}",
            familiar_repository(&r),
            list_digest.unwrap_or(digest)
        );
        return Ok(Plan {
            client,
            reference: cand,
            // `app@sha256:...` is listed by its digest; `app` and
            // `app:1` by their tag.
            name: (r.tag().is_some() || r.digest().is_none()).then(|| shown.clone()),
            repo_digest,
            manifest,
            config,
            shown,
        });
    }
    Err(last.unwrap_or_else(|| Error::Registry(format!("{shown}: no registry to pull from"))))
}

/// Fetches the layers the store lacks and commits the image, reporting
/// as `docker pull` shows it.
pub async fn fetch(
    plan: Plan,
    store: Arc<Store>,
    locks: Arc<BlobLocks>,
    progress: &Progress,
) -> Result<Loaded, Error> {
    let tag_or_digest = plan
        .reference
        .tag()
        .or(plan.reference.digest())
        .unwrap_or("latest")
        .to_owned();
    let repo = familiar_repository(&plan.reference);
    progress
        .send(json!({ "status": format!("Pulling from {repo}"), "id": tag_or_digest }))
        .await;

    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&plan.config)
        .map_err(|e| Error::Registry(format!("{}: image config: {e}", plan.shown)))?;
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != plan.manifest.layers.len() {
        return Err(Error::Registry(format!(
            "{}: the manifest lists {} layers and the config {}",
            plan.shown,
            plan.manifest.layers.len(),
            diff_ids.len()
        )));
    }
    // Docker's words: "up to date" when the name already meant this
    // image, "newer image" when the name is new or moved to it.
    let have = store
        .has_image(&plan.config)
        .map_err(|e| Error::Store(e.to_string()))?;
    let up_to_date = match (&have, &plan.name) {
        (Some(id), Some(name)) => store.get(name).is_ok_and(|i| i.id == *id),
        (Some(_), None) => true,
        (None, _) => false,
    };
    let mut wanted = Vec::new();
    for (layer, diff_id) in plan.manifest.layers.iter().zip(&diff_ids) {
        if store.has_layer(diff_id) {
            progress.layer(short(&layer.digest), "Already exists").await;
        } else {
            wanted.push((layer.clone(), diff_id.clone()));
        }
    }
    for (i, (layer, _)) in wanted.iter().enumerate() {
        let status = if i < 3 { "Pulling fs layer" } else { "Waiting" };
        progress.layer(short(&layer.digest), status).await;
    }
    let started = std::time::Instant::now();
    // Layers download three at a time, each in a task of its own, and are
    // unpacked in order as each arrives, so unpacking overlaps the
    // downloads still running. Returning early drops `tasks`, which
    // aborts the downloads left.
    let shown = plan.shown.clone();
    let plan = Arc::new(plan);
    let slots = Arc::new(tokio::sync::Semaphore::new(3));
    let mut tasks = tokio::task::JoinSet::new();
    let mut dones = Vec::new();
    for (layer, _) in &wanted {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), Error>>();
        dones.push(rx);
        let (plan, store, locks, progress, slots, layer) = (
            plan.clone(),
            store.clone(),
            locks.clone(),
            progress.clone(),
            slots.clone(),
            layer.clone(),
        );
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let _ = tx.send(download(&plan, &layer, &store, &locks, &progress).await);
        });
    }
    let mut staged = Vec::new();
    for ((layer, diff_id), done) in wanted.iter().zip(dones) {
        done.await
            .map_err(|_| Error::Store(format!("{shown}: a download ended unanswered")))??;
        let id = short(&layer.digest).to_owned();
        let total = layer.size.max(0) as u64;
        let pulled_layer = PulledLayer {
            digest: layer.digest.clone(),
            size: total,
        };
        let (s, d, p, i) = (store.clone(), diff_id.clone(), progress.clone(), id.clone());
        let st = tokio::task::spawn_blocking(move || {
            s.stage_layer(&pulled_layer, &d, &mut |read| {
                p.blocking_send(bar(&i, "Extracting", read, total))
            })
        })
        .await
        .map_err(|e| Error::Store(e.to_string()))?
        .map_err(|e| Error::Store(format!("{shown}: {e}")))?;
        progress
            .send(json!({"status": "Pull complete", "progressDetail": {}, "id": id}))
            .await;
        staged.push(st);
    }
    drop(tasks);

    let pulled = Pulled {
        name: plan.name.clone(),
        repo_digest: Some(plan.repo_digest.clone()),
        config: plan.config.clone(),
        layers: plan
            .manifest
            .layers
            .iter()
            .map(|l| PulledLayer {
                digest: l.digest.clone(),
                size: l.size.max(0) as u64,
            })
            .collect(),
    };
    let s = store.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        // Every layer is in the store or staged: nothing is left to
        // report but the commit itself.
        s.commit_pull(&pulled, staged, &mut |_, _| {})
    })
    .await
    .map_err(|e| Error::Store(e.to_string()))?
    .map_err(|e| Error::Store(format!("{}: {e}", plan.shown)))?;

    log::info!(
        "pulled {}: {} of {} layers fetched ({} bytes) and unpacked in {} ms",
        plan.shown,
        wanted.len(),
        plan.manifest.layers.len(),
        wanted.iter().map(|(l, _)| l.size.max(0)).sum::<i64>(),
        started.elapsed().as_millis()
    );
    let digest = plan
        .repo_digest
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or_default();
    progress.status(&format!("Digest: {digest}")).await;
    let shown = plan
        .name
        .clone()
        .unwrap_or_else(|| plan.repo_digest.clone());
    let status = if up_to_date {
        format!("Status: Image is up to date for {shown}")
    } else {
        format!("Status: Downloaded newer image for {shown}")
    };
    progress.status(&status).await;
    Ok(loaded)
}

/// Fetches one layer blob into the store's downloads, verifying its size
/// and digest as it streams; a verified download already there (from an
/// interrupted pull, or another pull of the same layer) is used as is.
async fn download(
    plan: &Plan,
    layer: &OciDescriptor,
    store: &Store,
    locks: &BlobLocks,
    progress: &Progress,
) -> Result<(), Error> {
    let id = short(&layer.digest);
    let lock = locks.get(&layer.digest);
    let _held = lock.lock().await;
    let blob_err =
        |m: String| Error::Registry(format!("{} (blob {}): {m}", plan.shown, layer.digest));
    let (done, partial) = store
        .download_paths(&layer.digest)
        .map_err(|e| blob_err(e.to_string()))?;
    let total = layer.size.max(0) as u64;
    if std::fs::metadata(&done).is_ok_and(|m| m.len() == total) {
        progress.layer(id, "Download complete").await;
        return Ok(());
    }
    let registry = plan.reference.resolve_registry().to_owned();
    let mut stream = plan
        .client
        .pull_blob_stream(&plan.reference, layer)
        .await
        .map_err(|e| {
            Error::from_oci(
                &format!("{} (blob {})", plan.shown, layer.digest),
                &registry,
                e,
            )
        })?;
    // Plain buffered writes: they land in the page cache at once, where
    // tokio's file would hand every network chunk to a thread.
    let file = std::fs::File::create(&partial)
        .map_err(|e| blob_err(format!("{}: {e}", partial.display())))?;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    let mut shown: u64 = 0;
    let result: Result<(), Error> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                // Every byte is in: what failed is oci-client's own digest
                // check at the end of the stream; ours below says so in
                // Docker's words.
                Err(_) if got == total => break,
                Err(e) => {
                    return Err(blob_err(format!(
                        "the download from {registry} broke off after {got} of {total} bytes: {}",
                        super::error_chain(&e)
                    )))
                }
            };
            hasher.update(&chunk);
            got += chunk.len() as u64;
            if got > total {
                return Err(blob_err(format!(
                    "{registry} sent more than the {total} bytes the manifest gives"
                )));
            }
            file.write_all(&chunk)
                .map_err(|e| blob_err(format!("{}: {e}", partial.display())))?;
            if got - shown >= 256 << 10 || got == total {
                shown = got;
                progress.send(bar(id, "Downloading", got, total)).await;
            }
            if progress.gone() {
                return Err(blob_err("the client went away".into()));
            }
        }
        if got != total {
            return Err(blob_err(format!(
                "truncated: {registry} sent {got} of {total} bytes"
            )));
        }
        progress.layer(id, "Verifying Checksum").await;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize_reset()));
        if actual != layer.digest {
            return Err(blob_err(format!(
                "filesystem layer verification failed: the registry sent content with digest {actual}"
            )));
        }
        file.flush()
            .and_then(|()| file.get_ref().sync_data())
            .map_err(|e| blob_err(format!("{}: {e}", partial.display())))?;
        Ok(())
    }
    .await;
    drop(file);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &done).map_err(|e| blob_err(format!("{}: {e}", done.display())))?;
    progress.layer(id, "Download complete").await;
    Ok(())
}
