//! Signed A/B upgrades and automatic rollback, on the disk image booted
//! through SeaBIOS, one VM that reboots through GRUB as a machine does.
//!
//! The bundles are made here with `corral-bundle`, the tool `make release`
//! uses, signed with the build's release key (which the system trusts):
//! - a second build, "0.2-test": this build's kernel and initramfs with an
//!   archive appended that replaces /etc/os-release (the kernel unpacks
//!   concatenated archives in order);
//! - a broken one: a signed initramfs that is junk, so the kernel panics;
//! - one signed by a key the system does not trust, and one changed after
//!   signing: both refused before anything is written.
//!
//! The machine upgrades to 0.2-test (trial, healthy, promoted), then tries
//! the broken bundle (panic, rolled back by GRUB), then 0.2-test again with
//! a health check that fails (rolled back at the deadline), then again with
//! the kernel hung in a panic during the trial (the watchdog resets it,
//! rolled back). The state disk's config and a file on it survive all of
//! it. The first upgrade comes from a registry on the host (Debian's
//! `docker-registry`, the image pushed by skopeo), the others over HTTP
//! from the host (`corral os upgrade URL`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use corral_qemu::{out_dir, Boot, Drive, Firmware, Medium, Vm, VmConfig};

mod common;
use common::registry::{certificates, Registry};
use common::{nocloud_drive, test_key, work_dir, OrFail, CMD};

/// Firmware, GRUB and a boot under TCG.
const BOOT: Duration = Duration::from_secs(300);
/// A trial boot that never becomes healthy: the deadline (60 s) and the
/// reboot; or a hang: the watchdog's 30 s and the reboot.
const ROLLBACK: Duration = Duration::from_secs(600);

fn host_bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/debug")
        .join(name)
}

fn release_key() -> PathBuf {
    std::env::var_os("RELEASE_KEY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".local/share/corral/release.key")
        })
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bundle(dir: &Path, name: &str, initrd: &Path, release: &Path, secret: &Path) -> PathBuf {
    let out = dir.join("www").join(name);
    run(Command::new(host_bin("corral-bundle"))
        .arg("create")
        .arg("--kernel")
        .arg(out_dir().join("bzImage"))
        .arg("--initrd")
        .arg(initrd)
        .arg("--release")
        .arg(release)
        .arg("--secret")
        .arg(secret)
        .arg("--output")
        .arg(&out));
    out
}

/// The bundles of the test, in `dir/www`.
fn make_bundles(dir: &Path) {
    std::fs::create_dir_all(dir.join("www")).unwrap();
    let key = release_key();
    assert!(key.exists(), "{} missing (make builds it)", key.display());

    // 0.2-test: this build plus an archive that replaces os-release.
    let release = dir.join("os-release-0.2");
    std::fs::write(
        &release,
        "NAME=\"Corral\"\nID=corral\nPRETTY_NAME=\"Corral 0.2-test\"\nVERSION_ID=0.2-test\n",
    )
    .unwrap();
    let overlay = dir.join("overlay.d");
    std::fs::create_dir_all(overlay.join("etc")).unwrap();
    std::fs::copy(&release, overlay.join("etc/os-release")).unwrap();
    let cpio = dir.join("overlay.cpio");
    run(Command::new(host_bin("corral-initramfs"))
        .arg("--root")
        .arg(&overlay)
        .arg("--output")
        .arg(&cpio));
    let mut initrd = std::fs::read(out_dir().join("initramfs.img")).unwrap();
    // An uncompressed archive after a compressed one must start 4-byte
    // aligned; the kernel skips the zeros in between.
    initrd.resize(initrd.len().div_ceil(512) * 512, 0);
    initrd.extend(std::fs::read(&cpio).unwrap());
    let second = dir.join("initrd-0.2.img");
    std::fs::write(&second, initrd).unwrap();
    bundle(dir, "good.bundle", &second, &release, &key);
    // The same as an image, as `make release` writes it.
    run(Command::new(host_bin("corral-bundle"))
        .arg("image")
        .arg("--bundle")
        .arg(dir.join("www/good.bundle"))
        .args(["--name", "corral:0.2-test", "--output"])
        .arg(dir.join("good.oci.tar")));

    // Broken: a signed initramfs the kernel cannot unpack.
    let junk = dir.join("junk.img");
    std::fs::write(&junk, vec![0x5au8; 1 << 20]).unwrap();
    let broken_release = dir.join("os-release-broken");
    std::fs::write(&broken_release, "NAME=\"Corral\"\nVERSION_ID=0.3-broken\n").unwrap();
    bundle(dir, "broken.bundle", &junk, &broken_release, &key);

    // Signed by a key the system does not trust.
    let other = dir.join("other.key");
    run(Command::new(host_bin("corral-bundle"))
        .arg("keygen")
        .arg("--secret")
        .arg(&other)
        .arg("--public")
        .arg(dir.join("other.pub")));
    bundle(dir, "untrusted.bundle", &second, &release, &other);

    // Changed after signing: one byte of the kernel (well past the tar
    // headers and the manifest).
    let mut tampered = std::fs::read(dir.join("www/good.bundle")).unwrap();
    tampered[1 << 20] ^= 0x01;
    std::fs::write(dir.join("www/tampered.bundle"), tampered).unwrap();
}

