//! Image recipes: `images/<name>/image.toml`.
//!
//! A recipe says which Debian packages to take files from, which files
//! (ELF binaries and modules bring the shared libraries they need, found by
//! their `DT_NEEDED` entries), what to add from the recipe directory and from
//! the project's own build, and the image's config and default service
//! definition. Every grant in that definition (an added capability, a
//! namespace shared with the host, a bind, a device, `privileged`, no
//! seccomp filter, a writable root) must
//! carry a one-line reason in `[reasons]`, which the image keeps in a label
//! so `corral system inspect` can show why the service has it.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::debs::Package;

/// Library directories the dynamic loader of Debian amd64 searches.
const LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

#[derive(Debug, Error)]
pub enum RecipeError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Debs(#[from] crate::debs::DebError),
}

type Result<T> = std::result::Result<T, RecipeError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecipeError + '_ {
    move |source| RecipeError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Recipe {
    /// Image name; the tag is `latest`.
    pub name: String,
    /// Debian packages to take files from (their dependencies are
    /// fetched too, for the libraries).
    #[serde(default)]
    pub packages: Vec<String>,
    /// Debian packages to take files from without fetching what they
    /// depend on: `docker.io` for its client alone, not the daemon's
    /// containerd, runc and iptables (the files' libraries still come from
    /// the other packages).
    #[serde(default)]
    pub standalone_packages: Vec<String>,
    /// Absolute paths inside the packages. A directory is taken whole; a
    /// symlink is taken with its target.
    #[serde(default)]
    pub files: Vec<String>,
    /// Image path = file in the recipe directory.
    #[serde(default)]
    pub copy: BTreeMap<String, String>,
    /// Image path = one of the project's binaries in the build output.
    #[serde(default)]
    pub binaries: BTreeMap<String, String>,
    /// Image path = link target.
    #[serde(default)]
    pub symlinks: BTreeMap<String, String>,
    /// Link every applet of the staged /bin/busybox (from
    /// busybox-static) that no other file provides.
    #[serde(default)]
    pub busybox_applets: bool,
    /// Image path = octal mode, applied last (e.g. sudoers 0440).
    #[serde(default)]
    pub modes: BTreeMap<String, String>,
    /// Empty directories, `PATH` or `PATH:MODE` (octal).
    #[serde(default)]
    pub dirs: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// The default service definition (the `[services.X]` keys).
    pub service: Option<toml::Table>,
    /// Why the service has each grant: `cap-add.NET_ADMIN`,
    /// `host-namespaces.net`, `binds./dev/log`, `devices./dev/kmsg`,
    /// `privileged`, `host-dev`, `seccomp` and `confined-paths` (turned off).
    #[serde(default)]
    pub reasons: BTreeMap<String, String>,
}

