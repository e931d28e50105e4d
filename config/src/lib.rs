//! Corral's system configuration.
//!
//! One TOML document configures the whole OS. This crate owns its schema:
//! every table refuses unknown keys (a typo is an error, not a silently
//! ignored setting), values with rules are validated newtypes, and every
//! error names the file, line, column and dotted key path so the person
//! editing the file can go straight to the mistake.
//!
//! The keys that exist so far are documented with examples in the README
//! and in the shipped default, `rootfs/etc/corral/config.toml`.

mod error;
pub mod fsutil;
pub mod hosts;
mod init;
pub mod layers;
pub mod os;
pub mod service;
pub mod system;
mod types;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub use error::{ConfigError, Diagnostic};
pub use init::InitConfig;
pub use layers::{Layer, LayerKind, Merged};
pub use os::{OsConfig, RELEASE_KEY_PATH, TRIAL_VERDICT_PATH};
pub use service::{ServiceDef, ServiceName};
pub use system::{
    ConsoleConfig, DnsConfig, InterfaceConfig, NetworkConfig, RegistryLogin, SshConfig,
    StateConfig, SyslogConfig, UserEngineConfig, DEFAULT_BRIDGE_SUBNET, STATE_LABEL,
};
pub use types::{
    Cidr, Command, Duration, Hostname, InterfaceName, InvalidValue, SysctlKey, SysctlValue,
};

/// The embedded defaults, shipped in the initramfs.
pub const DEFAULT_PATH: &str = "/etc/corral/config.toml";
/// The configuration kept on the state disk: what `corral config set`
/// writes.
pub const PERSISTED_PATH: &str = "/var/lib/corral/config.toml";
/// The running system's view of the config, written by init at boot and
/// by sysd on every change: `effective.toml` (the layers merged, what
/// services read) and one `<layer>.toml` per layer in use. Services bind
/// this directory, not the files, so a replaced file is seen.
pub const RUN_DIR: &str = "/run/corral/config";
/// The merged config the system runs with.
pub const EFFECTIVE_PATH: &str = "/run/corral/config/effective.toml";

/// The running config's file: [`EFFECTIVE_PATH`], or the defaults when
/// init has not written it (outside Corral, in tests).
pub fn effective_path() -> &'static Path {
    if Path::new(EFFECTIVE_PATH).exists() {
        Path::new(EFFECTIVE_PATH)
    } else {
        Path::new(DEFAULT_PATH)
    }
}
/// Written by the network service once every interface in the config is
/// configured (static addresses applied, a DHCP lease for each DHCP
/// interface); removed when it starts. A trial boot waits for it.
pub const NET_CONFIGURED_PATH: &str = "/run/corral/net/configured";
/// init's one-line report of what it did about the state disk, shown by
/// `corral config get state`.
pub const STATE_STATUS_PATH: &str = "/run/corral/state-status";

/// The whole system configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// The machine's host name. Unset keeps the kernel's (`(none)`), which
    /// `corral.hostname=` on the kernel command line can also set.
    pub hostname: Option<Hostname>,
    /// How PID 1 supervises the service manager and shuts the machine down.
    pub init: InitConfig,
    /// The system containers the engine runs, by name.
    pub services: BTreeMap<ServiceName, ServiceDef>,
    /// Interfaces, addresses and resolvers (the network service).
    pub network: NetworkConfig,
    /// Who may log in over SSH (the ssh service).
    pub ssh: SshConfig,
    /// The disk that keeps data across reboots (init).
    pub state: StateConfig,
    /// The log file's rotation and remote forwarding (the syslog service).
    pub syslog: SyslogConfig,
    /// Kernel parameters set at boot (and live), by `sysctl` name.
    pub sysctl: BTreeMap<SysctlKey, SysctlValue>,
    /// The shell on the system console.
    pub console: ConsoleConfig,
    /// The user engine's networks.
    pub user_engine: UserEngineConfig,
    /// Upgrades of the OS and their trial boot.
    pub os: OsConfig,
}

