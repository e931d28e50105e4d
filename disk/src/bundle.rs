//! Upgrade bundles: what `make release` writes and `corral os upgrade`
//! takes. A bundle is an uncompressed tar (the kernel and the initramfs
//! are compressed already) with, in this order:
//!
//! - `manifest.json`: the format, the version, the release file (the
//!   os-release the new system reports) and each file's size and SHA-256;
//! - `manifest.json.minisig`: a minisign signature of the manifest
//!   (Ed25519 over its BLAKE2b hash), made by `make release` with the
//!   build's key or by Debian's `minisign -S` with the user's;
//! - `vmlinuz` and `initrd.img`.
//!
//! [`open`] checks, before anything is written anywhere: the layout, the
//! signature against the trusted keys, then every file against the
//! signed manifest. Only a bundle that passes all of it yields a
//! [`Payload`].

use std::collections::BTreeMap;
use std::io::Read;

use minisign_verify::{PublicKey, Signature};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::image::Payload;

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.json.minisig";
pub const KERNEL: &str = "vmlinuz";
pub const INITRD: &str = "initrd.img";
const FORMAT: u32 = 1;
/// No bundle is bigger than a slot (256 MiB); a bigger file is refused
/// before it is read into memory.
pub const MAX_SIZE: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a Corral upgrade bundle: {0}")]
    Layout(String),
    #[error(
        "the bundle is signed by key {key}, which this system does not trust \
         (trusted: {trusted}; add the key to [os] trusted-keys)"
    )]
    UntrustedKey { key: String, trusted: String },
    #[error("the bundle's signature is not valid: it was changed after signing, or is corrupt")]
    BadSignature,
    #[error("the bundle's {0} does not match its signed manifest: it was changed after signing, or is corrupt")]
    Mismatch(&'static str),
    #[error("signing: {0}")]
    Sign(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub size: u64,
    pub sha256: String,
}

/// What the signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// `VERSION_ID` of the release file.
    pub version: String,
    /// The release file (os-release) the slot carries.
    pub release: String,
    pub files: BTreeMap<String, FileSum>,
}

fn sum(data: &[u8]) -> FileSum {
    FileSum {
        size: data.len() as u64,
        sha256: hex::encode(Sha256::digest(data)),
    }
}

/// `VERSION_ID` from a release file.
pub fn version_id(release: &str) -> Option<String> {
    release.lines().find_map(|l| {
        let v = l.strip_prefix("VERSION_ID=")?.trim().trim_matches('"');
        (!v.is_empty()).then(|| v.to_owned())
    })
}

