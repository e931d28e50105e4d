//! Benchmarks that boot the VM. Every figure is printed next to a peer
//! measured in the same run, and the ratio between them; nothing here
//! fails on a timing.
//!
//! `corral-bench boot`: Corral's boot against the floor, the same kernel
//! with a trivial static /init that powers off at once: to init's ready
//! marker, and to the first SSH command that succeeds with every system
//! service running; memory in use after such a boot; artifact sizes.
//!
//! `corral-bench containers`: in one boot, N sequential
//! create+start+wait+delete of a `/bin/true` container through sysd's API
//! beside `crun run` and `runc run` of the same spec; sysd's idle memory
//! and the cost of a running container (see qemu/guest container-bench);
//! then the `docker` CLI against the user engine beside Debian's dockerd
//! in the same VM (`docker.rs`).
//!
//! `corral-bench build`: `docker build` by the user engine beside
//! Debian's dockerd in the same VM, cold and from the cache (`build.rs`).
//!
//! `corral-bench images`: `docker pull` from a local registry beside
//! `skopeo copy` of the same image in the same boot (`images.rs`).
//!
//! `corral-bench config`: in one boot on a state disk, N `corral config
//! set hostname` (checked, written atomically with fsync, applied live)
//! beside N busybox `hostname` (the live effect alone, nothing saved); and
//! N `corral config get ssh.authorized-keys` (what sshd runs at every
//! login) beside N `cat` of the effective config file.

mod build;
mod docker;
mod firmware;
mod images;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use corral_qemu::{out_dir, Drive, Machine, Overlay, Vm, VmConfig};

