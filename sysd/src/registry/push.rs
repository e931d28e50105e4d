//! `docker push`: each layer archive as the store keeps it (gzip, zstd or
//! plain, typed accordingly), skipped when the registry has the blob, then
//! the config and an OCI image manifest, reported as Docker reports it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::progress::{bar, short, Progress};
use super::{familiar_repository, reference, Credentials, Error, Settings};
use corral_image::Store;

/// What the registry now holds.
pub struct Pushed {
    pub tag: String,
    pub digest: String,
    pub size: usize,
}

/// Pushes `image` (a name in the store) to the registry its name gives.
/// Errors before any progress are returned for the HTTP answer.
pub async fn push(
    settings: &Settings,
    store: Arc<Store>,
    image: &str,
    given: Option<Credentials>,
    progress: &Progress,
) -> Result<Pushed, Error> {
    let r = reference(image)?;
    let local = store.get(image).map_err(|_| {
        Error::NotFound(format!(
            "An image does not exist locally with the tag: {}",
            familiar_repository(&r)
        ))
    })?;
    let registry = r.registry().to_owned();
    let creds = settings.credentials_for(&registry, given);
    let auth = creds.to_oci();
    let client = settings.client_for(&registry, &creds);
    // Credentials are checked (and a token fetched) before anything is
    // reported, so a refusal is the HTTP answer the CLI expects.
    client
        .auth(&r, &auth, oci_client::RegistryOperation::Push)
        .await
        .map_err(|e| Error::from_oci(image, &registry, e))?;

    let (s, l) = (store.clone(), local.clone());
    let archives = tokio::task::spawn_blocking(move || s.layer_archives(&l))
        .await
        .map_err(|e| Error::Store(e.to_string()))?
        .map_err(|e| Error::Store(e.to_string()))?;
    let config = store
        .config_bytes(&local)
        .map_err(|e| Error::Store(e.to_string()))?;

    let mount_sources: Vec<oci_client::Reference> = local
        .repo_digests
        .iter()
        .filter_map(|d| reference(d).ok())
        .filter(|s| s.registry() == r.registry() && s.repository() != r.repository())
        .collect();
    progress
        .status(&format!(
            "The push refers to repository [{}]",
            familiar_repository(&r)
        ))
        .await;
    let mut layers = Vec::new();
    for path in &archives {
        let p = path.clone();
        let desc = tokio::task::spawn_blocking(move || describe(&p))
            .await
            .map_err(|e| Error::Store(e.to_string()))?
            .map_err(|e| Error::Store(format!("{}: {e}", path.display())))?;
        progress.layer(short(&desc.digest), "Preparing").await;
        layers.push((desc, path.clone()));
    }
    for (desc, path) in &layers {
        let id = short(&desc.digest).to_owned();
        let what = format!("{image} (layer {})", desc.digest);
        if client
            .blob_exists(&r, &desc.digest)
            .await
            .map_err(|e| Error::from_oci(&what, &registry, e))?
        {
            progress.layer(&id, "Layer already exists").await;
            continue;
        }
        // Another repository of the same registry that has the image
        // (it was pulled from or pushed there) lends the blob without an
        // upload; a registry that will not answers 202, and it is sent.
        let mut mounted = false;
        for source in &mount_sources {
            if client.mount_blob(&r, source, &desc.digest).await.is_ok() {
                progress
                    .layer(&id, &format!("Mounted from {}", source.repository()))
                    .await;
                mounted = true;
                break;
            }
        }
        if mounted {
            continue;
        }
        let stream = file_stream(path.clone(), id.clone(), desc.size as u64, progress.clone());
        client
            .push_blob_stream(&r, stream, &desc.digest, Some(desc.size as u64))
            .await
            .map_err(|e| Error::from_oci(&what, &registry, e))?;
        progress.layer(&id, "Pushed").await;
    }

    let config_desc = OciDescriptor {
        media_type: oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE.to_owned(),
        digest: format!("sha256:{}", hex::encode(Sha256::digest(&config))),
        size: config.len() as i64,
        ..Default::default()
    };
    if !client
        .blob_exists(&r, &config_desc.digest)
        .await
        .map_err(|e| Error::from_oci(image, &registry, e))?
    {
        client
            .push_blob(&r, config.clone(), &config_desc.digest)
            .await
            .map_err(|e| Error::from_oci(&format!("{image} (config)"), &registry, e))?;
    }
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned()),
        config: config_desc,
        layers: layers.into_iter().map(|(d, _)| d).collect(),
        ..Default::default()
    };
    let body = serde_json::to_vec(&manifest).map_err(|e| Error::Store(e.to_string()))?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    client
        .push_manifest_raw(
            &r,
            body.clone(),
            reqwest::header::HeaderValue::from_static(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .map_err(|e| Error::from_oci(&format!("{image} (manifest)"), &registry, e))?;
    let tag = r.tag().unwrap_or("latest").to_owned();
    let repo_digest = format!("{}@{digest}", familiar_repository(&r));
    if let Err(e) = store.add_repo_digest(&local.id, &repo_digest) {
        log::warn!("{image}: pushed, but recording its digest failed: {e}");
    }
    progress
        .status(&format!("{tag}: digest: {digest} size: {}", body.len()))
        .await;
    progress
        .send(json!({
            "progressDetail": {},
            "aux": { "Tag": tag, "Digest": digest, "Size": body.len() }
        }))
        .await;
    Ok(Pushed {
        tag,
        digest,
        size: body.len(),
    })
}

/// A layer archive's descriptor: digest, size and media type from its
/// first bytes.
fn describe(path: &Path) -> std::io::Result<OciDescriptor> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut magic = Vec::new();
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if magic.len() < 4 {
            magic.extend_from_slice(&buf[..n.min(4 - magic.len())]);
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let media_type = if magic.starts_with(&[0x1f, 0x8b]) {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    };
    Ok(OciDescriptor {
        media_type: media_type.to_owned(),
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        size: size as i64,
        ..Default::default()
    })
}

/// A file as a stream of chunks, reporting "Pushing" as it goes.
fn file_stream(
    path: PathBuf,
    id: String,
    total: u64,
    progress: Progress,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold(
        (None::<tokio::fs::File>, path, 0u64, false),
        move |(file, path, sent, done)| {
            let (id, progress) = (id.clone(), progress.clone());
            async move {
                if done {
                    return None;
                }
                let mut file = match file {
                    Some(f) => f,
                    None => match tokio::fs::File::open(&path).await {
                        Ok(f) => f,
                        Err(e) => return Some((Err(e.into()), (None, path, sent, true))),
                    },
                };
                let mut buf = vec![0u8; 1 << 20];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        let sent = sent + n as u64;
                        progress.send(bar(&id, "Pushing", sent, total)).await;
                        Some((Ok(bytes::Bytes::from(buf)), (Some(file), path, sent, false)))
                    }
                    Err(e) => Some((Err(e.into()), (Some(file), path, sent, true))),
                }
            }
        },
    )
    .boxed()
}
