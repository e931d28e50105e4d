//! The config the machine boots with, from its layers (later wins):
//! the embedded defaults, the state disk's `config.toml`, a NoCloud config
//! drive's `user-data`, and `corral.<key>=<value>` on the kernel command
//! line. Each layer is checked before it is used; a bad one is reported
//! and left out, never fatal. The state disk's file is the user's: when it
//! no longer parses it is moved aside (not deleted) and the last config
//! that booted is put back.
//!
//! The result is published in /run/corral/config for sysd, the services
//! and `corral config`: `effective.toml`, one `<layer>.toml` per layer in
//! use, and `status` (what happened to each layer).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use corral_config::layers::{self, Layer, LayerKind, Merged};
use corral_config::{fsutil, Config, DEFAULT_PATH, PERSISTED_PATH, RUN_DIR};
use log::{error, info, warn};

/// The copy of the state disk's config that last booted (kept by init).
pub const LAST_GOOD: &str = "/var/lib/corral/config.toml.last-good";
/// The filesystem label of a NoCloud config drive (cloud-init's).
const CIDATA: &str = "cidata";
/// Where a config drive is mounted while its user-data is read.
const DRIVE_MOUNT: &str = "/run/corral/cidata";
const USER_DATA_MAX: u64 = 1 << 20;

/// The layers found so far, and the kernel command line's settings.
#[derive(Debug, Default)]
pub struct Layers {
    pub defaults: Option<Layer>,
    pub state: Option<Layer>,
    pub drive: Option<Layer>,
    pub params: Vec<(String, Option<String>)>,
}

/// The embedded defaults. A broken file is reported and replaced by the
/// compiled-in defaults (the built-in services still start).
pub fn defaults() -> (Option<Layer>, String) {
    let text = match std::fs::read_to_string(DEFAULT_PATH) {
        Ok(t) => t,
        Err(e) => {
            error!("cannot read {DEFAULT_PATH}: {e}; booting with the built-in default configuration instead");
            return (
                None,
                format!("defaults: unreadable ({e}); built-in defaults used"),
            );
        }
    };
    let checked = Layer::parse(LayerKind::Defaults, DEFAULT_PATH, &text)
        .and_then(|l| layers::merge(std::slice::from_ref(&l)).map(|_| l));
    match checked {
        Ok(l) => (Some(l), format!("defaults: {DEFAULT_PATH}")),
        Err(e) => {
            error!("{e}");
            error!("booting with the built-in default configuration instead");
            (None, format!("defaults: {e}; built-in defaults used"))
        }
    }
}

impl Layers {
    /// The stack in order, with the command line's settings checked over
    /// what is below them. The config drive is left out (and said so) only
    /// when no stack with it, command line included, is valid. `quiet`
    /// skips logging (the first pass, before the state disk, would repeat
    /// every warning).
    pub fn stack(&self, quiet: bool) -> (Vec<Layer>, Vec<String>) {
        let base: Vec<Layer> = [&self.defaults, &self.state]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let mut notes = Vec::new();
        let mut chosen = None;
        if let Some(drive) = &self.drive {
            let mut with_drive = base.clone();
            with_drive.push(drive.clone());
            let (stack, warnings) = self.with_cmdline(with_drive);
            match layers::merge(&stack) {
                Ok(_) => chosen = Some((stack, warnings)),
                Err(e) => {
                    if !quiet {
                        error!("config drive: {e}; its settings are ignored");
                    }
                    notes.push(format!("drive: ignored: {e}"));
                }
            }
        }
        let (stack, warnings) = chosen.unwrap_or_else(|| self.with_cmdline(base));
        for w in &warnings {
            if !quiet {
                warn!("kernel command line: {w}");
            }
            notes.push(format!("cmdline: {w}"));
        }
        (stack, notes)
    }

    /// `below` with the command line's layer on top (if it sets anything),
    /// and the warnings about the parameters it could not use.
    fn with_cmdline(&self, mut below: Vec<Layer>) -> (Vec<Layer>, Vec<String>) {
        if self.params.is_empty() {
            return (below, Vec::new());
        }
        let (layer, warnings) = layers::cmdline_layer(&self.params, &below);
        if !layer.is_empty() {
            below.push(layer);
        }
        (below, warnings)
    }