impl Recipe {
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(io(path))?;
        let recipe: Recipe = toml::from_str(&text).map_err(|e| RecipeError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        recipe.validate().map_err(|message| RecipeError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(recipe)
    }

    /// Checks the paths and the service definition, and that every grant
    /// has its reason (and no reason is left over for a grant that is gone).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!(
                "name {:?}: lowercase letters, digits and '-' only",
                self.name
            ));
        }
        let paths = self
            .files
            .iter()
            .chain(self.copy.keys())
            .chain(self.binaries.keys())
            .chain(self.symlinks.keys())
            .chain(self.modes.keys())
            .chain(self.dirs.iter());
        for p in paths {
            let p = p.split(':').next().unwrap_or(p);
            if !p.starts_with('/') || Path::new(p).components().any(|c| c == Component::ParentDir) {
                return Err(format!("path {p:?}: must be absolute, without '..'"));
            }
        }
        for (p, mode) in &self.modes {
            u32::from_str_radix(mode, 8)
                .map_err(|_| format!("modes: {p:?}: mode {mode:?} is not octal"))?;
        }
        for d in &self.dirs {
            if let Some((_, mode)) = d.split_once(':') {
                u32::from_str_radix(mode, 8)
                    .map_err(|_| format!("dirs: {d:?}: mode {mode:?} is not octal"))?;
            }
        }
        let grants = self.grants()?;
        for g in &grants {
            if !self.reasons.contains_key(g) {
                return Err(format!(
                    "[reasons]: {g:?} has no reason: say in one line why the service needs it"
                ));
            }
        }
        for k in self.reasons.keys() {
            if !grants.contains(k) {
                return Err(format!("[reasons]: {k:?} is not granted by [service]"));
            }
        }
        Ok(())
    }

    /// The service definition as the label's TOML, validated by the same
    /// parser sysd uses.
    pub fn service_toml(&self) -> std::result::Result<Option<String>, String> {
        Ok(self.service_def()?.map(|(text, _)| text))
    }

    /// `[service]` as TOML text and parsed, checked by the parser sysd uses.
    fn service_def(
        &self,
    ) -> std::result::Result<Option<(String, corral_config::ServiceDef)>, String> {
        let Some(table) = &self.service else {
            return Ok(None);
        };
        let text = toml::to_string(table).map_err(|e| e.to_string())?;
        let def = corral_config::ServiceDef::parse(&text).map_err(|e| format!("[service]: {e}"))?;
        Ok(Some((text, def)))
    }

    /// The keys of everything the service definition grants.
    fn grants(&self) -> std::result::Result<Vec<String>, String> {
        let Some((_, def)) = self.service_def()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for c in def.cap_add.iter().flatten() {
            out.push(format!("cap-add.{}", c.as_str()));
        }
        for n in def.host_namespaces.iter().flatten() {
            out.push(format!("host-namespaces.{}", n.as_str()));
        }
        for b in def.binds.iter().flatten() {
            out.push(format!("binds.{}", b.target));
        }
        for d in def.devices.iter().flatten() {
            out.push(format!("devices.{}", d.container));
        }
        if def.privileged == Some(true) {
            out.push("privileged".to_owned());
        }
        if def.host_dev == Some(true) {
            out.push("host-dev".to_owned());
        }
        if def.seccomp == Some(false) {
            out.push("seccomp".to_owned());
        }
        if def.no_new_privileges == Some(false) {
            out.push("no-new-privileges".to_owned());
        }
        if def.confined_paths == Some(false) {
            out.push("confined-paths".to_owned());
        }
        // A writable root is a grant too: anything in the service that
        // goes wrong could change its image's files for the next start.
        if def.readonly_rootfs != Some(true) && def.privileged != Some(true) {
            out.push("readonly-rootfs".to_owned());
        }
        Ok(out)
    }

    /// The reasons label: `key: reason` lines, sorted.
    pub fn reasons_label(&self) -> String {
        self.reasons
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Fills `stage` with the recipe's files.
pub struct Stager<'a> {
    pub stage: &'a Path,
    pub packages: &'a [Package],
    pub recipe_dir: &'a Path,
    pub out_dir: &'a Path,
    /// Packages that gave at least one file.
    pub used: Vec<String>,
    done: std::collections::BTreeSet<String>,
}

