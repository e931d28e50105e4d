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
mod init;
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
pub use service::{ServiceDef, ServiceName};
pub use system::{
    DnsConfig, InterfaceConfig, NetworkConfig, SshConfig, StateConfig, SyslogConfig, STATE_LABEL,
};
pub use types::{Command, Duration, Hostname, InvalidValue};

/// Where the embedded defaults live in the initramfs (after boot: the
/// effective config, with the state disk's laid over them).
pub const DEFAULT_PATH: &str = "/etc/corral/config.toml";
/// The configuration kept on the state disk.
pub const PERSISTED_PATH: &str = "/var/lib/corral/config.toml";
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
}

impl Config {
    /// Parses and validates a configuration document. `origin` names it in
    /// errors (usually the file path).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let table =
            DeTable::parse(text).map_err(|e| Diagnostic::from_toml(text, origin, None, &e))?;
        let de = toml::de::Deserializer::from(table.clone());
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = (key != ".").then_some(key);
            Diagnostic::from_toml(text, origin, key, e.inner())
        })?;
        config
            .validate()
            .map_err(|(key, message)| Diagnostic::at_key(text, origin, &table, &key, message))?;
        Ok(config)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Lays the document `over` (from `over_origin`) over `base`: tables
    /// merge key by key, any other value replaces the base's. `over` is
    /// checked on its own first, so its mistakes are reported against its
    /// own lines; the result is checked as a whole. Returns the merged
    /// text and config.
    pub fn layer(
        base: &str,
        base_origin: &str,
        over: &str,
        over_origin: &str,
    ) -> Result<(String, Self), ConfigError> {
        Self::parse(over, over_origin)?;
        let parse = |text: &str, origin: &str| {
            text.parse::<toml::Table>().map_err(|e| {
                ConfigError::from(Diagnostic {
                    origin: origin.to_owned(),
                    line: None,
                    column: None,
                    key: None,
                    message: e.to_string(),
                })
            })
        };
        let mut merged = parse(base, base_origin)?;
        merge(&mut merged, parse(over, over_origin)?);
        let text = toml::to_string(&merged).map_err(|e| {
            ConfigError::from(Diagnostic {
                origin: over_origin.to_owned(),
                line: None,
                column: None,
                key: None,
                message: format!("cannot write the merged config: {e}"),
            })
        })?;
        let origin = format!("{over_origin} over {base_origin}");
        let config = Self::parse(&text, &origin)?;
        Ok((text, config))
    }

    /// Rules that involve more than one value. Returns the dotted key to
    /// blame and the reason.
    fn validate(&self) -> Result<(), (String, String)> {
        self.init
            .validate()
            .map_err(|(key, message)| (key.to_owned(), message))?;
        self.network.validate()?;
        self.ssh.validate()?;
        self.state.validate()?;
        self.syslog.validate()?;
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

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The span of the value at a dotted key path, for errors found after
/// deserialization.
fn locate(table: &Spanned<DeTable<'_>>, path: &str) -> Option<Range<usize>> {
    let mut span = table.span();
    let mut current = table.get_ref();
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = current.get(part)?;
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
[network.interfaces.eth0]
address = "192.168.7.2/24"
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
autoformat = false
"#,
            "t",
        )
        .unwrap();
        assert_eq!(c.network.interfaces["eth0"].mtu, Some(1400));
        assert!(c.network.interfaces["eth1"].dhcp);
        assert_eq!(c.ssh.authorized_keys.len(), 1);
        assert_eq!(c.state.device.as_deref(), Some("/dev/vdb"));
        assert!(!c.state.autoformat);
        assert!(Config::default().state.autoformat);
    }

    #[test]
    fn bad_network_ssh_and_state_values_name_their_key() {
        let d = err("[network.interfaces.eth0]\naddress = \"10.0.0.1\"\n");
        assert_eq!(
            d.key.as_deref(),
            Some("network.interfaces.eth0.address"),
            "{d}"
        );
        assert!(d.message.contains("ADDRESS/PREFIX"), "{d}");
        assert_eq!(d.line, Some(2));
        let d = err("[network.interfaces.eth0]\nmtu = 1500\n");
        assert!(d.message.contains("dhcp = true or an address"), "{d}");
        let d = err("[network.interfaces.eth0]\ndhcp = true\naddress = \"10.0.0.1/8\"\n");
        assert!(d.message.contains("not both"), "{d}");
        let d = err("[network.interfaces.eth0]\naddress = \"10.0.0.1/8\"\nmtu = 20\n");
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
    fn a_layer_merges_tables_and_replaces_values() {
        let base = "hostname = \"a\"\n[init]\nmax-restarts = 3\ntty = true\n[ssh]\nauthorized-keys = [\"ssh-ed25519 AAAAC3 k@a\"]\n";
        let over = "hostname = \"b\"\n[init]\nmax-restarts = 7\n";
        let (text, c) = Config::layer(base, "embedded", over, "disk.toml").unwrap();
        assert_eq!(c.hostname.unwrap().as_str(), "b");
        assert_eq!(c.init.max_restarts, 7);
        assert!(c.init.tty, "kept from the base");
        assert_eq!(c.ssh.authorized_keys.len(), 1);
        assert!(Config::parse(&text, "t").is_ok());
    }

    #[test]
    fn a_bad_layer_is_reported_against_its_own_lines() {
        let Err(ConfigError::Invalid(d)) =
            Config::layer("", "embedded", "\n[init]\ntty = 1\n", "disk.toml")
        else {
            panic!("accepted")
        };
        assert_eq!(d.origin, "disk.toml");
        assert_eq!(d.line, Some(3));
        assert_eq!(d.key.as_deref(), Some("init.tty"));
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