    /// The merged config. Every layer in the stack was checked against the
    /// ones below, so this holds; if it somehow does not, the defaults
    /// alone are used.
    pub fn merged(&self, quiet: bool) -> (Vec<Layer>, Merged, Vec<String>) {
        let (stack, notes) = self.stack(quiet);
        match layers::merge(&stack) {
            Ok(m) => (stack, m, notes),
            Err(e) => {
                error!("{e}; booting with the defaults only");
                let base: Vec<Layer> = self.defaults.iter().cloned().collect();
                let m = layers::merge(&base).unwrap_or_else(|_| Merged {
                    config: Config::default(),
                    table: toml::Table::new(),
                    text: String::new(),
                });
                (base, m, notes)
            }
        }
    }
}

/// The state disk's config, once the disk is mounted. A file that parses
/// becomes the last good copy; one that does not is moved aside and the
/// last good copy takes its place.
pub fn state_layer(layers: &Layers) -> (Option<Layer>, String) {
    state_layer_at(
        Path::new(PERSISTED_PATH),
        Path::new(LAST_GOOD),
        Path::new(RUN_DIR),
        layers,
    )
}

/// [`state_layer`] with its paths given (the tests use a temporary
/// directory): the saved file, its last good copy, and the directory that
/// gets a readable copy of a broken file. `found` holds the other layers:
/// the file is broken when it does not parse, or breaks a rule both on
/// its own over the defaults and with the drive and command line over it
/// (sysd accepted it in the whole stack; a rule the drive satisfies is
/// not a reason to throw the file away).
pub fn state_layer_at(
    saved: &Path,
    last_good: &Path,
    run_dir: &Path,
    found: &Layers,
) -> (Option<Layer>, String) {
    let origin = saved.display().to_string();
    if let Some(dir) = saved.parent() {
        // A power cut during a write leaves its temporary file.
        corral_config::fsutil::remove_temporaries(dir);
    }
    let check = |text: &str, origin: &str| {
        let l = Layer::parse(LayerKind::State, origin, text)?;
        let base: Vec<Layer> = found.defaults.iter().cloned().chain([l.clone()]).collect();
        let alone = layers::merge(&base);
        if alone.is_ok() {
            return Ok(l);
        }
        // The same stack init will boot with (drive dropped only if it
        // cannot fit), so a file accepted here is never left without the
        // layers it needs.
        let with = Layers {
            defaults: found.defaults.clone(),
            state: Some(l.clone()),
            drive: found.drive.clone(),
            params: found.params.clone(),
        };
        match layers::merge(&with.stack(true).0) {
            Ok(_) => Ok(l),
            Err(_) => alone.map(|_| l),
        }
    };
    let problem = match std::fs::read_to_string(saved) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (None, "state: none saved yet".into())
        }
        // Unreadable (not UTF-8, an I/O error) counts as broken too.
        Err(e) => format!("cannot read {origin}: {e}"),
        Ok(text) => match check(&text, &origin) {
            Ok(layer) => {
                if std::fs::read_to_string(last_good).ok().as_deref() != Some(text.as_str()) {
                    let kept = fsutil::write_atomic(last_good, text.as_bytes(), 0o600, false);
                    if let Err(e) = kept {
                        warn!(
                            "cannot keep a last good copy in {}: {e}",
                            last_good.display()
                        );
                    }
                }
                info!("config: {origin} laid over the defaults");
                return (Some(layer), format!("state: {origin}"));
            }
            Err(e) => e.to_string(),
        },
    };
    error!("THE SAVED CONFIG IS BROKEN: {problem}");
    let aside = set_aside(saved);
    match &aside {
        Ok(p) => {
            // The console and SSH containers do not see the state disk's
            // root: a copy in /run/corral/config lets the user look at it.
            let copy = run_dir.join("broken.toml");
            // Readable by the SSH user, like effective.toml (fs::copy would
            // keep the saved file's 0600).
            let copied = std::fs::create_dir_all(run_dir)
                .and_then(|()| std::fs::read(p))
                .and_then(|bytes| std::fs::write(&copy, bytes));
            error!("the broken file is kept as {}", p.display());
            match copied {
                Ok(()) => error!(
                    "see what is wrong with: corral config validate {}",
                    copy.display()
                ),
                Err(e) => warn!("cannot copy it to {}: {e}", copy.display()),
            }
        }
        Err(e) => error!("cannot move the broken {origin} aside: {e}"),
    }
    let kept = aside
        .as_ref()
        .map(|p| format!("kept as {}", p.display()))
        .unwrap_or_else(|e| format!("could not be moved aside: {e}"));
    let last = std::fs::read_to_string(last_good)
        .ok()
        .and_then(|t| check(&t, &origin).ok());
    match last {
        Some(layer) => {
            if aside.is_ok() {
                if let Err(e) = fsutil::write_atomic(saved, layer.text.as_bytes(), 0o600, false) {
                    error!("cannot put the last good config back in {origin}: {e}");
                }
            }
            error!(
                "booting with the last good config (from {})",
                last_good.display()
            );
            (
                Some(layer),
                format!("state: BROKEN, {kept}; the last good config is used: {problem}"),
            )
        }
        None => {
            error!("there is no last good config: booting without the saved settings");
            (
                None,
                format!("state: BROKEN, {kept}; no last good config: {problem}"),
            )
        }
    }
}

