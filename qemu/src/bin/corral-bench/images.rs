//! `corral-bench images`: `docker pull` of a multi-layer image through
//! Corral's user engine beside `skopeo copy` (Debian's) of the same image
//! from the same registry (Debian's `docker-registry` on the host, reached
//! as 10.0.2.2) in the same boot, both writing to the state disk:
//! with nothing cached, and again with every layer cached. Interleaved
//! rounds, medians.
//!
//! The two do not do the same work: skopeo stores the blobs as they came,
//! the engine also unpacks every layer, which is what makes an image
//! runnable. The ratio says what that costs on top of the transfer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use corral_qemu::{Drive, Overlay, Vm, VmConfig};

const LONG: Duration = Duration::from_secs(1800);
const IMAGE: &str = "bench/app:1";
/// Where skopeo writes, on the state disk as the engine's store is.
const SKOPEO_DIR: &str = "/var/lib/corral/bench-skopeo";

/// `docker-registry serve` on 127.0.0.1:port, killed when dropped.
struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn registry(dir: &Path) -> Result<(Registry, u16)> {
    let port = corral_qemu::free_port()?;
    let data = dir.join("registry-data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            data.display()
        ),
    )?;
    let log = std::fs::File::create(dir.join("registry.log"))?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("docker-registry (Debian's package; make deps installs it)")?;
    let r = Registry(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("the registry did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((r, port))
}

/// A four-layer image: busybox, then three layers of 6 MB of random
/// bytes (incompressible, so the transfer is what it says), pushed to
/// the registry by skopeo.
fn seed(dir: &Path, port: u16) -> Result<u64> {
    let mut layers: Vec<PathBuf> = Vec::new();
    let base = dir.join("layer-0");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("bin"))?;
    std::fs::copy("/bin/busybox", base.join("bin/busybox")).context("busybox-static")?;
    std::os::unix::fs::symlink("busybox", base.join("bin/sh"))?;
    layers.push(base);
    for i in 1..=3 {
        let l = dir.join(format!("layer-{i}"));
        let _ = std::fs::remove_dir_all(&l);
        std::fs::create_dir_all(l.join("data"))?;
        let mut bytes = vec![0u8; 6 << 20];
        use std::io::Read;
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        std::fs::write(l.join(format!("data/{i}")), bytes)?;
        layers.push(l);
    }
    let archive = dir.join("app.tar");
    let mut c = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/debug/corral-mkimage"
    ));
    for l in &layers {
        c.arg("--rootfs").arg(l);
    }
    let st = c
        .args(["--name", IMAGE, "--cmd", "/bin/sh"])
        .arg("--output")
        .arg(&archive)
        .status()
        .context("corral-mkimage (make host)")?;
    if !st.success() {
        bail!("corral-mkimage failed");
    }
    let o = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://127.0.0.1:{port}/{IMAGE}"))
        .output()
        .context("skopeo")?;
    if !o.status.success() {
        bail!("skopeo copy: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(std::fs::metadata(&archive)?.len())
}

fn timed(vm: &mut Vm, script: &str) -> Result<f64> {
    let started = Instant::now();
    vm.run_ok(script, LONG)
        .with_context(|| format!("benchmark step: {script}"))?;
    Ok(started.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(runs: usize, logs: &Path) -> Result<()> {
    let dir = logs.join("bench-images");
    std::fs::create_dir_all(&dir)?;
    let (_registry, port) = registry(&dir)?;
    let archive_size = seed(&dir, port)?;
    let remote = format!("10.0.2.2:{port}/{IMAGE}");

    let disk = dir.join("state.raw");
    let f = std::fs::File::create(&disk)?;
    f.set_len(4 << 30)?;
    let mut config = VmConfig::corral("bench-images")?;
    config.memory_mb = 2048;
    config.drives = vec![Drive::new(&disk)];
    let overlay = Overlay::new()
        .config(&format!(
            "[user-engine]\ninsecure-registries = [\"10.0.2.2:{port}\"]\n"
        ))
        .host_program("/usr/bin/skopeo")
        .context("/usr/bin/skopeo (make deps installs it)")?;
    let mut vm = Vm::boot(&config, Some(&overlay), logs)?;
    vm.wait_for("sysd: ready: ", Duration::from_secs(300))?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while vm.run("docker version >/dev/null 2>&1", LONG)?.status != 0 {
        if Instant::now() > deadline {
            bail!("the user engine never answered");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let skopeo = format!(
        "nsenter -t 1 -m /usr/bin/skopeo copy -q --insecure-policy --src-tls-verify=false docker://{remote} oci:{SKOPEO_DIR}:app"
    );
    // What is cleared before a cold pull is cleared untimed.
    let engine_clear = format!("docker rmi -f {remote} >/dev/null 2>&1; true");
    let skopeo_clear = format!("nsenter -t 1 -m rm -rf {SKOPEO_DIR}");
    let engine_pull = format!("docker pull -q {remote} >/dev/null");
    let skopeo_pull = format!("{skopeo} >/dev/null");
    // Warm both paths once (page cache, the registry's own caches).
    timed(&mut vm, &engine_pull)?;
    timed(&mut vm, &skopeo_pull)?;
    // The client's own cost, for the cached row: a call that does not
    // reach a registry.
    let cli_alone = format!("docker image inspect {remote} >/dev/null");
    let mut t: [Vec<f64>; 5] = Default::default();
    for _ in 0..runs.max(1) {
        vm.run_ok(&engine_clear, LONG)?;
        t[0].push(timed(&mut vm, &engine_pull)?);
        vm.run_ok(&skopeo_clear, LONG)?;
        t[1].push(timed(&mut vm, &skopeo_pull)?);
        t[2].push(timed(&mut vm, &engine_pull)?);
        t[3].push(timed(&mut vm, &skopeo_pull)?);
        t[4].push(timed(&mut vm, &cli_alone)?);
    }
    let [ec, sc, ew, sw, cli] = t.map(median);
    println!(
        "image benchmark: pull of a 4-layer image ({:.1} MB) from a local registry, {} interleaved rounds, medians, TCG",
        archive_size as f64 / 1e6,
        runs.max(1)
    );
    println!("  nothing cached:  corral user engine {ec:>7.2} s, skopeo copy {sc:>7.2} s, ratio {:.2}x (goal: at most 1.2x)", ec / sc);
    println!(
        "  layers cached:   corral user engine {ew:>7.2} s, skopeo copy {sw:>7.2} s, ratio {:.2}x",
        ew / sw
    );
    println!("  the docker CLI alone (`docker image inspect`): {cli:.2} s");
    // The engine's own account of the last cold pull: transfer against
    // unpacking.
    let log = vm.run(
        "grep -h 'pulled ' /var/log/messages /proc/1/root/var/log/messages 2>/dev/null | tail -n 2",
        LONG,
    )?;
    for line in log.output.lines().filter(|l| l.contains("pulled ")) {
        println!("  engine: {}", line.trim());
    }
    vm.poweroff(Duration::from_secs(120))?;
    Ok(())
}