impl Manifest {
    /// The manifest of a payload; its release file must name a version.
    pub fn of(payload: &Payload) -> Result<Self, BundleError> {
        let release = String::from_utf8(payload.release.clone())
            .map_err(|_| BundleError::Layout("the release file is not UTF-8".into()))?;
        let version = version_id(&release)
            .ok_or_else(|| BundleError::Layout("the release file has no VERSION_ID".into()))?;
        let files = BTreeMap::from([
            (KERNEL.to_owned(), sum(&payload.kernel)),
            (INITRD.to_owned(), sum(&payload.initrd)),
        ]);
        Ok(Self {
            format: FORMAT,
            version,
            release,
            files,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// Writes a bundle from a manifest (as signed), its signature (a
/// `.minisig` file's text) and the payload. Reproducible: fixed owners,
/// modes and times.
pub fn pack(manifest: &[u8], signature: &str, payload: &Payload) -> Result<Vec<u8>, BundleError> {
    let mut b = tar::Builder::new(Vec::new());
    let entries: [(&str, &[u8]); 4] = [
        (MANIFEST, manifest),
        (SIGNATURE, signature.as_bytes()),
        (KERNEL, &payload.kernel),
        (INITRD, &payload.initrd),
    ];
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data)
            .map_err(|e| BundleError::Layout(format!("writing {name}: {e}")))?;
    }
    b.into_inner()
        .map_err(|e| BundleError::Layout(format!("finishing the tar: {e}")))
}

/// A key the system trusts, with where it came from for messages.
pub struct TrustedKey {
    pub key: PublicKey,
    pub base64: String,
}

impl TrustedKey {
    pub fn parse(base64: &str) -> Result<Self, String> {
        let b = base64.trim();
        PublicKey::from_base64(b)
            .map(|key| Self {
                key,
                base64: b.to_owned(),
            })
            .map_err(|e| format!("{b:?} is not a minisign public key: {e}"))
    }

    /// The key id minisign prints (`minisign -V` names it), in hex.
    fn id(&self) -> String {
        key_id(&self.base64).unwrap_or_else(|| "?".into())
    }
}

/// A minisign key id in the hex minisign shows, from a public key's
/// base64 (bytes 2..10 of the decoded key, little-endian).
fn key_id(base64: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .ok()?;
    Some(hex_le(raw.get(2..10)?))
}

fn hex_le(bytes: &[u8]) -> String {
    bytes.iter().rev().map(|b| format!("{b:02X}")).collect()
}

/// The key id a signature names (second line, base64: algorithm, id, sig).
fn signature_key_id(sig_text: &str) -> Option<String> {
    use base64::Engine;
    let line = sig_text.lines().nth(1)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .ok()?;
    Some(hex_le(raw.get(2..10)?))
}

/// Checks a minisign signature (a `.minisig` file's text) of `data`
/// against the trusted keys; returns the id of the key that made it.
pub fn check_signature(
    data: &[u8],
    sig_text: &str,
    trusted: &[TrustedKey],
) -> Result<String, BundleError> {
    let signature = Signature::decode(sig_text).map_err(|e| {
        BundleError::Layout(format!("{SIGNATURE} is not a minisign signature ({e})"))
    })?;
    let signer = signature_key_id(sig_text).unwrap_or_else(|| "?".into());
    let key =
        trusted
            .iter()
            .find(|k| k.id() == signer)
            .ok_or_else(|| BundleError::UntrustedKey {
                key: signer.clone(),
                trusted: if trusted.is_empty() {
                    "none".into()
                } else {
                    trusted
                        .iter()
                        .map(TrustedKey::id)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })?;
    key.key
        .verify(data, &signature, false)
        .map_err(|_| BundleError::BadSignature)?;
    Ok(signer)
}

/// A checked bundle.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    pub payload: Payload,
    /// The key id that signed it (hex, as minisign shows it).
    pub signed_by: String,
}

/// The version a bundle's manifest claims, *unverified*: for tools that
/// only label or list bundles (the signature is checked by [`open`]).
pub fn peek_version(bytes: &[u8]) -> Result<String, BundleError> {
    let layout = BundleError::Layout;
    let mut archive = tar::Archive::new(bytes);
    let entries = archive
        .entries()
        .map_err(|e| layout(format!("not a tar archive ({e})")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| layout(format!("not a tar archive ({e})")))?;
        if entry.path().is_ok_and(|p| p.as_os_str() == MANIFEST) {
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| layout(format!("reading {MANIFEST}: {e}")))?;
            let m: Manifest =
                serde_json::from_slice(&data).map_err(|e| layout(format!("{MANIFEST}: {e}")))?;
            return Ok(m.version);
        }
    }
    Err(layout(format!("it has no {MANIFEST}")))
}

/// Reads and checks a bundle against `trusted` keys.
pub fn open(bytes: &[u8], trusted: &[TrustedKey]) -> Result<Verified, BundleError> {
    let layout = BundleError::Layout;
    if bytes.len() as u64 > MAX_SIZE {
        return Err(layout(format!(
            "{} MiB, more than a boot slot holds ({} MiB)",
            bytes.len() >> 20,
            MAX_SIZE >> 20
        )));
    }
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    let entries = archive
        .entries()
        .map_err(|e| layout(format!("not a tar archive ({e})")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| layout(format!("not a tar archive ({e})")))?;
        let name = entry
            .path()
            .map_err(|e| layout(format!("a bad file name ({e})")))?
            .to_string_lossy()
            .into_owned();
        if ![MANIFEST, SIGNATURE, KERNEL, INITRD].contains(&name.as_str()) {
            return Err(layout(format!("unexpected file {name:?}")));
        }
        if files.contains_key(&name) {
            return Err(layout(format!("{name} appears twice")));
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|e| layout(format!("reading {name}: {e}")))?;
        files.insert(name, data);
    }
    let get = |name: &'static str| {
        files
            .get(name)
            .ok_or_else(|| layout(format!("it has no {name}")))
    };
    let manifest_bytes = get(MANIFEST)?;
    let sig_text = std::str::from_utf8(get(SIGNATURE).map_err(|_| {
        layout(format!(
            "it is not signed (no {SIGNATURE}): make release signs bundles"
        ))
    })?)
    .map_err(|_| layout(format!("{SIGNATURE} is not text")))?;
    let signer = check_signature(manifest_bytes, sig_text, trusted)?;