/// Renames a file to `NAME.broken` (or `.broken.1`, `.2`, ... if taken).
fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let base = format!("{}.broken", path.display());
    let mut target = PathBuf::from(&base);
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    std::fs::rename(path, &target)?;
    Ok(target)
}

/// What the start of a device says about a config drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveFs {
    Vfat(String),
    Iso9660(String),
}

impl DriveFs {
    fn fstype(&self) -> &'static str {
        match self {
            DriveFs::Vfat(_) => "vfat",
            DriveFs::Iso9660(_) => "iso9660",
        }
    }

    fn label(&self) -> &str {
        match self {
            DriveFs::Vfat(l) | DriveFs::Iso9660(l) => l,
        }
    }
}

/// Reads a FAT boot sector's volume label (FAT12/16 at 0x2B, FAT32 at
/// 0x47) or an ISO 9660 primary volume descriptor's (sector 16, +40).
pub fn identify_drive(head: &[u8]) -> Option<DriveFs> {
    let text = |r: std::ops::Range<usize>| {
        head.get(r).map(|b| {
            String::from_utf8_lossy(b)
                .trim_end_matches([' ', '\0'])
                .to_owned()
        })
    };
    if head.get(0x8000) == Some(&1) && head.get(0x8001..0x8006) == Some(&b"CD001"[..]) {
        return text(0x8028..0x8048).map(DriveFs::Iso9660);
    }
    if head.get(510..512) == Some(&[0x55, 0xAA][..]) {
        if head.get(0x52..0x57) == Some(&b"FAT32"[..]) {
            return text(0x47..0x52).map(DriveFs::Vfat);
        }
        if head.get(0x36..0x39) == Some(&b"FAT"[..]) {
            return text(0x2B..0x36).map(DriveFs::Vfat);
        }
    }
    None
}

/// The first config drive among the block devices, and its user-data.
pub fn drive_layer() -> (Option<Layer>, String) {
    for (name, _) in crate::state::block_devices(true) {
        let dev = PathBuf::from(format!("/dev/{name}"));
        let mut head = Vec::with_capacity(0x8800);
        let read = File::open(&dev).and_then(|f| f.take(0x8800).read_to_end(&mut head));
        if read.is_err() {
            continue;
        }
        let Some(fs) = identify_drive(&head) else {
            continue;
        };
        if !fs.label().eq_ignore_ascii_case(CIDATA) {
            continue;
        }
        return read_drive(&dev, &fs);
    }
    (None, "drive: none".into())
}

