//! `sysd`: Corral's container engine daemon.
//!
//! In the system role (started by init) it imports the images shipped in
//! the initramfs, re-attaches to containers that survived a restart of the
//! engine, starts the system services in dependency order, serves the API
//! on `/run/corral/system.sock`, and on SIGTERM stops the services in
//! reverse order and exits. In the user role (in the `user-engine` system
//! container) it re-attaches to its containers and serves its API, on a
//! socket group `docker` may use. What differs is `corral_sysd::role`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use corral_config::{service, Config};
use corral_sysd::engine::{Engine, EngineConfig};
use corral_sysd::role::{self, RolePolicy};
use corral_sysd::{api, logs, services};
use log::{error, info, warn, LevelFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    System,
    User,
}

impl Role {
    fn policy(self) -> RolePolicy {
        match self {
            Role::System => role::SYSTEM,
            Role::User => role::USER,
        }
    }
}

#[derive(Debug, Parser)]
#[command(name = "sysd", version, about = "Corral's container engine")]
struct Args {
    #[arg(long, value_enum, default_value = "system")]
    role: Role,
    /// The system config (system role) [default: the effective config init
    /// published, /run/corral/config/effective.toml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// The API socket [default: /run/corral/system.sock; user role:
    /// /run/corral/docker/docker.sock].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The group that may use the socket besides root (a number) [default:
    /// none; user role: 990, `docker`].
    #[arg(long)]
    socket_group: Option<u32>,
    /// Transient state [default: /run/corral/<role>].
    #[arg(long)]
    run_root: Option<PathBuf>,
    /// Images and container data [default: /var/lib/corral/<role>].
    #[arg(long)]
    data_root: Option<PathBuf>,
    #[arg(long, default_value = "/sys/fs/cgroup")]
    cgroup_root: PathBuf,
    /// Containers' cgroups go below this [default: corral/system; user
    /// role: the top of the delegated cgroup tree].
    #[arg(long)]
    cgroup_parent: Option<String>,
    /// Image archives to import at start-up (system role).
    #[arg(long, default_value = "/usr/share/corral/images")]
    images_dir: PathBuf,
    /// The container init for `init = true` containers.
    #[arg(long, default_value = "/usr/libexec/corral/tini")]
    init_binary: PathBuf,
    /// The per-container monitor (`corral-monitor`).
    #[arg(long, default_value = "/usr/libexec/corral/monitor")]
    monitor_binary: PathBuf,
    /// netavark, for the bridge network (user role) [default:
    /// /usr/lib/podman/netavark].
    #[arg(long)]
    netavark: Option<PathBuf>,
    /// Log debug messages too.
    #[arg(long, env = "CORRAL_DEBUG")]
    debug: bool,
}

/// Log lines to the console (init gives sysd its stderr) and to syslog
/// once it is up, /dev/kmsg before (corral-log).
static LOGGER: corral_log::Sink = corral_log::Sink::new("sysd", "/dev/log");