impl Config {
    /// Parses and validates a configuration document. `origin` names it in
    /// errors (usually the file path).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let (config, table) = Self::deserialize_text(text, origin)?;
        config
            .validate()
            .map_err(|(key, message)| Diagnostic::at_key(text, origin, &table, &key, message))?;
        Ok(config)
    }

    /// Syntax, unknown keys, types and values; not the rules that span
    /// keys (see [`layers::merge`]).
    pub(crate) fn deserialize_text<'a>(
        text: &'a str,
        origin: &str,
    ) -> Result<(Self, Spanned<DeTable<'a>>), ConfigError> {
        let table =
            DeTable::parse(text).map_err(|e| Diagnostic::from_toml(text, origin, None, &e))?;
        let de = toml::de::Deserializer::from(table.clone());
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = (key != ".").then_some(key);
            Diagnostic::from_toml(text, origin, key, e.inner())
        })?;
        Ok((config, table))
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Rules that involve more than one value. Returns the dotted key to
    /// blame and the reason.
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        self.init
            .validate()
            .map_err(|(key, message)| (key.to_owned(), message))?;
        self.network.validate()?;
        self.ssh.validate()?;
        self.state.validate()?;
        self.syslog.validate()?;
        self.user_engine.validate()?;
        self.os.validate()?;
        for (name, def) in &self.services {
            def.validate()
                .map_err(|(field, message)| (format!("services.{name}.{field}"), message))?;
        }
        // Dependencies between the services, built-in ones included. The
        // engine checks again after adding image defaults, which may name
        // more.
        service::start_order(&service::merged(&self.services)).map_err(|e| {
            (
                format!("services.{}.depends-on", e.service()),
                e.to_string(),
            )
        })?;
        Ok(())
    }
}