fn invalid(path: &Path, message: impl Into<String>) -> RecipeError {
    RecipeError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// `/a/b/../c` → `/a/c`, lexically (link targets inside a package tree).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

impl<'a> Stager<'a> {
    pub fn new(
        stage: &'a Path,
        packages: &'a [Package],
        recipe_dir: &'a Path,
        out_dir: &'a Path,
    ) -> Self {
        Self {
            stage,
            packages,
            recipe_dir,
            out_dir,
            used: Vec::new(),
            done: Default::default(),
        }
    }

    fn dest(&self, path: &str) -> PathBuf {
        self.stage.join(path.trim_start_matches('/'))
    }

    fn parent_dirs(&self, dest: &Path) -> Result<()> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        Ok(())
    }

    /// The package that ships `path` (its first component may be a
    /// symlink, as with /lib64 in some packages, so look it up literally).
    fn find(&self, path: &str) -> Option<&'a Package> {
        let rel = path.trim_start_matches('/');
        self.packages
            .iter()
            .find(|p| p.root.join(rel).symlink_metadata().is_ok())
    }

    pub fn stage_all(&mut self, recipe: &Recipe) -> Result<()> {
        fs::create_dir_all(self.stage).map_err(io(self.stage))?;
        for d in &recipe.dirs {
            let (path, mode) = match d.split_once(':') {
                Some((p, m)) => (p, u32::from_str_radix(m, 8).unwrap_or(0o755)),
                None => (d.as_str(), 0o755),
            };
            let dest = self.dest(path);
            fs::create_dir_all(&dest).map_err(io(&dest))?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(io(&dest))?;
        }
        for f in &recipe.files {
            self.take(f, true)?;
        }
        for (to, from) in &recipe.copy {
            let src = self.recipe_dir.join(from);
            self.copy_file(&src, to)?;
        }
        for (to, name) in &recipe.binaries {
            let src = self.out_dir.join(name);
            if !src.exists() {
                return Err(invalid(
                    &src,
                    "the project's binary is not built (make guest)",
                ));
            }
            self.copy_file(&src, to)?;
            self.libraries_of(&self.dest(to))?;
        }
        for (link, target) in &recipe.symlinks {
            let dest = self.dest(link);
            self.parent_dirs(&dest)?;
            let _ = fs::remove_file(&dest);
            symlink(target, &dest).map_err(io(&dest))?;
        }
        if recipe.busybox_applets {
            self.busybox_applets()?;
        }
        for (path, mode) in &recipe.modes {
            let dest = self.dest(path);
            let mode = u32::from_str_radix(mode, 8).unwrap_or(0o644);
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(io(&dest))?;
        }
        Ok(())
    }

    fn busybox_applets(&self) -> Result<()> {
        let busybox = self.dest("/bin/busybox");
        let out = std::process::Command::new(&busybox)
            .arg("--list-full")
            .output()
            .map_err(io(&busybox))?;
        if !out.status.success() {
            return Err(invalid(&busybox, "busybox --list-full failed"));
        }
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let dest = self.dest(applet);
            if applet == "bin/busybox" || applet == "linuxrc" || dest.symlink_metadata().is_ok() {
                continue;
            }
            self.parent_dirs(&dest)?;
            symlink("/bin/busybox", &dest).map_err(io(&dest))?;
        }
        Ok(())
    }

    fn copy_file(&self, src: &Path, to: &str) -> Result<()> {
        let dest = self.dest(to);
        self.parent_dirs(&dest)?;
        let _ = fs::remove_file(&dest);
        fs::copy(src, &dest).map_err(io(src))?;
        Ok(())
    }

    /// Copies `path` from the packages: a directory whole, a symlink with
    /// its target, an ELF file with its libraries. `required`: a missing
    /// path is an error (libraries' own lookups pass false and go on to
    /// the next directory).
    fn take(&mut self, path: &str, required: bool) -> Result<bool> {
        let path = normalize(Path::new(path)).to_string_lossy().into_owned();
        if self.done.contains(&path) {
            return Ok(true);
        }
        // A symlinked parent directory (usrmerge's /lib64 → usr/lib64):
        // resolve it inside the package tree first.
        let Some(pkg) = self.find(&path) else {
            if required {
                return Err(invalid(
                    Path::new(&path),
                    format!(
                        "not in any of the packages ({}) or their dependencies",
                        self.packages
                            .iter()
                            .take(3)
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            return Ok(false);
        };
        self.done.insert(path.clone());
        if !self.used.contains(&pkg.name) {
            self.used.push(pkg.name.clone());
        }
        let src = pkg.root.join(path.trim_start_matches('/'));
        let dest = self.dest(&path);
        self.parent_dirs(&dest)?;
        let meta = src.symlink_metadata().map_err(io(&src))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&src).map_err(io(&src))?;
            let _ = fs::remove_file(&dest);
            symlink(&target, &dest).map_err(io(&dest))?;
            let resolved = if target.is_absolute() {
                target
            } else {
                Path::new(&path)
                    .parent()
                    .unwrap_or(Path::new("/"))
                    .join(target)
            };
            self.take(&normalize(&resolved).to_string_lossy(), required)?;
        } else if meta.is_dir() {
            fs::create_dir_all(&dest).map_err(io(&dest))?;
            let mut names: Vec<_> = fs::read_dir(&src)
                .map_err(io(&src))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                self.take(&format!("{path}/{n}"), true)?;
            }
        } else {
            let _ = fs::remove_file(&dest);
            fs::copy(&src, &dest).map_err(io(&src))?;
            fs::set_permissions(&dest, meta.permissions()).map_err(io(&dest))?;
            self.libraries_of(&dest)?;
        }
        Ok(true)
    }

    /// Takes the interpreter and every `DT_NEEDED` library of an ELF file
    /// (a no-op for anything else).
    fn libraries_of(&mut self, file: &Path) -> Result<()> {
        let bytes = fs::read(file).map_err(io(file))?;
        if !bytes.starts_with(b"\x7fELF") {
            return Ok(());
        }
        let elf = goblin::elf::Elf::parse(&bytes)
            .map_err(|e| invalid(file, format!("cannot parse ELF: {e}")))?;
        if let Some(interp) = elf.interpreter {
            self.take(interp, true)?;
        }
        let origin = Path::new("/").join(file.strip_prefix(self.stage).unwrap_or(file));
        let origin = origin
            .parent()
            .unwrap_or(Path::new("/"))
            .to_string_lossy()
            .into_owned();
        let mut dirs: Vec<String> = elf
            .runpaths
            .iter()
            .chain(elf.rpaths.iter())
            .flat_map(|r| r.split(':'))
            .map(|d| d.replace("$ORIGIN", &origin))
            .collect();
        dirs.extend(LIB_DIRS.iter().map(|d| d.to_string()));
        for lib in elf.libraries {
            // Package preference first, then the directory order: with
            // libsystemd0 in /usr/lib and libelogind0 providing the same
            // soname in /lib, the package Debian prefers wins.
            let path = self.packages.iter().find_map(|p| {
                dirs.iter().map(|d| format!("{d}/{lib}")).find(|path| {
                    p.root
                        .join(path.trim_start_matches('/'))
                        .symlink_metadata()
                        .is_ok()
                })
            });
            let found = match path {
                Some(path) => self.take(&path, false)?,
                None => false,
            };
            if !found {
                return Err(invalid(
                    file,
                    format!("needs {lib}, which no package in the dependency closure ships"),
                ));
            }
            if lib == "libc.so.6" {
                // glibc dlopens libgcc_s for pthread_exit and cancellation
                // (rsyslogd aborts at shutdown without it); libc6 depends
                // on libgcc-s1, so it is in the closure.
                for d in LIB_DIRS {
                    if self.take(&format!("{d}/libgcc_s.so.1"), false)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(text: &str) -> std::result::Result<Recipe, String> {
        let r: Recipe = toml::from_str(text).map_err(|e| e.to_string())?;
        r.validate()?;
        Ok(r)
    }

    #[test]
    fn every_grant_needs_a_reason() {
        let base =
            "name = \"net\"\n[service]\ncap-add = [\"NET_ADMIN\"]\nhost-namespaces = [\"net\"]\nreadonly-rootfs = true\n";
        let e = recipe(base).unwrap_err();
        assert!(e.contains("cap-add.NET_ADMIN"), "{e}");
        let e = recipe(&format!(
            "{base}[reasons]\n\"cap-add.NET_ADMIN\" = \"sets addresses\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("host-namespaces.net"), "{e}");
        let ok = format!(
            "{base}[reasons]\n\"cap-add.NET_ADMIN\" = \"sets addresses\"\n\"host-namespaces.net\" = \"configures the host's links\"\n"
        );
        let r = recipe(&ok).unwrap();
        assert_eq!(
            r.reasons_label(),
            "cap-add.NET_ADMIN: sets addresses\nhost-namespaces.net: configures the host's links"
        );
        // A writable root needs its reason too.
        let e = recipe("name = \"x\"\n[service]\nrestart = \"always\"\n").unwrap_err();
        assert!(e.contains("\"readonly-rootfs\" has no reason"), "{e}");
        recipe("name = \"x\"\n[service]\nrestart = \"always\"\n[reasons]\n\"readonly-rootfs\" = \"writes its cache\"\n").unwrap();
        recipe("name = \"x\"\n[service]\nreadonly-rootfs = true\n").unwrap();
    }

    #[test]
    fn stale_reasons_and_bad_definitions_are_refused() {
        let e = recipe("name = \"x\"\n[reasons]\nprivileged = \"old\"\n").unwrap_err();
        assert!(e.contains("not granted"), "{e}");
        let e = recipe("name = \"x\"\n[service]\nrestart = \"sometimes\"\n").unwrap_err();
        assert!(e.contains("restart"), "{e}");
        let e = recipe("name = \"x\"\nfiles = [\"usr/bin/x\"]\n").unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        let e = recipe("name = \"x\"\ndirs = [\"/tmp:17z7\"]\n").unwrap_err();
        assert!(e.contains("octal"), "{e}");
        assert!(recipe("name = \"X\"\n").is_err());
    }

    #[test]
    fn binds_and_devices_are_named_by_their_container_path() {
        let r = recipe(
            "name = \"log\"\n[service]\nbinds = [\"/run/corral/log:/run/log\"]\ndevices = [\"/dev/kmsg:/dev/kmsg:r\"]\nreadonly-rootfs = true\n[reasons]\n\"binds./run/log\" = \"its socket\"\n\"devices./dev/kmsg\" = \"kernel log\"\n",
        )
        .unwrap();
        assert_eq!(r.reasons.len(), 2);
    }

    #[test]
    fn normalizes_link_targets() {
        assert_eq!(
            normalize(Path::new("/lib64/../lib/x86_64-linux-gnu/./libc.so.6")),
            PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6")
        );
    }

    #[test]
    fn stages_files_with_links_and_libraries() {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = tmp.path().join("pkg");
        fs::create_dir_all(pkg.join("usr/bin")).unwrap();
        fs::create_dir_all(pkg.join("usr/share/doc/x")).unwrap();
        fs::write(pkg.join("usr/bin/real"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(pkg.join("usr/bin/real"), fs::Permissions::from_mode(0o4755)).unwrap();
        symlink("real", pkg.join("usr/bin/alias")).unwrap();
        fs::write(pkg.join("usr/share/doc/x/README"), "x").unwrap();
        let packages = vec![Package {
            name: "x".into(),
            version: "1".into(),
            root: pkg,
        }];
        let stage = tmp.path().join("stage");
        let r = recipe("name = \"x\"\nfiles = [\"/usr/bin/alias\", \"/usr/share/doc/x\"]\ndirs = [\"/tmp:1777\"]\n[symlinks]\n\"/bin/sh\" = \"busybox\"\n").unwrap();
        let mut s = Stager::new(&stage, &packages, tmp.path(), tmp.path());
        s.stage_all(&r).unwrap();
        assert_eq!(
            fs::read_link(stage.join("usr/bin/alias")).unwrap(),
            PathBuf::from("real")
        );
        let mode = fs::metadata(stage.join("usr/bin/real"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o4755, "setuid bit kept");
        assert!(stage.join("usr/share/doc/x/README").exists());
        assert_eq!(
            fs::metadata(stage.join("tmp"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o1777
        );
        assert_eq!(
            fs::read_link(stage.join("bin/sh")).unwrap(),
            PathBuf::from("busybox")
        );
        assert_eq!(s.used, ["x"]);
        let r = recipe("name = \"x\"\nfiles = [\"/usr/bin/missing\"]\n").unwrap();
        let e = Stager::new(&stage, &packages, tmp.path(), tmp.path())
            .stage_all(&r)
            .unwrap_err();
        assert!(e.to_string().contains("/usr/bin/missing"), "{e}");
    }
}