#[derive(Debug, Parser)]
#[command(about = "Corral benchmarks (QEMU)")]
struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Boot time of Corral against a trivial init on the same kernel.
    Boot {
        /// Boots of each kind.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        #[arg(long, default_value = "microvm")]
        machine: Machine,
    },
    /// Container start-to-delete through sysd's API against crun and runc.
    Containers {
        /// Containers of each kind.
        #[arg(long, default_value_t = 100)]
        runs: usize,
    },
    /// `docker build` against Debian's dockerd's classic builder.
    Build {
        /// Builds of each kind per engine.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// `docker pull` from a registry against `skopeo copy`.
    Images {
        /// Pulls of each kind.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Firmware to SSH for the ISO and the installed disk on SeaBIOS and
    /// OVMF beside `-kernel`; upgrade and rollback to SSH.
    Firmware {
        /// Boots of each kind, and upgrades of each kind.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// `corral config set` and `get` against the bare operations.
    Config {
        /// Operations of each kind.
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
}

const TIMEOUT: Duration = Duration::from_secs(120);

/// One boot: when things happened, from QEMU's start (host clock), and
/// the guest's own uptime at the marker.
struct Sample {
    marker: Duration,
    guest_uptime: f64,
    exit: Duration,
}

fn main() -> Result<()> {
    match Args::parse().bench {
        Bench::Boot { runs, machine } => boot(runs, machine),
        Bench::Containers { runs } => containers(runs),
        Bench::Build { runs } => build_bench(runs),
        Bench::Config { runs } => config_bench(runs),
        Bench::Firmware { runs } => firmware::run(runs),
        Bench::Images { runs } => images::run(runs, &logs()),
    }
}

fn logs() -> std::path::PathBuf {
    out_dir().join("bench-logs")
}

/// Corral with the service manager replaced by `poweroff`: boot to the
/// ready marker, then straight into a clean shutdown.
fn corral_once(machine: Machine) -> Result<Sample> {
    let mut config = VmConfig::corral("bench-corral")?;
    config.machine = machine;
    let overlay = Overlay::new().config("[init]\ncommand = [\"/sbin/poweroff\"]\ntty = false\n");
    let mut vm = Vm::boot(&config, Some(&overlay), &logs())?;
    let (marker, rest) = vm.wait_line("corral-init: ready (uptime ", TIMEOUT)?;
    let guest_uptime = leading_number(&rest)?;
    let exit = vm.expect_clean_exit(TIMEOUT)?;
    Ok(Sample {
        marker,
        guest_uptime,
        exit,
    })
}

fn floor_once(machine: Machine) -> Result<Sample> {
    let mut config = VmConfig::corral("bench-floor")?;
    config.machine = machine;
    config.initrd = out_dir().join("floor-initramfs.img");
    let mut vm = Vm::boot(&config, None, &logs())?;
    let (marker, rest) = vm.wait_line("corral-floor: userspace (uptime ", TIMEOUT)?;
    let guest_uptime = leading_number(&rest)?;
    let status = vm.wait_exit(TIMEOUT)?;
    if !status.success() {
        bail!("floor VM exited with {status}");
    }
    Ok(Sample {
        marker,
        guest_uptime,
        exit: vm.elapsed(),
    })
}

/// A key for the benchmark's SSH logins and the config that allows it.
fn ssh_key() -> Result<(std::path::PathBuf, String)> {
    let dir = logs();
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("bench_ed25519");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "corral-bench", "-f"])
        .arg(&key)
        .status()
        .context("running ssh-keygen")?;
    if !st.success() {
        bail!("ssh-keygen failed");
    }
    let public = std::fs::read_to_string(key.with_extension("pub"))?;
    Ok((
        key,
        format!("[ssh]\nauthorized-keys = [\"{}\"]\n", public.trim()),
    ))
}

/// A full boot on a state disk: QEMU start until `ssh corral@... true`
/// succeeds. With `measure`, also what `free` says once it does.
fn ssh_once(
    machine: Machine,
    key: &std::path::Path,
    config_text: &str,
    disk: &std::path::Path,
    measure: bool,
    append: &[&str],
) -> Result<(Duration, Duration, Option<String>)> {
    let mut config = VmConfig::corral("bench-ssh")?;
    config.machine = machine;
    config.append = append.iter().map(|a| (*a).to_owned()).collect();
    config.drives = vec![Drive::new(disk)];
    let overlay = Overlay::new().config(config_text);
    let mut vm = Vm::boot(&config, Some(&overlay), &logs())?;
    wait_banner(&vm, config.ssh_port, TIMEOUT)?;
    let banner = vm.elapsed();
    let out = vm.ssh("corral", key, "true", TIMEOUT)?;
    let ready = vm.elapsed();
    if !out.status.success() {
        bail!("ssh true: {}", out.status);
    }
    let mut memory = None;
    if measure {
        // Let the services finish starting (udev's coldplug, DHCP) first.
        let script = "for i in $(seq 120); do sudo corral system logs udev 2>&1 | grep -q 'coldplug done' && break; sleep 1; done; sleep 5; free -k; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo";
        let out = vm.ssh("corral", key, script, TIMEOUT + TIMEOUT)?;
        memory = Some(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    vm.poweroff(TIMEOUT)?;
    Ok((banner, ready, memory))
}

/// Waits until sshd on the forwarded `port` sends its banner.
pub(crate) fn wait_banner(vm: &Vm, port: u16, timeout: Duration) -> Result<()> {
    // Wait for sshd's banner with short probes first: an ssh attempt made
    // before the guest has its address hangs in QEMU's forwarder until
    // ssh's own connect timeout, which would quantize the figure. A probe
    // that is neither answered nor closed is kept open and read again:
    // sshd sends its banner only after re-executing itself, which under
    // TCG on a slow host takes longer than one probe waits (a few are
    // kept, below sshd's MaxStartups).
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + timeout;
    let mut pending: std::collections::VecDeque<std::net::TcpStream> = Default::default();
    loop {
        if std::time::Instant::now() > deadline {
            bail!("{}: no SSH banner after {timeout:?}", vm.name());
        }
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            if s.set_read_timeout(Some(Duration::from_millis(50))).is_ok() {
                pending.push_back(s);
            }
            if pending.len() > 4 {
                pending.pop_front();
            }
        }
        let mut still = std::collections::VecDeque::new();
        while let Some(mut s) = pending.pop_front() {
            use std::io::Read;
            let mut buf = [0u8; 8];
            match s.read(&mut buf) {
                Ok(n) if buf[..n].starts_with(b"SSH-") => return Ok(()),
                // Closed (nothing listens yet) or not a banner: drop it.
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    still.push_back(s)
                }
                Err(_) => {}
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `used` from free's Mem: line and MemTotal - MemAvailable, in kB.
fn memory_used(text: &str) -> (u64, u64) {
    let used = text
        .lines()
        .find(|l| l.starts_with("Mem:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (
        used,
        field("MemTotal:").saturating_sub(field("MemAvailable:")),
    )
}

fn size(path: &std::path::Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!("{:.1} MiB", m.len() as f64 / (1 << 20) as f64),
        Err(e) => format!("? ({e})"),
    }
}

/// The number a marker's remainder starts with ("0.61 s)").
fn leading_number(rest: &str) -> Result<f64> {
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no uptime in {rest:?}"))
}

/// init's resident memory after a normal boot, from /proc/1/status.
fn init_memory(machine: Machine) -> Result<(String, String)> {
    let mut config = VmConfig::corral("bench-rss")?;
    config.machine = machine;
    let mut vm = Vm::boot(&config, None, &logs())?;
    vm.wait_for("corral-init: ready (uptime ", TIMEOUT)?;
    let status = vm.run_ok("cat /proc/1/status", TIMEOUT)?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.trim_start_matches(name).trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    let rss = (field("VmRSS:"), field("VmHWM:"));
    vm.poweroff(TIMEOUT)?;
    Ok(rss)
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(mut values: Vec<f64>) -> Stats {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    Stats {
        median,
        min: values[0],
        max: values[n - 1],
    }
}

fn row(label: &str, s: &Stats) {
    println!(
        "  {label:<46} {:>7.3} s {:>7.3} s {:>7.3} s",
        s.median, s.min, s.max
    );
}

fn boot(runs: usize, machine: Machine) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let mut corral = Vec::new();
    let mut floor = Vec::new();
    let mut accel = None;
    // Interleaved, so drift in the machine's load hits both alike.
    for i in 0..runs {
        eprint!("\rboot {}/{runs}", i + 1);
        floor.push(floor_once(machine)?);
        corral.push(corral_once(machine)?);
        if accel.is_none() {
            let config = VmConfig::corral("accel")?;
            accel = Some(corral_qemu::accel::resolve(config.accel, &config.kernel));
        }
    }
    eprintln!();
    let (rss, hwm) = init_memory(machine)?;

    // SSH-ready boots on one state disk: the first formats it and
    // imports the images (not counted, but it measures memory), the
    // others boot as a machine does every day.
    let (key, ssh_config) = ssh_key()?;
    let disk = logs().join("bench-state.raw");
    let _ = std::fs::remove_file(&disk);
    std::fs::File::create(&disk)?.set_len(512 << 20)?;
    eprint!("ssh boot 0/{runs} (first boot: formats the disk)");
    let (_, _, memory) = ssh_once(machine, &key, &ssh_config, &disk, true, &[])?;
    let mut ssh = Vec::new();
    let mut banners = Vec::new();
    for i in 0..runs {
        eprint!("\rssh boot {}/{runs}                               ", i + 1);
        let (banner, ready, _) = ssh_once(machine, &key, &ssh_config, &disk, false, &[])?;
        banners.push(banner.as_secs_f64());
        ssh.push(ready.as_secs_f64());
    }
    // A diagnosis, not a configuration to ship: under TCG a program mapped
    // at a new random address is translated again at every exec (QEMU's
    // translations are keyed by virtual address), so ASLR'd PIE binaries
    // (ours and Debian's daemons) pay translation on every start. The same
    // boots with `norandmaps` show how much of the gap that is.
    let mut ssh_fixed = Vec::new();
    for i in 0..runs {
        eprint!("\rssh boot without ASLR {}/{runs}              ", i + 1);
        let (_, ready, _) = ssh_once(machine, &key, &ssh_config, &disk, false, &["norandmaps"])?;
        ssh_fixed.push(ready.as_secs_f64());
    }
    eprintln!();
    let _ = std::fs::remove_file(&disk);
    let ssh = stats(ssh);
    let ssh_fixed = stats(ssh_fixed);
    let banners = stats(banners);
    let (used, not_available) = memory_used(memory.as_deref().unwrap_or(""));

    let secs = |v: &[Sample], f: fn(&Sample) -> f64| stats(v.iter().map(f).collect());
    let c_marker = secs(&corral, |s| s.marker.as_secs_f64());
    let f_marker = secs(&floor, |s| s.marker.as_secs_f64());
    let c_uptime = secs(&corral, |s| s.guest_uptime);
    let f_uptime = secs(&floor, |s| s.guest_uptime);
    let c_exit = secs(&corral, |s| s.exit.as_secs_f64());
    let f_exit = secs(&floor, |s| s.exit.as_secs_f64());

    println!(
        "boot benchmark: {runs} boots each, {} {machine:?}, same kernel (out/bzImage)",
        accel.map_or("?".into(), |a| a.to_string())
    );
    println!("  floor = the same kernel with a static /init that powers off at once");
    println!("  {:<46} {:>9} {:>9} {:>9}", "", "median", "min", "max");
    row("corral: QEMU start -> init ready marker", &c_marker);
    row("floor:  QEMU start -> first userspace line", &f_marker);
    row("corral: guest uptime at ready", &c_uptime);
    row("floor:  guest uptime at first userspace line", &f_uptime);
    row(
        "corral: QEMU start -> exit (boot, ready, poweroff)",
        &c_exit,
    );
    row("floor:  QEMU start -> exit (boot, poweroff)", &f_exit);
    println!(
        "  ratio corral/floor: ready {:.2}x, guest uptime {:.2}x, boot+poweroff {:.2}x",
        c_marker.median / f_marker.median,
        c_uptime.median / f_uptime.median,
        c_exit.median / f_exit.median
    );
    row("corral: QEMU start -> sshd's banner", &banners);
    row("corral: QEMU start -> `ssh corral@ true` succeeds", &ssh);
    println!(
        "  ratio SSH-ready/floor ready: {:.2}x (goal: within 2x under TCG)",
        ssh.median / f_marker.median
    );
    row("diagnosis: the same with norandmaps (no ASLR)", &ssh_fixed);
    println!(
        "  ratio SSH-ready without ASLR/floor ready: {:.2}x (TCG translates a PIE binary again at each exec when its address changes)",
        ssh_fixed.median / f_marker.median
    );
    println!("  init (PID 1) memory after boot: VmRSS {rss}, VmHWM {hwm}");
    println!(
        "  memory in use with every service running (512 MiB guest): free 'used' {} kB ({:.1} MB), MemTotal-MemAvailable {} kB ({:.1} MB) (goal: under 48 MB)",
        used,
        used as f64 / 1000.0,
        not_available,
        not_available as f64 / 1000.0
    );
    let out = out_dir();
    println!(
        "  sizes: bzImage {}, initramfs.img {}",
        size(&out.join("bzImage")),
        size(&out.join("initramfs.img"))
    );
    let mut images: Vec<_> = std::fs::read_dir(out.join("images"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    images.sort();
    for image in images {
        println!(
            "  image {}: {}",
            image.file_name().unwrap_or_default().to_string_lossy(),
            size(&image)
        );
    }
    Ok(())
}

fn containers(runs: usize) -> Result<()> {
    let mut vm = peer_vm("bench-containers")?;
    let out = vm.run_ok(
        &format!("nsenter -t 1 -m /usr/local/bin/container-bench {runs}"),
        Duration::from_secs(1800),
    )?;
    println!("container benchmark: {runs} containers each, one boot, TCG");
    for line in out.lines().filter(|l| l.starts_with("bench: ")) {
        println!("  {}", &line[7..]);
    }
    docker::compare(&mut vm, runs)?;
    vm.poweroff(TIMEOUT)?;
    Ok(())
}

fn build_bench(runs: usize) -> Result<()> {
    let mut vm = peer_vm("bench-build")?;
    build::compare(&mut vm, runs)?;
    vm.poweroff(TIMEOUT)?;
    Ok(())
}

/// A boot with Debian's dockerd beside the user engine (the
/// `docker-peer` system container), the busybox image for both, and
/// the container benchmark's programs.
fn peer_vm(name: &str) -> Result<Vm> {
    let mut config = VmConfig::corral(name)?;
    // Room for the peer engine's image (dockerd, containerd, runc) and
    // both engines' stores in the machine's RAM-backed root, and for 50
    // docker CLIs at once (~30 MB each): with 2 GB the kernel killed
    // dockerd in the concurrent run.
    config.memory_mb = 4096;
    // The console joins the host's cgroup namespace too, so that crun and
    // runc, run from it in init's mount namespace, see the whole hierarchy;
    // its host pid namespace shows it the peer's socket (/proc/1/root).
    let mut overlay = Overlay::new()
        .config(
            "[services.console]\nhost-namespaces = [\"pid\", \"net\", \"ipc\", \"uts\", \"cgroup\"]\n\
             [services.docker-peer]\nimage = \"docker-peer\"\n",
        )
        .host_file(
            "/usr/local/bin/container-bench",
            0o755,
            &out_dir().join("guest/container-bench"),
        )
        .context("out/guest/container-bench (make build)")?
        .host_file(
            "/usr/share/corral/images/docker-peer.tar",
            0o644,
            &out_dir().join("bench/docker-peer.tar"),
        )
        .context("out/bench/docker-peer.tar (make bench-containers builds it)")?
        // The image both docker engines run: a copy of the busybox system
        // image outside the boot images, which sysd removes from RAM once
        // it has imported them.
        .host_file(
            docker::IMAGE_TAR_IN_ROOT,
            0o644,
            &out_dir().join("images/busybox.tar"),
        )
        .context("out/images/busybox.tar (make images)")?;
    for program in ["/usr/bin/crun", "/usr/sbin/runc"] {
        overlay = overlay
            .host_program(program)
            .with_context(|| format!("{program} (make deps installs it)"))?;
    }
    let mut vm = Vm::boot(&config, Some(&overlay), &logs())?;
    vm.wait_for("sysd: ready: ", TIMEOUT)?;
    Ok(vm)
}

/// Runs `body` (which uses `$i`) `runs` times in a shell loop on the
/// console; returns the milliseconds per iteration, by the host's clock.
fn per_op(vm: &mut Vm, runs: usize, body: &str) -> Result<f64> {
    let script =
        format!("i=0; while [ $i -lt {runs} ]; do i=$((i+1)); {body} >/dev/null || exit 1; done");
    let started = std::time::Instant::now();
    vm.run_ok(&script, Duration::from_secs(1800))?;
    Ok(started.elapsed().as_secs_f64() * 1000.0 / runs as f64)
}

fn config_bench(runs: usize) -> Result<()> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let disk = logs().join("bench-config-state.raw");
    std::fs::create_dir_all(logs())?;
    let _ = std::fs::remove_file(&disk);
    std::fs::File::create(&disk)?.set_len(512 << 20)?;
    let mut config = VmConfig::corral("bench-config")?;
    config.drives = vec![Drive::new(&disk)];
    let (_, keys) = ssh_key()?;
    let overlay = Overlay::new().config(&keys);
    let mut vm = Vm::boot(&config, Some(&overlay), &logs())?;
    vm.wait_for("sysd: ready: ", TIMEOUT)?;
    // Once before timing: the first write creates the file.
    vm.run_ok("corral config set hostname warm-up", TIMEOUT)?;
    // Interleaved halves, so drift in the machine's load hits both alike.
    let half = runs.div_ceil(2);
    let (mut set, mut bare, mut get, mut cat) = (0.0, 0.0, 0.0, 0.0);
    for _ in 0..2 {
        set += per_op(&mut vm, half, "corral config set hostname bench-$i")?;
        bare += per_op(&mut vm, half, "hostname bench-$i")?;
        get += per_op(&mut vm, half, "corral config get ssh.authorized-keys")?;
        cat += per_op(&mut vm, half, "cat /run/corral/config/effective.toml")?;
    }
    let (set, bare, get, cat) = (set / 2.0, bare / 2.0, get / 2.0, cat / 2.0);
    let saved = vm.run_ok("corral config get hostname", TIMEOUT)?;
    vm.poweroff(TIMEOUT)?;
    let _ = std::fs::remove_file(&disk);
    println!(
        "config benchmark: {} operations each, one boot on a state disk, TCG",
        half * 2
    );
    println!(
        "  corral config set hostname: {set:.1} ms/op; busybox hostname: {bare:.1} ms/op (ratio {:.1}x)",
        set / bare
    );
    println!(
        "  corral config get ssh.authorized-keys: {get:.1} ms/op; cat effective.toml: {cat:.1} ms/op (ratio {:.1}x)",
        get / cat
    );
    println!("  last value saved and live: {}", saved.trim());
    Ok(())
}