fn read_drive(dev: &Path, fs: &DriveFs) -> (Option<Layer>, String) {
    use nix::mount::MsFlags;
    let d = dev.display();
    let _ = std::fs::create_dir_all(DRIVE_MOUNT);
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = nix::mount::mount(
        Some(dev),
        DRIVE_MOUNT,
        Some(fs.fstype()),
        flags,
        None::<&str>,
    ) {
        error!("config drive {d} ({}): cannot mount it: {e}", fs.fstype());
        return (None, format!("drive: {d}: cannot mount: {e}"));
    }
    let path = Path::new(DRIVE_MOUNT).join("user-data");
    let mut bytes = Vec::new();
    let read = File::open(&path)
        .and_then(|f| f.take(USER_DATA_MAX + 1).read_to_end(&mut bytes))
        .and_then(|n| {
            if n as u64 > USER_DATA_MAX {
                return Err(std::io::Error::other(format!(
                    "it is larger than {} KiB; a config is a few KiB",
                    USER_DATA_MAX / 1024
                )));
            }
            String::from_utf8(std::mem::take(&mut bytes))
                .map_err(|_| std::io::Error::other("it is not UTF-8 text"))
        });
    if let Err(e) = nix::mount::umount(DRIVE_MOUNT) {
        warn!("config drive {d}: unmounting: {e}");
    }
    let _ = std::fs::remove_dir(DRIVE_MOUNT);
    let origin = format!("{d}:user-data");
    let text = match read {
        Ok(t) => t,
        Err(e) => {
            error!("config drive {d}: cannot read user-data: {e}");
            return (None, format!("drive: {d}: no user-data: {e}"));
        }
    };
    match parse_user_data(&text, &origin) {
        Ok(layer) => {
            info!("config drive {d}: user-data laid over the saved config");
            (Some(layer), format!("drive: {origin}"))
        }
        Err(message) => {
            error!("config drive {d}: {message}");
            (None, format!("drive: {d}: ignored: {message}"))
        }
    }
}

/// user-data is Corral TOML. cloud-init's formats are recognised so the
/// message can say what to do instead of showing a TOML syntax error.
pub fn parse_user_data(text: &str, origin: &str) -> Result<Layer, String> {
    let first = text.trim_start_matches('\u{feff}').trim_start();
    if first.starts_with("#cloud-config") {
        return Err(
            "user-data is cloud-init YAML (#cloud-config), which Corral does not read; \
             write Corral's TOML config there instead (for example `hostname = \"node-1\"` and \
             `[ssh] authorized-keys = [\"ssh-ed25519 AAAA... you@host\"]`); booting without it"
                .into(),
        );
    }
    if first.starts_with("#!") || first.starts_with("Content-Type:") {
        return Err(
            "user-data is a cloud-init script or MIME archive, which Corral does not run; \
             write Corral's TOML config there instead; booting without it"
                .into(),
        );
    }
    Layer::parse(LayerKind::Drive, origin, text).map_err(|e| format!("{e}; booting without it"))
}

/// Writes /run/corral/config: the merged config, each layer in use, and
/// the status lines.
pub fn publish(stack: &[Layer], merged: &Merged, status: &[String]) {
    use std::os::unix::fs::DirBuilderExt;
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(RUN_DIR)
    {
        error!("cannot create {RUN_DIR}: {e}");
        return;
    }
    let dir = Path::new(RUN_DIR);
    let mut errors = layers::publish(dir, stack, &merged.text);
    let status_file = dir.join("status");
    if let Err(e) = fsutil::write_atomic(
        &status_file,
        (status.join("\n") + "\n").as_bytes(),
        0o644,
        false,
    ) {
        errors.push(format!("cannot write {}: {e}", status_file.display()));
    }
    for e in errors {
        error!("{e}");
    }
}

