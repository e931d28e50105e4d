//! `corral-bench build`: `docker build` (the classic builder) of the same
//! small context by Corral's user engine and by Debian's dockerd 20.10 in
//! the same VM (the `docker-peer` system container, as in `docker.rs`),
//! from the console with the same 20.10 client, in interleaved rounds:
//! a build with `--no-cache` (every step runs: two `RUN`s in containers,
//! a 1 MiB `COPY`, metadata steps) and a rebuild from the cache.
//! `--network none` for both: the peer has no bridge.

use std::time::Instant;

use anyhow::{Context, Result};
use corral_qemu::Vm;

use crate::docker::{wait_ready, ENGINES, IMAGE, IMAGE_TAR, LONG};

const CONTEXT: &str = "/tmp/bench-build";

const DOCKERFILE: &str = "FROM busybox:latest\n\
RUN echo one > /one\n\
COPY blob /blob\n\
ENV STEP=two\n\
WORKDIR /work\n\
RUN cat /one > /work/two && wc -c /blob >> /work/two\n\
LABEL bench=build\n\
CMD [\"cat\", \"/work/two\"]\n";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Milliseconds for one `docker build` with `flags`.
fn build(vm: &mut Vm, docker: &str, flags: &str) -> Result<f64> {
    let started = Instant::now();
    vm.run_ok(
        &format!("DOCKER_BUILDKIT=0 {docker} build -q --network none {flags} -t bench-build:1 {CONTEXT} >/dev/null"),
        LONG,
    )
    .with_context(|| format!("{docker} build {flags}"))?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// Runs the comparison on a booted machine with the peer configured.
pub fn compare(vm: &mut Vm, runs: usize) -> Result<()> {
    vm.run_ok(
        &format!(
            // One line on the console: printf makes the newlines.
            "mkdir -p {CONTEXT} && printf '{}' > {CONTEXT}/Dockerfile && head -c 1048576 /dev/urandom > {CONTEXT}/blob",
            DOCKERFILE.replace('\n', "\\n")
        ),
        LONG,
    )?;
    for (_, docker) in ENGINES {
        wait_ready(vm, docker)?;
        vm.run_ok(&format!("{docker} load -q -i {IMAGE_TAR}"), LONG)
            .with_context(|| format!("loading {IMAGE} ({docker})"))?;
        // Warm: the first build pays for caches on either engine; its
        // result is what the cached rebuilds find.
        build(vm, docker, "")?;
        let out = vm.run_ok(
            &format!("{docker} run --rm --network none bench-build:1"),
            LONG,
        )?;
        anyhow::ensure!(
            out.contains("one") && out.contains("1048576"),
            "{docker}: the built image printed {out:?}"
        );
    }
    let mut cold = [Vec::new(), Vec::new()];
    let mut cached = [Vec::new(), Vec::new()];
    for _ in 0..runs.max(1) {
        for (k, (_, docker)) in ENGINES.iter().enumerate() {
            cold[k].push(build(vm, docker, "--no-cache")?);
            cached[k].push(build(vm, docker, "")?);
        }
    }
    let (c0, c1) = (median(cold[0].clone()), median(cold[1].clone()));
    let (h0, h1) = (median(cached[0].clone()), median(cached[1].clone()));
    println!(
        "build benchmark: `docker build` of an 8-step Dockerfile (2 RUN, 1 MiB COPY), {} rounds each, interleaved, TCG",
        runs.max(1)
    );
    println!(
        "  --no-cache   corral {c0:>8.0} ms   dockerd {c1:>8.0} ms   ratio {:.2}x",
        c0 / c1
    );
    println!(
        "  from cache   corral {h0:>8.0} ms   dockerd {h1:>8.0} ms   ratio {:.2}x",
        h0 / h1
    );
    Ok(())
}