/// The span of the value at a dotted key path, for errors found after
/// deserialization.
fn locate(table: &Spanned<DeTable<'_>>, path: &str) -> Option<Range<usize>> {
    let mut span = table.span();
    let mut current = table.get_ref();
    let parts = layers::split_key(path);
    let mut parts = parts.iter().peekable();
    while let Some(part) = parts.next() {
        let value = current.get(part.as_str())?;
        span = value.span();
        if parts.peek().is_some() {
            match value.get_ref() {
                DeValue::Table(t) => current = t,
                _ => return None,
            }
        }
    }
    Some(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> Diagnostic {
        match Config::parse(text, "test.toml") {
            Err(ConfigError::Invalid(d)) => *d,
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn empty_document_is_the_defaults() {
        assert_eq!(Config::parse("", "t").unwrap(), Config::default());
    }

    #[test]
    fn shipped_default_config_parses_to_the_compiled_in_defaults() {
        // init falls back to Config::default() when the file is broken, so
        // the two must agree or a broken file would change behaviour.
        let text = include_str!("../../rootfs/etc/corral/config.toml");
        let shipped = Config::parse(text, DEFAULT_PATH).unwrap();
        assert_eq!(shipped.init, InitConfig::default());
    }

    #[test]
    fn the_readmes_example_of_every_key_is_a_valid_config() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### Every key")
            .nth(1)
            .expect("README has an \"Every key\" section");
        let block = section
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("a toml block");
        let c = Config::parse(block, "README.md").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.network.interfaces["eth0"].addresses.len(), 2);
        assert_eq!(c.sysctl.len(), 2);
        assert!(!c.services[&"udev".parse::<ServiceName>().unwrap()].is_enabled());
    }

    #[test]
    fn full_init_section() {
        let c = Config::parse(
            r#"
hostname = "node-1"
[init]
command = ["/usr/bin/sysd", "--role", "system"]
tty = false
restart-delay = "250ms"
restart-delay-max = "1m"
max-restarts = 3
stable-after = "10s"
shutdown-timeout = "20s"
kill-timeout = "2s"
"#,
            "t",
        )
        .unwrap();
        assert_eq!(c.hostname.unwrap().as_str(), "node-1");
        assert_eq!(c.init.command.argv(), ["/usr/bin/sysd", "--role", "system"]);
        assert!(!c.init.tty);
        assert_eq!(c.init.restart_delay, Duration::from_millis(250));
        assert_eq!(c.init.restart_delay_max, Duration::from_secs(60));
        assert_eq!(c.init.max_restarts, 3);
        assert_eq!(c.init.stable_after, Duration::from_secs(10));
        assert_eq!(c.init.shutdown_timeout, Duration::from_secs(20));
        assert_eq!(c.init.kill_timeout, Duration::from_secs(2));
    }

    #[test]
    fn network_ssh_and_state() {
        let c = Config::parse(
            r#"
sysctl = { "net.ipv4.ip_forward" = 1, "vm.swappiness" = "10", "kernel.sysrq" = true }
[network.interfaces.eth0]
addresses = ["192.168.7.2/24", "fd00::2/64"]
gateway = "192.168.7.1"
mtu = 1400
[network.interfaces.eth1]
dhcp = true
[network.dns]
nameservers = ["1.1.1.1"]
search = ["lan"]
[ssh]
authorized-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA me@laptop"]
[state]
device = "/dev/vdb"
label = "MYSTATE"
autoformat = false
[console]
autologin = false
"#,
            "t",
        )
        .unwrap();
        assert_eq!(c.network.interfaces["eth0"].mtu, Some(1400));
        assert_eq!(
            c.network.interfaces["eth0"].addresses[1].to_string(),
            "fd00::2/64"
        );
        let sysctl: Vec<String> = c.sysctl.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            sysctl,
            [
                "kernel.sysrq=1",
                "net.ipv4.ip_forward=1",
                "vm.swappiness=10"
            ]
        );
        assert_eq!(c.state.label, "MYSTATE");
        assert!(!c.console.autologin);
        assert!(Config::default().console.autologin);
        assert!(c.network.interfaces["eth1"].dhcp);
        assert_eq!(c.ssh.authorized_keys.len(), 1);
        assert_eq!(c.state.device.as_deref(), Some("/dev/vdb"));
        assert!(!c.state.autoformat);
        assert!(Config::default().state.autoformat);
    }

    #[test]
    fn bad_network_ssh_and_state_values_name_their_key() {
        let d = err("[network.interfaces.eth0]\naddresses = [\"10.0.0.1\"]\n");
        assert_eq!(
            d.key.as_deref(),
            Some("network.interfaces.eth0.addresses[0]"),
            "{d}"
        );
        assert!(d.message.contains("ADDRESS/PREFIX"), "{d}");
        assert_eq!(d.line, Some(2));
        let d = err("[network.interfaces.eth0]\nmtu = 1500\n");
        assert!(d.message.contains("dhcp = true or addresses"), "{d}");
        let d = err("[network.interfaces.eth0]\ndhcp = true\naddresses = [\"10.0.0.1/8\"]\n");
        assert!(d.message.contains("not both"), "{d}");
        let d =
            err("[network.interfaces.eth0]\naddresses = [\"10.0.0.1/8\"]\ngateway = \"fd00::1\"\n");
        assert!(d.message.contains("address family"), "{d}");
        // The earlier single-address spelling still reads.
        let c =
            Config::parse("[network.interfaces.eth0]\naddress = \"10.0.0.1/8\"\n", "t").unwrap();
        assert_eq!(
            c.network.interfaces["eth0"].addresses[0].to_string(),
            "10.0.0.1/8"
        );
        let d = err(
            "[network.interfaces.eth0]\naddress = \"10.0.0.1/8\"\naddresses = [\"10.0.0.2/8\"]\n",
        );
        assert!(d.message.contains("old spelling"), "{d}");
        // A name with a dot is quoted in the key, and located.
        let d = err("[network.interfaces.\"eth0.100\"]\nmtu = 1400\n");
        assert_eq!(
            d.key.as_deref(),
            Some("network.interfaces.\"eth0.100\""),
            "{d}"
        );
        assert_eq!(d.line, Some(1), "{d}");
        let d = err("[network.interfaces.\"eth0:1\"]\ndhcp = true\n");
        assert!(d.message.contains("1 to 15 characters"), "{d}");
        let d = err("[sysctl]\n\"vm swappiness\" = 1\n");
        assert!(d.message.contains("kernel parameter name"), "{d}");
        let d = err("[sysctl]\n\"vm.swappiness\" = [1]\n");
        assert!(d.message.contains("string, integer or boolean"), "{d}");
        let d = err("[state]\nlabel = \"a-label-longer-than-16\"\n");
        assert_eq!(d.key.as_deref(), Some("state.label"), "{d}");
        let d = err("[console]\nautologin = \"yes\"\n");
        assert_eq!(d.key.as_deref(), Some("console.autologin"), "{d}");
        let d = err("[network.interfaces.eth0]\naddresses = [\"10.0.0.1/8\"]\nmtu = 20\n");
        assert_eq!(d.key.as_deref(), Some("network.interfaces.eth0.mtu"), "{d}");
        let d = err("[ssh]\nauthorized-keys = [\"/root/.ssh/id_ed25519\"]\n");
        assert_eq!(d.key.as_deref(), Some("ssh.authorized-keys[0]"), "{d}");
        let d = err("[state]\ndevice = \"vdb\"\n");
        assert_eq!(d.key.as_deref(), Some("state.device"), "{d}");
        let d = err("[network.dns]\nnameservers = [\"dns.google\"]\n");
        assert!(
            d.key
                .as_deref()
                .unwrap_or("")
                .starts_with("network.dns.nameservers"),
            "{d}"
        );
    }

    #[test]
    fn unknown_top_level_key_is_named_with_its_position() {
        let d = err("hostname = \"a\"\nhostnme = \"b\"\n");
        assert_eq!((d.line, d.column), (Some(2), Some(1)));
        assert!(d.message.contains("unknown field `hostnme`"), "{d}");
        assert_eq!(d.to_string().split(": ").next(), Some("test.toml:2:1"));
    }

    #[test]
    fn unknown_init_key_is_named_with_its_path() {
        let d = err("[init]\nrestart-dealy = \"1s\"\n");
        assert_eq!(d.key.as_deref(), Some("init.restart-dealy"), "{d}");
        assert_eq!(d.line, Some(2));
        assert!(d.message.contains("unknown field `restart-dealy`"), "{d}");
    }

    #[test]
    fn wrong_type_names_the_key_and_what_was_expected() {
        let d = err("[init]\n\nmax-restarts = \"five\"\n");
        assert_eq!(d.key.as_deref(), Some("init.max-restarts"));
        assert_eq!((d.line, d.column), (Some(3), Some(16)));
        assert!(d.message.contains("invalid type: string \"five\""), "{d}");

        let d = err("[init]\nshutdown-timeout = 10\n");
        assert_eq!(d.key.as_deref(), Some("init.shutdown-timeout"));
        assert!(d.message.contains("a duration string such as"), "{d}");

        let d = err("[init]\ntty = \"yes\"\n");
        assert_eq!(d.key.as_deref(), Some("init.tty"));
        assert!(d.message.contains("expected a boolean"), "{d}");
    }

    #[test]
    fn invalid_values_give_the_reason() {
        let d = err("hostname = \"bad_name\"\n");
        assert_eq!(d.key.as_deref(), Some("hostname"));
        assert_eq!((d.line, d.column), (Some(1), Some(12)));
        assert!(d.message.contains("contains '_'"), "{d}");

        let d = err("[init]\ncommand = [\"sysd\"]\n");
        assert_eq!(d.key.as_deref(), Some("init.command"));
        assert!(d.message.contains("absolute path"), "{d}");

        let d = err("[init]\nrestart-delay = \"soon\"\n");
        assert!(d.message.contains("invalid duration \"soon\""), "{d}");
    }

    #[test]
    fn cross_field_rules_point_at_the_key() {
        let d = err("[init]\nrestart-delay = \"10s\"\nrestart-delay-max = \"1s\"\n");
        assert_eq!(d.key.as_deref(), Some("init.restart-delay-max"));
        assert_eq!((d.line, d.column), (Some(3), Some(21)));
        assert!(d.message.contains("at least restart-delay (10s)"), "{d}");
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let d = err("[init\ncommand = 1\n");
        assert_eq!(d.line, Some(1));
        assert!(d.key.is_none());
        let d = err("hostname = \"a\"\nhostname = \"b\"\n");
        assert_eq!(d.line, Some(2));
        assert!(d.message.contains("duplicate key"), "{d}");
    }

    #[test]
    fn services_parse_with_every_field() {
        let c = Config::parse(
            r#"
[services.hello]
image = "busybox:latest"
command = ["sh", "-c", "echo hi"]
env = { GREETING = "hi" }
host-namespaces = ["net"]
cap-add = ["NET_ADMIN"]
cap-drop = ["MKNOD"]
binds = ["/run/corral:/run/corral:ro"]
devices = ["/dev/kmsg"]
readonly-rootfs = true
init = true
restart = "on-failure"
max-retries = 3
depends-on = ["setup"]
stop-timeout = "5s"
[services.hello.resources]
memory = "16M"
pids = 64
cpus = 0.5
io-weight = 200
[services.setup]
image = "busybox"
kind = "onboot"
"#,
            "t",
        )
        .unwrap();
        let hello = &c.services[&"hello".parse::<ServiceName>().unwrap()];
        assert_eq!(hello.restart(), service::Restart::OnFailure);
        assert_eq!(hello.max_retries(), 3);
        assert_eq!(
            hello.resources.as_ref().unwrap().memory.unwrap().get(),
            16 << 20
        );
        assert_eq!(hello.depends_on()[0].as_str(), "setup");
    }

    #[test]
    fn service_errors_name_the_service_and_field() {
        let d = err("[services.web]\nimage = \"x\"\nrestart = \"sometimes\"\n");
        assert_eq!(d.key.as_deref(), Some("services.web.restart"), "{d}");
        assert_eq!(d.line, Some(3));

        let d = err("[services.web]\nimage = \"x\"\ncap-add = [\"NET_ADMN\"]\n");
        assert_eq!(d.key.as_deref(), Some("services.web.cap-add[0]"), "{d}");
        assert!(d.message.contains("unknown capability"), "{d}");

        let d = err("[services.Web]\nimage = \"x\"\n");
        assert!(d.message.contains("lowercase"), "{d}");

        let d = err("[services.web]\nworking-dir = \"tmp\"\n");
        assert_eq!(d.key.as_deref(), Some("services.web.working-dir"), "{d}");
        assert_eq!(d.line, Some(2));

        let d = err("[services.web]\nmax-retries = 3\n");
        assert!(d.message.contains("on-failure"), "{d}");
    }

    #[test]
    fn dependency_errors_point_at_depends_on() {
        let d = err("[services.a]\ndepends-on = [\"b\"]\n[services.b]\ndepends-on = [\"a\"]\n");
        assert_eq!(d.key.as_deref(), Some("services.a.depends-on"), "{d}");
        assert_eq!(d.line, Some(2));
        assert!(d.message.contains("dependency cycle: a → b → a"), "{d}");

        let d = err("[services.a]\ndepends-on = [\"nope\"]\n");
        assert!(d.message.contains("nope, which is not defined"), "{d}");
    }

    #[test]
    fn load_reports_missing_file_with_path() {
        let e = Config::load(Path::new("/nonexistent/corral.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read /nonexistent/corral.toml: "),
            "{e}"
        );
    }
}