fn main() {
    let args = Args::parse();
    let _ = log::set_logger(&LOGGER);
    // Not there in a container without the host's /dev: console and
    // syslog only, then.
    LOGGER.open_kmsg();
    log::set_max_level(if args.debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the event loop: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(run(args));
    // Dropping the runtime would wait for every blocking task, and one may
    // be in a read that never ends (a container's output pipe, which the
    // next engine takes over): all that matters is done, so do not wait.
    rt.shutdown_background();
    if let Err(e) = result {
        error!("{e:#}");
        std::process::exit(1);
    }
}

/// The networks' tools and the default bridge's subnet from
/// `[user-engine]` of the running config; none (containers get a loopback
/// only) without netavark.
fn networking(
    netavark: &std::path::Path,
    settings: &corral_config::UserEngineConfig,
    run_root: &std::path::Path,
) -> Option<corral_sysd::network::Networking> {
    if !netavark.exists() {
        warn!(
            "no networks: {} is missing; containers get only a loopback interface",
            netavark.display()
        );
        return None;
    }
    let subnet = settings.bridge_subnet;
    let std::net::IpAddr::V4(addr) = subnet.addr else {
        error!("user-engine.bridge-subnet {subnet} is not IPv4; no networks");
        return None;
    };
    let Ok(bridge_subnet) = ipnet::Ipv4Net::new(addr, subnet.prefix) else {
        error!("user-engine.bridge-subnet {subnet}: bad prefix; no networks");
        return None;
    };
    info!(
        "bridge network {subnet} on {}",
        corral_sysd::network::BRIDGE_INTERFACE
    );
    Some(corral_sysd::network::Networking {
        tool: corral_sysd::network::Netavark {
            netavark: netavark.to_owned(),
            // Debian's aardvark-dns package puts it beside netavark.
            aardvark: netavark.with_file_name("aardvark-dns"),
            config_dir: run_root.join("netavark"),
        },
        bridge_subnet,
    })
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

async fn run(args: Args) -> Result<()> {
    // Handlers first: as its container's pid 1 (the user engine), a
    // SIGTERM with no handler yet would be dropped by the kernel, and a
    // stop during start-up would wait for the SIGKILL.
    let shutdown = Shutdown::new();
    let began = Instant::now();
    let policy = args.role.policy();
    let cfg = EngineConfig {
        run_root: args
            .run_root
            .unwrap_or_else(|| PathBuf::from(policy.run_root)),
        data_root: args
            .data_root
            .unwrap_or_else(|| PathBuf::from(policy.data_root)),
        cgroup_root: args.cgroup_root,
        cgroup_parent: args
            .cgroup_parent
            .unwrap_or_else(|| policy.cgroup_parent.to_owned()),
        init_binary: args.init_binary.exists().then_some(args.init_binary),
        monitor_binary: args.monitor_binary,
        log_max_size: logs::DEFAULT_MAX_SIZE,
        log_keep: logs::DEFAULT_KEEP,
        role: policy.clone(),
        networking: None,
        registries: Default::default(),
        dns: Vec::new(),
    };
    let mut cfg = cfg;
    if !policy.runs_system_services {
        let path = args
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(corral_config::EFFECTIVE_PATH));
        let settings = match Config::load(&path) {
            Ok(c) => c.user_engine,
            Err(e) => {
                warn!("{e}; [user-engine] gets its default settings");
                Default::default()
            }
        };
        if let Some(default) = policy.netavark {
            let netavark = args.netavark.clone().unwrap_or_else(|| default.into());
            cfg.networking = networking(&netavark, &settings, &cfg.run_root);
        }
        cfg.registries = corral_sysd::registry::Settings::from_config(&settings);
        cfg.dns = settings.dns.clone();
    }
    let socket = args.socket.unwrap_or_else(|| policy.socket_path());
    let socket_group = args.socket_group.or(policy.socket_group);
    if !policy.runs_system_services && in_ram(&cfg.data_root) {
        warn!(
            "no state disk: images, containers and volumes in {} are kept in RAM and lost at shutdown",
            cfg.data_root.display()
        );
    }
    let engine = Engine::open(cfg)?;

    // Containers that outlived a previous engine first, so nothing is
    // started twice.
    engine.adopt();
    engine.restore_networks();

    let listener =
        api::bind(&socket, policy.socket_mode, socket_group).context("the API socket")?;
    tokio::spawn(api::serve(engine.clone(), listener));

    let mut order = Vec::new();
    if policy.runs_system_services {
        import_images(&engine, &args.images_dir).await;
        corral_sysd::sysconfig::install(engine.clone());
        let path = args
            .config
            .unwrap_or_else(|| corral_config::effective_path().to_owned());
        let config = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                error!("{e}");
                error!("using the built-in services only");
                Config::default()
            }
        };
        match services::plan(&engine, &service::merged(&config.services)) {
            Ok(plan) => {
                let up = services::start(&engine, &plan).await;
                order = plan.order.clone();
                // A trial boot after an upgrade is decided from here on;
                // a normal boot reports a trial GRUB rolled back.
                if policy.manages_os {
                    let _ =
                        tokio::task::spawn_blocking(corral_sysd::os::trial::report_rollback).await;
                    tokio::spawn(corral_sysd::os::trial::watch(
                        engine.clone(),
                        plan.defs.clone(),
                        config.os.clone(),
                    ));
                }
                info!(
                    "ready: {} service{} running, API on {} (uptime {} s, {} ms after start)",
                    up.len(),
                    if up.len() == 1 { "" } else { "s" },
                    socket.display(),
                    uptime(),
                    began.elapsed().as_millis()
                );
            }
            Err(e) => error!("config error: services: {e}; no service started"),
        }
    } else {
        info!("ready: API on {} (uptime {} s)", socket.display(), uptime());
    }

    shutdown.wait().await;
    if engine.config().role.containers_outlive_engine {
        let running = engine
            .list()
            .iter()
            .filter(|s| s.record.state.status == corral_sysd::state::Status::Running)
            .count();
        info!("stopping; {running} running container(s) left running for the next engine to adopt");
    } else {
        info!("stopping");
        services::stop_all(&engine, &order).await;
    }
    let _ = std::fs::remove_file(&socket);
    info!("stopped");
    Ok(())
}

async fn import_images(engine: &Arc<Engine>, dir: &std::path::Path) {
    let mut archives: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tar"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            warn!("{}: {e}", dir.display());
            return;
        }
    };
    archives.sort();
    for archive in archives {
        let store = engine.images().clone();
        let path = archive.clone();
        let t = Instant::now();
        match tokio::task::spawn_blocking(move || store.load(&path)).await {
            Ok(Ok(loaded)) => {
                for l in loaded {
                    info!(
                        "imported {} ({}) in {} ms",
                        l.names.join(", "),
                        l.id.get(..19).unwrap_or(&l.id),
                        t.elapsed().as_millis()
                    );
                }
                release_from_ram(&archive);
            }
            Ok(Err(e)) => error!("importing {}: {e}", archive.display()),
            Err(e) => error!("importing {}: {e}", archive.display()),
        }
    }
}

/// Whether `path` is on a RAM-backed filesystem (no state disk).
fn in_ram(path: &std::path::Path) -> bool {
    use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
    // linux/magic.h; nix has no name for it.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    statfs(path)
        .map(|s| [TMPFS_MAGIC, RAMFS_MAGIC].contains(&s.filesystem_type()))
        .unwrap_or(false)
}

/// An archive the initramfs brought sits in the RAM-backed root once
/// imported (the store has its blobs): remove it to give the memory back.
/// On any other filesystem it is left alone.
fn release_from_ram(archive: &std::path::Path) {
    if !in_ram(archive) {
        return;
    }
    let size = std::fs::metadata(archive).map(|m| m.len()).unwrap_or(0);
    match std::fs::remove_file(archive) {
        Ok(()) => log::debug!(
            "removed {} from RAM after importing it ({} KiB)",
            archive.display(),
            size / 1024
        ),
        Err(e) => warn!(
            "cannot remove {} after importing it: {e}",
            archive.display()
        ),
    }
}

/// SIGTERM and SIGINT, caught from the moment this is made.
struct Shutdown {
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Shutdown {
    fn new() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Self {
                signals: Some((term, int)),
            },
            _ => {
                error!("cannot handle SIGTERM; running until killed");
                Self { signals: None }
            }
        }
    }

    async fn wait(self) {
        let Some((mut term, mut int)) = self.signals else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
