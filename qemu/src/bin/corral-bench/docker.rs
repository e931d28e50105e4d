//! `corral-bench containers`, second part: the real `docker` CLI against
//! Corral's user engine and, in the same VM, against Debian's own Docker
//! engine (dockerd 20.10 with its containerd and runc, the `docker-peer`
//! system container of `qemu/bench/docker-peer`). Both are driven from the
//! console with the same client and the same image, `--network none` (the
//! peer has no bridge), in interleaved rounds so that drift in the
//! machine's speed falls on both alike.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use corral_qemu::Vm;

/// The image both engines run: the busybox system image, put in init's
/// root by the benchmark's overlay and seen from the console through
/// /proc/1/root.
pub const IMAGE_TAR_IN_ROOT: &str = "/usr/share/corral/bench/busybox.tar";
pub const IMAGE_TAR: &str = "/proc/1/root/usr/share/corral/bench/busybox.tar";
pub const IMAGE: &str = "busybox:latest";

/// The docker CLI for each engine, as the console runs it.
pub const ENGINES: [(&str, &str); 2] = [
    ("corral", "docker"),
    (
        "dockerd",
        "docker -H unix:///proc/1/root/run/corral/peer/docker.sock",
    ),
];

pub const LONG: Duration = Duration::from_secs(1800);

pub fn wait_ready(vm: &mut Vm, docker: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = vm.run(
            &format!("{docker} version --format '{{{{.Server.Version}}}}'"),
            LONG,
        )?;
        if out.status == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{docker}: the engine never answered: {}", out.output);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Milliseconds per `docker run --rm IMAGE true`, `n` in a row.
fn run_rm(vm: &mut Vm, docker: &str, n: usize) -> Result<f64> {
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do i=$((i+1)); {docker} run --rm --network none {IMAGE} true || exit 1; done"
    );
    let started = Instant::now();
    vm.run_ok(&script, LONG)?;
    Ok(started.elapsed().as_secs_f64() * 1000.0 / n as f64)
}

/// Seconds for `n` concurrent `docker run -d`, the containers left running.
fn run_concurrent(vm: &mut Vm, docker: &str, n: usize) -> Result<f64> {
    let script = format!(
        "i=0; while [ $i -lt {n} ]; do i=$((i+1)); {docker} run -d --network none {IMAGE} sleep 100000 >/dev/null & done; wait; \
         [ $({docker} ps -q | wc -l) -eq {n} ]"
    );
    let started = Instant::now();
    vm.run_ok(&script, LONG)
        .with_context(|| format!("{n} concurrent docker run -d ({docker})"))?;
    Ok(started.elapsed().as_secs_f64())
}

/// The resident memory (kB) of the processes whose command line has one
/// of `patterns`, summed.
fn rss(vm: &mut Vm, patterns: &[&str]) -> Result<u64> {
    let cases = patterns
        .iter()
        .map(|p| format!("*'{p}'*"))
        .collect::<Vec<_>>()
        .join("|");
    let script = format!(
        "for d in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $d/cmdline 2>/dev/null); \
         case \"$c\" in {cases}) awk '/^VmRSS/{{print $2}}' $d/status;; esac; done"
    );
    let out = vm.run_ok(&script, LONG)?;
    Ok(out
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .sum())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the comparison on a booted machine with the peer configured.
pub fn compare(vm: &mut Vm, runs: usize) -> Result<()> {
    for (_, docker) in ENGINES {
        wait_ready(vm, docker)?;
        vm.run_ok(&format!("{docker} load -q -i {IMAGE_TAR}"), LONG)
            .with_context(|| format!("loading the image ({docker})"))?;
        // Warm: the first run pays for caches, on either engine.
        run_rm(vm, docker, 2)?;
    }
    // Interleaved rounds of ten.
    let rounds = runs.div_ceil(10).max(1);
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (k, (_, docker)) in ENGINES.iter().enumerate() {
            times[k].push(run_rm(vm, docker, 10)?);
        }
    }
    let [ours, theirs] = [median(times[0].clone()), median(times[1].clone())];
    println!(
        "docker CLI benchmark: {} × `docker run --rm --network none busybox true` each, interleaved, TCG",
        rounds * 10
    );
    println!("  corral user engine      {ours:>8.1} ms per run (median of {rounds} rounds of 10)");
    println!("  dockerd+containerd+runc {theirs:>8.1} ms per run");
    println!(
        "  ratio                   {:>8.2}x  (goal: at most 0.3x)",
        ours / theirs
    );

    // Idle memory before the concurrent run, after the sequential ones.
    let ours_idle = rss(vm, &["sysd --role user"])?;
    let theirs_idle = rss(vm, &["/usr/sbin/dockerd", "containerd --config"])?;
    const CONCURRENT: usize = 50;
    let mut secs = Vec::new();
    let mut after = Vec::new();
    for (_, docker) in ENGINES {
        let avail = |vm: &mut Vm| -> Result<u64> {
            let out = vm.run_ok("awk '/^MemAvailable/{print $2}' /proc/meminfo", LONG)?;
            out.trim().parse().context("MemAvailable")
        };
        let before = avail(vm)?;
        secs.push(run_concurrent(vm, docker, CONCURRENT)?);
        after.push(before.saturating_sub(avail(vm)?));
        vm.run_ok(
            &format!("{docker} rm -f $({docker} ps -q) >/dev/null"),
            LONG,
        )?;
    }
    println!("  {CONCURRENT} concurrent `docker run -d ... sleep`:");
    println!(
        "    corral  {:>7.1} s, {:>7} kB more in use",
        secs[0], after[0]
    );
    println!(
        "    dockerd {:>7.1} s, {:>7} kB more in use   ratio {:.2}x (time), {:.2}x (memory)",
        secs[1],
        after[1],
        secs[0] / secs[1],
        after[0] as f64 / after[1].max(1) as f64
    );
    println!(
        "  idle resident memory: corral user engine {ours_idle} kB, dockerd+containerd {theirs_idle} kB, ratio {:.2}x (goal: at most 0.2x)",
        ours_idle as f64 / theirs_idle.max(1) as f64
    );
    Ok(())
}
