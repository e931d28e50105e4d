//! Makes and signs upgrade bundles (`make release`): the kernel, the
//! initramfs and a manifest signed with a minisign key, in the format
//! `corral os upgrade` checks (corral-disk's `bundle` module).
//!
//! `keygen` writes a key pair in minisign's own format, so a bundle can
//! equally be signed by Debian's `minisign -S` and its key trusted with
//! `[os] trusted-keys`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use corral_disk::bundle::{self, Manifest};
use corral_disk::image::Payload;

#[derive(Debug, Parser)]
#[command(about = "Make signed Corral upgrade bundles")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write a new key pair (unencrypted secret key, mode 0600), unless
    /// the secret key exists already
    Keygen {
        #[arg(long)]
        secret: PathBuf,
        #[arg(long)]
        public: PathBuf,
    },
    /// Write a signed bundle
    Create {
        #[arg(long)]
        kernel: PathBuf,
        #[arg(long)]
        initrd: PathBuf,
        /// The release file (os-release); its VERSION_ID is the bundle's version
        #[arg(long)]
        release: PathBuf,
        /// The minisign secret key (unencrypted, as keygen or `minisign -G -W` writes)
        #[arg(long)]
        secret: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Wrap a bundle as a container image (an OCI archive holding it as
    /// /corral.bundle), to publish with `skopeo copy` or `docker push`
    /// for `corral os upgrade IMAGE`
    Image {
        #[arg(long)]
        bundle: PathBuf,
        /// The image's name inside the archive
        #[arg(long, default_value = "corral:latest")]
        name: String,
        #[arg(short, long)]
        output: PathBuf,
    },
}

fn main() -> Result<()> {
    match Args::parse().command {
        Cmd::Keygen { secret, public } => keygen(&secret, &public),
        Cmd::Create {
            kernel,
            initrd,
            release,
            secret,
            output,
        } => create(&kernel, &initrd, &release, &secret, &output),
        Cmd::Image {
            bundle,
            name,
            output,
        } => image(&bundle, &name, &output),
    }
}

fn image(bundle_path: &Path, name: &str, out: &Path) -> Result<()> {
    let data =
        std::fs::read(bundle_path).with_context(|| format!("reading {}", bundle_path.display()))?;
    // Only a well-formed bundle goes in (its signature is the upgrading
    // system's to check, against its own keys).
    let version = bundle::peek_version(&data)
        .with_context(|| format!("{} is not a Corral upgrade bundle", bundle_path.display()))?;
    // The layer's tree, beside the output and gone after.
    let root = out.with_extension("rootfs.d");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    std::fs::write(root.join("corral.bundle"), &data)?;
    std::fs::set_permissions(
        root.join("corral.bundle"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    let spec = corral_image::build::ImageConfigSpec {
        labels: [
            ("io.corral.bundle".to_owned(), "/corral.bundle".to_owned()),
            (
                "org.opencontainers.image.version".to_owned(),
                version.clone(),
            ),
        ]
        .into(),
        ..Default::default()
    };
    let written = corral_image::build::write_oci_archive(&root, name, &spec, out)
        .with_context(|| format!("writing {}", out.display()));
    let _ = std::fs::remove_dir_all(&root);
    let id = written?;
    println!(
        "{}: image {name} ({}) holding the Corral {version} bundle",
        out.display(),
        &id[..19.min(id.len())]
    );
    Ok(())
}

fn keygen(secret: &Path, public: &Path) -> Result<()> {
    if secret.exists() {
        let text = std::fs::read_to_string(secret)
            .with_context(|| format!("reading {}", secret.display()))?;
        let sk = minisign::SecretKeyBox::from_string(&text)
            .and_then(|b| b.into_unencrypted_secret_key())
            .with_context(|| {
                format!(
                    "{} is not an unencrypted minisign secret key",
                    secret.display()
                )
            })?;
        let pk = minisign::PublicKey::from_secret_key(&sk)?;
        write_public(public, &pk)?;
        return Ok(());
    }
    if let Some(dir) = secret.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let kp = minisign::KeyPair::generate_unencrypted_keypair()?;
    let text = kp.sk.to_box(Some("Corral release key"))?.into_string();
    let tmp = secret.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, secret)?;
    eprintln!("corral-bundle: new release key {}", secret.display());
    write_public(public, &kp.pk)
}

/// The public key as minisign writes it (comment line, base64 line);
/// written only when it changed, so make sees no change.
fn write_public(path: &Path, pk: &minisign::PublicKey) -> Result<()> {
    let text = pk.to_box()?.into_string();
    if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn create(kernel: &Path, initrd: &Path, release: &Path, secret: &Path, out: &Path) -> Result<()> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let payload = Payload {
        kernel: read(kernel)?,
        initrd: read(initrd)?,
        release: read(release)?,
    };
    let manifest = Manifest::of(&payload).with_context(|| release.display().to_string())?;
    let bytes = manifest.to_bytes();
    let text = std::fs::read_to_string(secret)
        .with_context(|| format!("reading the release key {}", secret.display()))?;
    let sk = minisign::SecretKeyBox::from_string(&text)
        .and_then(|b| b.into_unencrypted_secret_key())
        .with_context(|| {
            format!(
                "{} is not an unencrypted minisign secret key (an encrypted one cannot sign unattended)",
                secret.display()
            )
        })?;
    let pk = minisign::PublicKey::from_secret_key(&sk)?;
    let comment = format!("Corral {} bundle", manifest.version);
    let sig = minisign::sign(Some(&pk), &sk, &bytes[..], Some(&comment), None)?.into_string();
    let tar = bundle::pack(&bytes, &sig, &payload)?;
    // The result must open with the key it was signed with.
    let trusted = bundle::TrustedKey::parse(&pk.to_base64()).map_err(anyhow::Error::msg)?;
    if let Err(e) = bundle::open(&tar, &[trusted]) {
        bail!("the bundle just written does not verify: {e}");
    }
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, &tar).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out)?;
    println!(
        "{}: Corral {} ({:.1} MB), signed by key {}",
        out.display(),
        manifest.version,
        tar.len() as f64 / 1e6,
        pk.to_base64()
    );
    Ok(())
}