/// Sets the configured kernel parameters.
pub fn apply_sysctls(config: &Config) {
    for (key, value) in &config.sysctl {
        match corral_config::system::write_sysctl(key, value) {
            Ok(()) => info!("sysctl {key} = {value}"),
            Err(e) => error!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fat16(label: &str) -> Vec<u8> {
        let mut b = vec![0u8; 0x8800];
        b[0x36..0x3E].copy_from_slice(b"FAT16   ");
        let mut l = [b' '; 11];
        l[..label.len()].copy_from_slice(label.as_bytes());
        b[0x2B..0x36].copy_from_slice(&l);
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn finds_fat_and_iso_labels() {
        assert_eq!(
            identify_drive(&fat16("cidata")),
            Some(DriveFs::Vfat("cidata".into()))
        );
        let mut fat32 = vec![0u8; 0x8800];
        fat32[0x52..0x5A].copy_from_slice(b"FAT32   ");
        fat32[0x47..0x52].copy_from_slice(b"CIDATA     ");
        fat32[510] = 0x55;
        fat32[511] = 0xAA;
        assert_eq!(identify_drive(&fat32), Some(DriveFs::Vfat("CIDATA".into())));
        let mut iso = vec![0u8; 0x8800];
        iso[0x8000] = 1;
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        iso[0x8028..0x8048].copy_from_slice(format!("{:<32}", "cidata").as_bytes());
        assert_eq!(
            identify_drive(&iso),
            Some(DriveFs::Iso9660("cidata".into()))
        );
        assert_eq!(identify_drive(&vec![0u8; 0x8800]), None);
        assert_eq!(identify_drive(&[0u8; 10]), None, "short devices are fine");
    }

    #[test]
    fn a_real_mkfs_vfat_image_is_recognised() {
        // The boot test's drive is made this way too (make deps installs
        // dosfstools).
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("cidata.img");
        let st = std::process::Command::new("/sbin/mkfs.vfat")
            .args(["-n", "cidata", "-C"])
            .arg(&img)
            .arg("1024")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("/sbin/mkfs.vfat (dosfstools) runs");
        assert!(st.success());
        let head = std::fs::read(&img).unwrap();
        let found = identify_drive(&head).expect("a FAT filesystem");
        assert_eq!(found.fstype(), "vfat");
        assert!(found.label().eq_ignore_ascii_case(CIDATA), "{found:?}");
    }

    fn state_dir() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("config.toml");
        let last = dir.path().join("config.toml.last-good");
        let run = dir.path().join("run");
        (dir, saved, last, run)
    }

    #[test]
    fn a_good_saved_config_is_used_and_becomes_the_last_good_one() {
        let (_d, saved, last, run) = state_dir();
        let (none, status) = state_layer_at(&saved, &last, &run, &Layers::default());
        assert!(none.is_none());
        assert_eq!(status, "state: none saved yet");
        std::fs::write(&saved, "hostname = \"a\"\n").unwrap();
        let (layer, _) = state_layer_at(&saved, &last, &run, &Layers::default());
        assert!(layer.unwrap().text.contains("\"a\""));
        assert_eq!(
            std::fs::read_to_string(&last).unwrap(),
            "hostname = \"a\"\n"
        );
    }

    #[test]
    fn a_broken_saved_config_is_kept_aside_and_the_last_good_one_restored() {
        let (_d, saved, last, run) = state_dir();
        std::fs::write(&saved, "hostname = \"good\"\n").unwrap();
        state_layer_at(&saved, &last, &run, &Layers::default());
        std::fs::write(&saved, "hostname = \"unterminated\n").unwrap();
        let (layer, status) = state_layer_at(&saved, &last, &run, &Layers::default());
        assert!(layer.unwrap().text.contains("good"));
        assert!(status.starts_with("state: BROKEN, kept as "), "{status}");
        let aside = saved.with_file_name("config.toml.broken");
        assert_eq!(
            std::fs::read_to_string(&aside).unwrap(),
            "hostname = \"unterminated\n"
        );
        assert!(std::fs::read_to_string(run.join("broken.toml"))
            .unwrap()
            .contains("unterminated"));
        assert_eq!(
            std::fs::read_to_string(&saved).unwrap(),
            "hostname = \"good\"\n"
        );
        // Broken again: the first broken file is not overwritten.
        std::fs::write(&saved, "nonsense =").unwrap();
        state_layer_at(&saved, &last, &run, &Layers::default());
        assert!(aside.exists());
        assert_eq!(
            std::fs::read_to_string(saved.with_file_name("config.toml.broken.1")).unwrap(),
            "nonsense ="
        );
    }

    #[test]
    fn a_saved_config_that_needs_the_drive_is_not_broken() {
        // sysd accepted an MTU for eth1 because the drive defines eth1.
        let (_d, saved, last, run) = state_dir();
        std::fs::write(&saved, "[network.interfaces.eth1]\nmtu = 9000\n").unwrap();
        let found = Layers {
            drive: Some(
                Layer::parse(
                    LayerKind::Drive,
                    "d",
                    "[network.interfaces.eth1]\ndhcp = true\n",
                )
                .unwrap(),
            ),
            ..Default::default()
        };
        let (layer, status) = state_layer_at(&saved, &last, &run, &found);
        assert!(layer.is_some(), "{status}");
        assert!(saved.exists());
        // Without the drive it is broken.
        let (layer, status) = state_layer_at(&saved, &last, &run, &Layers::default());
        assert!(layer.is_none(), "{status}");
    }

    #[test]
    fn the_drive_stays_when_the_saved_config_needs_the_command_line() {
        let l = Layers {
            state: Some(
                Layer::parse(
                    LayerKind::State,
                    "s",
                    "[network.interfaces.eth1]\nmtu = 9000\n",
                )
                .unwrap(),
            ),
            drive: Some(Layer::parse(LayerKind::Drive, "d", "hostname = \"drive\"\n").unwrap()),
            params: vec![("network.interfaces.eth1.dhcp".into(), None)],
            ..Default::default()
        };
        let (stack, merged, notes) = l.merged(true);
        assert_eq!(stack.len(), 3, "{notes:?}");
        assert_eq!(merged.config.hostname.unwrap().as_str(), "drive");
        assert_eq!(merged.config.network.interfaces["eth1"].mtu, Some(9000));
    }

    #[test]
    fn a_broken_config_without_a_last_good_one_boots_without_it() {
        let (_d, saved, last, run) = state_dir();
        std::fs::write(&saved, "[syslog]\nkeep = 0\n").unwrap();
        let (layer, status) = state_layer_at(&saved, &last, &run, &Layers::default());
        assert!(layer.is_none());
        assert!(status.contains("no last good config"), "{status}");
        assert!(status.contains("syslog.keep"), "{status}");
        assert!(!saved.exists(), "moved aside, nothing put in its place");
    }

    #[test]
    fn cloud_config_user_data_gets_a_clear_refusal() {
        let e = parse_user_data("#cloud-config\nhostname: x\n", "d").unwrap_err();
        assert!(e.contains("cloud-init YAML"), "{e}");
        assert!(e.contains("Corral's TOML config"), "{e}");
        let e = parse_user_data("#!/bin/sh\necho hi\n", "d").unwrap_err();
        assert!(e.contains("does not run"), "{e}");
        let e = parse_user_data("hostname = 1\n", "/dev/vdc:user-data").unwrap_err();
        assert!(e.starts_with("/dev/vdc:user-data:1:12: hostname: "), "{e}");
        let l = parse_user_data("hostname = \"from-drive\"\n", "d").unwrap();
        assert_eq!(l.kind, LayerKind::Drive);
    }

    #[test]
    fn the_stack_orders_layers_and_drops_a_drive_that_breaks_a_rule() {
        let defaults = Layer::parse(
            LayerKind::Defaults,
            "d",
            "[network.interfaces.eth0]\ndhcp = true\n",
        )
        .unwrap();
        let drive = Layer::parse(
            LayerKind::Drive,
            "drive",
            "hostname = \"drive\"\n[syslog]\nkeep = 4\n",
        )
        .unwrap();
        let l = Layers {
            defaults: Some(defaults.clone()),
            state: Some(Layer::parse(LayerKind::State, "s", "hostname = \"state\"\n").unwrap()),
            drive: Some(drive),
            params: vec![("syslog.keep".into(), Some("3".into()))],
        };
        let (stack, merged, notes) = l.merged(true);
        let kinds: Vec<LayerKind> = stack.iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            [
                LayerKind::Defaults,
                LayerKind::State,
                LayerKind::Drive,
                LayerKind::Cmdline
            ]
        );
        assert_eq!(merged.config.hostname.unwrap().as_str(), "drive");
        assert_eq!(merged.config.syslog.keep, 3, "the command line wins");
        assert!(notes.is_empty(), "{notes:?}");

        let bad_drive = Layer::parse(
            LayerKind::Drive,
            "drive",
            "[network.interfaces.eth1]\nmtu = 1400\n",
        )
        .unwrap();
        let l = Layers {
            defaults: Some(defaults),
            drive: Some(bad_drive),
            ..Default::default()
        };
        let (stack, _, notes) = l.merged(true);
        assert_eq!(stack.len(), 1);
        assert!(notes[0].contains("dhcp = true or addresses"), "{notes:?}");
    }
}