    let manifest: Manifest =
        serde_json::from_slice(manifest_bytes).map_err(|e| layout(format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(layout(format!(
            "bundle format {} (this system reads format {FORMAT}: upgrade in steps)",
            manifest.format
        )));
    }
    for (name, what) in [(KERNEL, "kernel"), (INITRD, "initramfs")] {
        let data = get(name)?;
        if manifest.files.get(name) != Some(&sum(data)) {
            return Err(BundleError::Mismatch(what));
        }
    }
    if version_id(&manifest.release).as_deref() != Some(manifest.version.as_str()) {
        return Err(BundleError::Mismatch("release file"));
    }
    let payload = Payload {
        kernel: get(KERNEL)?.clone(),
        initrd: get(INITRD)?.clone(),
        release: manifest.release.clone().into_bytes(),
    };
    Ok(Verified {
        manifest,
        payload,
        signed_by: signer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key made with Debian's minisign 0.11 (`minisign -G -W`) and its
    /// signature of `{"fixture":1}\n` (`minisign -S -t "corral test"`):
    /// the format is checked against the real tool, not only against the
    /// crate that `make release` signs with.
    const DEBIAN_PUBLIC: &str = "RWQ6Ul0i9gRukoX6LrKi4a1rXWEUg1k4FclKPRlXuPUh5PoEm61B/5z2";
    const DEBIAN_SIG: &str = "untrusted comment: signature from minisign secret key
RUQ6Ul0i9gRukvD0lWAd9SnlhTB3VMABeUim7IYFjql/LboAmZoN3iHKI4kiOajN4ikEHOEd/F2BGrSUTzBj0YpqfYfP0ig0Igs=
trusted comment: corral test
v0jA+984GLjMCkgxaTl1nYgO3rkZ80X7EXeJqj25Fn3kpFc5NBcalNo3N7aybPWGlLn9MOD1bMITd+leBXozCg==
";

    struct Signer {
        pk: minisign::PublicKey,
        sk: minisign::SecretKey,
    }

    impl Signer {
        fn new() -> Self {
            let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
            Self {
                pk: kp.pk,
                sk: kp.sk,
            }
        }
        fn trusted(&self) -> TrustedKey {
            TrustedKey::parse(&self.pk.to_base64()).unwrap()
        }
        fn sign(&self, data: &[u8]) -> String {
            minisign::sign(Some(&self.pk), &self.sk, data, Some("t"), None)
                .unwrap()
                .into_string()
        }
        fn bundle(&self, p: &Payload) -> Vec<u8> {
            let m = Manifest::of(p).unwrap().to_bytes();
            pack(&m, &self.sign(&m), p).unwrap()
        }
    }

    #[test]
    fn debians_minisign_signatures_verify() {
        let key = TrustedKey::parse(DEBIAN_PUBLIC).unwrap();
        assert_eq!(key.id(), "926E04F6225D523A", "the id minisign printed");
        let ok = check_signature(b"{\"fixture\":1}\n", DEBIAN_SIG, &[key]).unwrap();
        assert_eq!(ok, "926E04F6225D523A");
        let key = TrustedKey::parse(DEBIAN_PUBLIC).unwrap();
        assert!(matches!(
            check_signature(b"{\"fixture\":2}\n", DEBIAN_SIG, &[key]),
            Err(BundleError::BadSignature)
        ));
    }

    #[test]
    fn a_signed_bundle_opens_and_any_change_is_refused() {
        let s = Signer::new();
        let bundle = s.bundle(&payload());
        let v = open(&bundle, &[s.trusted()]).unwrap();
        assert_eq!(v.manifest.version, "0.2");
        assert_eq!(peek_version(&bundle).unwrap(), "0.2");
        assert!(peek_version(b"words").is_err());
        assert_eq!(v.payload.initrd, payload().initrd);
        assert_eq!(v.payload.release, payload().release);

        // Signed by a key that is not trusted.
        let other = Signer::new();
        let e = open(&bundle, &[other.trusted()]).unwrap_err();
        assert!(matches!(e, BundleError::UntrustedKey { .. }), "{e}");
        assert!(open(&bundle, &[])
            .unwrap_err()
            .to_string()
            .contains("trusted: none"));

        // The initramfs swapped after signing.
        let m = Manifest::of(&payload()).unwrap().to_bytes();
        let evil = Payload {
            initrd: vec![3; 3000],
            ..payload()
        };
        let swapped = pack(&m, &s.sign(&m), &evil).unwrap();
        assert!(matches!(
            open(&swapped, &[s.trusted()]),
            Err(BundleError::Mismatch("initramfs"))
        ));

        // The manifest edited after signing.
        let mut m2 = Manifest::of(&evil).unwrap();
        m2.version = "0.2".into();
        let edited = pack(&m2.to_bytes(), &s.sign(&m), &evil).unwrap();
        assert!(matches!(
            open(&edited, &[s.trusted()]),
            Err(BundleError::BadSignature)
        ));

        // A flipped byte anywhere in the kernel.
        let mut flipped = bundle.clone();
        let at = flipped.len() - 1024 - 3000 - 512 - 500;
        flipped[at] ^= 1;
        assert!(open(&flipped, &[s.trusted()]).is_err());
    }

    fn payload() -> Payload {
        Payload {
            kernel: vec![1; 1000],
            initrd: vec![2; 3000],
            release: b"NAME=\"Corral\"\nVERSION_ID=0.2\n".to_vec(),
        }
    }

    #[test]
    fn reads_version_ids() {
        assert_eq!(
            version_id("A=1\nVERSION_ID=\"0.2\"\n").as_deref(),
            Some("0.2")
        );
        assert_eq!(version_id("VERSION_ID=\n"), None);
        assert!(Manifest::of(&Payload {
            release: b"NAME=x\n".to_vec(),
            ..payload()
        })
        .is_err());
    }

    #[test]
    fn refuses_what_is_not_a_signed_bundle() {
        let keys = vec![TrustedKey::parse(DEBIAN_PUBLIC).unwrap()];
        let e = open(b"not a tar at all, just some words", &keys).unwrap_err();
        assert!(matches!(e, BundleError::Layout(_)), "{e}");
        let m = Manifest::of(&payload()).unwrap().to_bytes();
        // No signature entry at all.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(m.len() as u64);
        b.append_data(&mut h, MANIFEST, &m[..]).unwrap();
        let unsigned = b.into_inner().unwrap();
        let e = open(&unsigned, &keys).unwrap_err().to_string();
        assert!(e.contains("not signed"), "{e}");
        // A signature line that is not minisign's.
        let bundle = pack(&m, "untrusted comment: x\nnot base64\n", &payload()).unwrap();
        let e = open(&bundle, &keys).unwrap_err().to_string();
        assert!(e.contains("not a minisign signature"), "{e}");
    }
}