/// Pushes an OCI archive to the test's registry with skopeo (Debian's),
/// as a release would be published.
fn push(archive: &Path, registry: &Registry, name: &str) {
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://127.0.0.1:{}/{name}", registry.port)));
}

/// Python's HTTP server on the host, which the guest reaches as 10.0.2.2;
/// over TLS with `tls` (certificate, key).
struct Server(Child, u16, &'static str);

impl Server {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, None)
    }

    fn start_with(dir: &Path, tls: Option<(&Path, &Path)>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut python = Command::new("python3");
        match tls {
            None => {
                python
                    .args(["-m", "http.server", "--bind", "127.0.0.1"])
                    .arg(port.to_string())
                    .arg("--directory")
                    .arg(dir);
            }
            Some((cert, key)) => {
                python.arg("-c").arg(
                    "import functools, http.server, ssl, sys\n\
                     h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])\n\
                     s = http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), h)\n\
                     c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
                     c.load_cert_chain(sys.argv[3], sys.argv[4])\n\
                     s.socket = c.wrap_socket(s.socket, server_side=True)\n\
                     s.serve_forever()\n",
                );
                python.arg(port.to_string()).arg(dir).arg(cert).arg(key);
            }
        }
        let child = python
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Self(child, port, if tls.is_some() { "https" } else { "http" })
    }

    fn url(&self, name: &str) -> String {
        format!("{}://10.0.2.2:{}/{name}", self.2, self.1)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn version(vm: &mut Vm) -> serde_json::Value {
    let out = vm.run_ok("corral os version --json", CMD).or_fail();
    // Kernel and init messages share the serial console with the output.
    let json: String = out
        .lines()
        .filter(|l| !l.starts_with("corral-") && !l.starts_with("sysd:") && !l.starts_with('['))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Waits for the next boot's engine (the console shell is back then too).
/// The digest from `sha256sum`'s line about the kept file (kernel and
/// init messages may share the console with it).
fn kept_digest(output: &str) -> String {
    output
        .lines()
        .find(|l| l.ends_with("/var/lib/corral/kept"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no sha256sum line in {output:?}"))
        .to_owned()
}

fn next_boot(vm: &mut Vm, slot: &str, trial: bool) {
    let line = format!(
        "corral-init: booted from slot {slot}{}",
        if trial { " on trial" } else { "" }
    );
    vm.wait_for(&line, ROLLBACK).or_fail();
    vm.wait_for("sysd: ready: ", BOOT).or_fail();
}

/// Waits for the previous slot to boot again and report the rollback
/// (the report and "ready" come from concurrent tasks, in either order).
fn rolled_back_to(vm: &mut Vm, slot: &str) {
    vm.wait_for(&format!("corral-init: booted from slot {slot}"), ROLLBACK)
        .or_fail();
    vm.wait_for_all(&["sysd: ready: ", "UPGRADE ROLLED BACK"], BOOT)
        .or_fail();
}

#[test]
fn signed_upgrades_are_tried_once_and_roll_back_on_their_own() {
    let dir = work_dir("upgrade");
    make_bundles(&dir);
    let server = Server::start(&dir.join("www"));
    // HTTPS with a certificate of a CA the machine does not know.
    let (_, cert, cert_key) = certificates(&dir);
    let https = Server::start_with(&dir.join("www"), Some((&cert, &cert_key)));
    let registry = Registry::new(&dir, "registry", None, None);
    push(&dir.join("good.oci.tar"), &registry, "corral:0.2-test");
    // An image that is not an upgrade: a system image of this build.
    push(
        &out_dir().join("images/busybox.tar"),
        &registry,
        "corral:busybox",
    );
    let image = |tag: &str| format!("10.0.2.2:{}/corral:{tag}", registry.port);
    let (_key, public) = test_key(&dir);
    let disk = dir.join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(out_dir().join("corral.qcow2"))
        .arg(&disk));
    let drive = Drive {
        readonly: true,
        ..Drive::new(nocloud_drive(
            &dir,
            &format!("[ssh]\nauthorized-keys = [\"{public}\"]\n"),
        ))
    };
    let mut cfg = VmConfig::corral("upgrade").expect("a free port");
    cfg.boot = Boot::Firmware {
        firmware: Firmware::Bios,
        medium: Medium::Disk(Drive::new(&disk)),
    };
    cfg.drives = vec![drive];
    cfg.reboot = true;
    let mut vm = Vm::boot(&cfg, None, &out_dir().join("test-logs")).or_fail();
    vm.wait_for("sysd: ready: ", BOOT).or_fail();

    let v = version(&mut vm);
    assert_eq!(v["slot"], "a", "{v}");
    assert_eq!(
        v["other"]["version"],
        serde_json::Value::Null,
        "slot B is empty: {v}"
    );
    let first = v["version"].as_str().unwrap().to_owned();
    // Things on the state disk that must survive every upgrade (the
    // console is a container: the host's files are under PID 1's root).
    vm.run_ok("corral config set hostname kept-across-upgrades", CMD)
        .or_fail();
    let kept = kept_digest(
        &vm.run_ok(
            "head -c 1048576 /dev/urandom > /proc/1/root/var/lib/corral/kept && sync && sha256sum /proc/1/root/var/lib/corral/kept",
            CMD,
        )
        .or_fail(),
    );

    // Refused before anything is written.
    for (name, want) in [
        ("untrusted.bundle", "which this system does not trust"),
        ("tampered.bundle", "does not match its signed manifest"),
    ] {
        let o = vm
            .run(&format!("corral os upgrade {}", server.url(name)), CMD)
            .or_fail();
        assert_ne!(o.status, 0, "{name} accepted: {}", o.output);
        assert!(
            o.output.contains(want) && o.output.contains("nothing was written"),
            "{name}: {}",
            o.output
        );
    }
    let o = vm
        .run(
            &format!("corral os upgrade {}", https.url("good.bundle")),
            CMD,
        )
        .or_fail();
    assert!(
        o.status != 0
            && o.output.contains("UnknownIssuer")
            && o.output.contains("nothing was written"),
        "an unknown CA accepted: {}",
        o.output
    );
    let o = vm
        .run("corral os upgrade /tmp/no-such.bundle", CMD)
        .or_fail();
    assert!(o.output.contains("/tmp/no-such.bundle"), "{}", o.output);
    // From a registry, which the machine's [user-engine] settings reach.
    vm.run_ok(
        &format!(
            r#"corral config set user-engine.insecure-registries '["10.0.2.2:{}"]'"#,
            registry.port
        ),
        CMD,
    )
    .or_fail();
    for (tag, want) in [
        ("busybox", "the image has no /corral.bundle"),
        ("no-such-tag", "not found"),
    ] {
        let o = vm
            .run(&format!("corral os upgrade {}", image(tag)), CMD)
            .or_fail();
        assert_ne!(o.status, 0, "{tag} accepted: {}", o.output);
        assert!(
            o.output.contains(want) && o.output.contains("nothing was written"),
            "{tag}: {}",
            o.output
        );
    }
    let v = version(&mut vm);
    assert_eq!(v["other"]["version"], serde_json::Value::Null, "{v}");

    // The second build, from the registry: written to slot B, tried,
    // healthy, promoted.
    let o = vm
        .run_ok(
            &format!("corral os upgrade {}", image("0.2-test")),
            Duration::from_secs(300),
        )
        .or_fail();
    assert!(o.contains("slot B written and read back"), "{o}");
    next_boot(&mut vm, "B", true);
    vm.wait_for("is now the default", BOOT).or_fail();
    let v = version(&mut vm);
    assert_eq!(v["version"], "0.2-test", "{v}");
    assert_eq!(
        (&v["slot"], &v["default"]),
        (&"b".into(), &"b".into()),
        "{v}"
    );
    assert_eq!(v["other"]["version"], first.as_str(), "{v}");
    assert!(
        v["outcome"].as_str().unwrap().starts_with("promoted"),
        "{v}"
    );
    assert!(
        v["last_upgrade"]
            .as_str()
            .unwrap()
            .contains(&format!("{first} -> 0.2-test in slot B")),
        "{v}"
    );
    assert_eq!(
        vm.run_ok("hostname", CMD).or_fail().trim(),
        "kept-across-upgrades"
    );
    assert_eq!(
        kept_digest(
            &vm.run_ok("sha256sum /proc/1/root/var/lib/corral/kept", CMD)
                .or_fail()
        ),
        kept
    );
    let text = vm.run_ok("corral os version", CMD).or_fail();
    assert!(
        text.contains("Corral 0.2-test") && text.contains("promoted"),
        "{text}"
    );

    // A broken initramfs: the kernel panics on the trial boot, GRUB boots
    // slot B again, which says what happened.
    vm.run_ok(
        &format!("corral os upgrade {}", server.url("broken.bundle")),
        Duration::from_secs(300),
    )
    .or_fail();
    vm.wait_for("Kernel panic", ROLLBACK).or_fail();
    rolled_back_to(&mut vm, "B");
    let v = version(&mut vm);
    assert_eq!(v["version"], "0.2-test", "{v}");
    let outcome = v["outcome"].as_str().unwrap();
    assert!(
        outcome.starts_with("rolled back") && outcome.contains("kernel panic"),
        "{v}"
    );

    // Healthy services but a health check that fails: rolled back at the
    // deadline.
    vm.run_ok("corral config set os.trial-deadline 60s", CMD)
        .or_fail();
    vm.run_ok(
        r#"corral config set os.health-check '["/bin/sh", "-c", "echo no-such-app >&2; exit 3"]'"#,
        CMD,
    )
    .or_fail();
    vm.run_ok(
        &format!("corral os upgrade {}", server.url("good.bundle")),
        Duration::from_secs(300),
    )
    .or_fail();
    next_boot(&mut vm, "A", true);
    vm.wait_for("rebooting into the previous slot", ROLLBACK)
        .or_fail();
    rolled_back_to(&mut vm, "B");
    let v = version(&mut vm);
    let outcome = v["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("the health check") && outcome.contains("no-such-app"),
        "{v}"
    );

    // A hang: the trial's kernel stops in a panic that never reboots; the
    // watchdog init armed resets the machine.
    vm.run_ok("corral config set os.trial-deadline 5m", CMD)
        .or_fail();
    vm.run_ok(
        &format!("corral os upgrade {}", server.url("good.bundle")),
        Duration::from_secs(300),
    )
    .or_fail();
    next_boot(&mut vm, "A", true);
    assert!(
        vm.output().contains("hardware watchdog armed"),
        "{}",
        vm.fail("no watchdog")
    );
    vm.run(
        "echo 0 > /proc/sys/kernel/panic; echo c > /proc/sysrq-trigger",
        Duration::from_secs(5),
    )
    .ok();
    rolled_back_to(&mut vm, "B");
    let v = version(&mut vm);
    assert_eq!(v["version"], "0.2-test", "{v}");
    assert!(
        v["outcome"].as_str().unwrap().starts_with("rolled back"),
        "{v}"
    );
    assert_eq!(
        vm.run_ok("hostname", CMD).or_fail().trim(),
        "kept-across-upgrades"
    );
    assert_eq!(
        kept_digest(
            &vm.run_ok("sha256sum /proc/1/root/var/lib/corral/kept", CMD)
                .or_fail()
        ),
        kept
    );

    // By hand: back to the first build in slot... A holds 0.2-test now
    // (the last trial's), so roll back to it and boot it.
    vm.run_ok("corral os rollback", CMD).or_fail();
    next_boot(&mut vm, "A", false);
    let v = version(&mut vm);
    assert_eq!(
        (&v["slot"], &v["default"]),
        (&"a".into(), &"a".into()),
        "{v}"
    );
    assert!(
        v["outcome"]
            .as_str()
            .unwrap()
            .starts_with("rolled back by hand"),
        "{v}"
    );
    vm.poweroff(Duration::from_secs(120)).or_fail();
}
