//! One file out of an image in a registry, without storing the image:
//! `corral os upgrade IMAGE` takes its bundle from `/corral.bundle` in an
//! image, so a release is published with the registries and tools already
//! used for containers (`skopeo copy`, `docker push`).

use corral_image::{find_file, LayerFile};

use super::pull::resolve;
use super::{Error, Settings};

/// The content of `path` (from the image root, no leading `/`) in
/// `image`, at most `max` bytes: the top-most layer that has it wins, as
/// in a container's filesystem. The image's layers are fetched one at a
/// time from the top, and only until the file is found.
pub async fn read_file(
    settings: &Settings,
    image: &str,
    path: &str,
    max: u64,
) -> Result<Vec<u8>, Error> {
    let plan = resolve(settings, image, None).await?;
    // A layer is the file plus tar headers, compressed or not; what is
    // compressed already (a bundle) barely shrinks or grows.
    let layer_max = max + max / 16 + (1 << 20);
    for layer in plan.layers().iter().rev() {
        let blob = plan.blob(layer, layer_max).await?;
        let p = path.to_owned();
        let found = tokio::task::spawn_blocking(move || find_file(&blob[..], &p, max))
            .await
            .map_err(|e| Error::Store(e.to_string()))?
            .map_err(|e| {
                Error::Registry(format!("{} (layer {}): {e}", plan.shown(), layer.digest))
            })?;
        match found {
            LayerFile::Found(data) => return Ok(data),
            LayerFile::Deleted => break,
            LayerFile::Absent => {}
        }
    }
    Err(Error::NotFound(format!(
        "{}: the image has no /{path}",
        plan.shown()
    )))
}
