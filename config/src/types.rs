//! Values with rules. Each is a newtype validated on construction, so a
//! `Config` that exists is a `Config` that is valid; the reasons are written
//! for the person editing the file.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a value was refused. The key path and position are added by the
/// parser; this is only the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(String);

impl InvalidValue {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// The conversions every validated string type shares, given its
/// `TryFrom<String>` (which holds the rules): `as_str`, `FromStr`, back
/// into a `String`, and `Display`.
macro_rules! validated_string {
    ($t:ident) => {
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $t {
            type Err = $crate::types::InvalidValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$t> for String {
            fn from(v: $t) -> Self {
                v.0
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use validated_string;

/// A host name as the kernel accepts it (at most 64 bytes, `HOST_NAME_MAX`)
/// and as RFC 1123 allows it: dot-separated labels of 1–63 letters, digits
/// and hyphens, not starting or ending with a hyphen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostname(String);

validated_string!(Hostname);

impl Hostname {
    pub const MAX_LEN: usize = 64;
}

impl TryFrom<String> for Hostname {
    type Error = InvalidValue;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.is_empty() {
            return Err(InvalidValue::new("a hostname cannot be empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(format!(
                "hostname {s:?} is {} bytes long; the kernel allows at most {}",
                s.len(),
                Self::MAX_LEN
            )));
        }
        for label in s.split('.') {
            if label.is_empty() {
                return Err(InvalidValue::new(format!(
                    "hostname {s:?} has an empty label (two dots in a row, or a leading or trailing dot)"
                )));
            }
            if label.len() > 63 {
                return Err(InvalidValue::new(format!(
                    "hostname {s:?} has a label longer than 63 characters"
                )));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                return Err(InvalidValue::new(format!(
                    "hostname {s:?} contains {c:?}; only letters, digits, '-' and '.' are allowed"
                )));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(InvalidValue::new(format!(
                    "hostname {s:?} has a label that starts or ends with '-'"
                )));
            }
        }
        Ok(Self(s))
    }
}

/// A span of time written the way people write it: `"500ms"`, `"30s"`,
/// `"2m"`, `"1m 30s"` (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s)
            .map(Self)
            .map_err(|e| InvalidValue::new(format!("invalid duration {s:?}: {e}")))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"500ms\", \"30s\" or \"2m\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// A program and its arguments, run without a shell. The program is an
/// absolute path: PID 1 starts before anything could set a useful `PATH`,
/// and an absolute path makes the config say exactly what runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Command(Vec<String>);

impl Command {
    /// A command from a literal in this crate's defaults, which the tests
    /// validate. Keeps `Default` impls free of `unwrap` for PID 1.
    pub(crate) fn trusted(argv: &[&str]) -> Self {
        Self(argv.iter().map(|s| (*s).to_owned()).collect())
    }

    pub fn program(&self) -> &str {
        // Construction guarantees at least one element.
        self.0.first().map(String::as_str).unwrap_or_default()
    }

    pub fn args(&self) -> &[String] {
        self.0.get(1..).unwrap_or_default()
    }

    pub fn argv(&self) -> &[String] {
        &self.0
    }
}

impl TryFrom<Vec<String>> for Command {
    type Error = InvalidValue;

    fn try_from(argv: Vec<String>) -> Result<Self, Self::Error> {
        let Some(program) = argv.first() else {
            return Err(InvalidValue::new(
                "a command needs at least the program, e.g. [\"/bin/sh\"]",
            ));
        };
        if !program.starts_with('/') {
            return Err(InvalidValue::new(format!(
                "program {program:?} must be an absolute path (there is no PATH search)"
            )));
        }
        if let Some(arg) = argv.iter().find(|a| a.contains('\0')) {
            return Err(InvalidValue::new(format!(
                "argument {arg:?} contains a NUL byte"
            )));
        }
        Ok(Self(argv))
    }
}

impl From<Command> for Vec<String> {
    fn from(c: Command) -> Self {
        c.0
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

/// An address with its prefix length, `ADDRESS/PREFIX`
/// (`192.168.1.10/24`, `fd00::10/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl TryFrom<String> for Cidr {
    type Error = InvalidValue;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for Cidr {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| {
            InvalidValue::new(format!(
                "{s:?} is not ADDRESS/PREFIX (e.g. 192.168.1.10/24)"
            ))
        })?;
        let addr: std::net::IpAddr = addr
            .parse()
            .map_err(|_| InvalidValue::new(format!("{addr:?} is not an IP address")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
            InvalidValue::new(format!("prefix {prefix:?} is not a number from 0 to {max}"))
        })?;
        Ok(Self { addr, prefix })
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> Self {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A network interface name as the kernel accepts it (`dev_valid_name`):
/// 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InterfaceName(String);

validated_string!(InterfaceName);

impl TryFrom<String> for InterfaceName {
    type Error = InvalidValue;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let bad = s.is_empty()
            || s.len() > 15
            || s == "."
            || s == ".."
            || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
        if bad {
            return Err(InvalidValue::new(format!(
                "interface name {s:?}: 1 to 15 characters, no '/', ':' or spaces"
            )));
        }
        Ok(Self(s))
    }
}

impl std::borrow::Borrow<str> for InterfaceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A kernel parameter as `sysctl` names it: dot-separated parts
/// (`net.ipv4.ip_forward`), each of letters, digits, `_` and `-`; a `/`
/// inside a part stands for a dot in the file name, as in
/// `net.ipv4.conf.eth0/100.rp_filter`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SysctlKey(String);

validated_string!(SysctlKey);

impl SysctlKey {
    /// The file under /proc/sys.
    pub fn proc_path(&self) -> std::path::PathBuf {
        let rel: Vec<String> = self.0.split('.').map(|p| p.replace('/', ".")).collect();
        std::path::Path::new("/proc/sys").join(rel.join("/"))
    }
}

impl TryFrom<String> for SysctlKey {
    type Error = InvalidValue;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let parts_ok = s.split('.').all(|p| {
            !p.is_empty()
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
                && !p.starts_with('/')
                && !p.ends_with('/')
        });
        if !parts_ok || !s.contains('.') {
            return Err(InvalidValue::new(format!(
                "{s:?} is not a kernel parameter name such as \"net.ipv4.ip_forward\""
            )));
        }
        Ok(Self(s))
    }
}

/// A kernel parameter's value: written to its /proc/sys file as text. TOML
/// integers and booleans (as 1/0) are accepted so `vm.swappiness = 10`
/// reads naturally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct SysctlValue(String);

impl SysctlValue {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<SysctlValue> for String {
    fn from(v: SysctlValue) -> Self {
        v.0
    }
}

impl fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SysctlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SysctlValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, integer or boolean")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SysctlValue, E> {
                if s.contains('\n') || s.contains('\0') {
                    return Err(E::custom("a sysctl value is one line of text"));
                }
                Ok(SysctlValue(s.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<SysctlValue, E> {
                Ok(SysctlValue(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<SysctlValue, E> {
                Ok(SysctlValue(if b { "1" } else { "0" }.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.2/24".parse().unwrap();
        assert_eq!((c.addr.to_string().as_str(), c.prefix), ("10.0.0.2", 24));
        assert_eq!(c.to_string(), "10.0.0.2/24");
        assert!("fd00::1/64".parse::<Cidr>().is_ok());
        let e = |s: &str| s.parse::<Cidr>().unwrap_err().to_string();
        assert!(e("10.0.0.2").contains("ADDRESS/PREFIX"));
        assert!(e("10.0.0.2/33").contains("0 to 32"));
        assert!(e("fd00::1/129").contains("0 to 128"));
        assert!(e("fd00::x/64").contains("not an IP"));
    }

    #[test]
    fn interface_names() {
        for ok in ["eth0", "enp0s3", "br-lan", "eth0.100", &"x".repeat(15)] {
            assert!(ok.parse::<InterfaceName>().is_ok(), "{ok}");
        }
        for bad in ["", "..", "a/b", "eth0:1", "has space", &"x".repeat(16)] {
            let e = bad.parse::<InterfaceName>().unwrap_err().to_string();
            assert!(e.contains("1 to 15 characters"), "{bad}: {e}");
        }
    }

    #[test]
    fn sysctl_keys_map_to_proc_files() {
        let k = SysctlKey::try_from("net.ipv4.ip_forward".to_owned()).unwrap();
        assert_eq!(
            k.proc_path(),
            std::path::Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        let vlan = SysctlKey::try_from("net.ipv4.conf.eth0/100.rp_filter".to_owned()).unwrap();
        assert_eq!(
            vlan.proc_path(),
            std::path::Path::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
        for bad in [
            "swappiness",
            "vm..swappiness",
            "vm.swap piness",
            "net.../x",
            "vm./a",
            "a.b
",
        ] {
            let e = SysctlKey::try_from(bad.to_owned()).unwrap_err().to_string();
            assert!(e.contains("kernel parameter name"), "{bad}: {e}");
        }
    }

    #[test]
    fn hostnames_that_are_valid() {
        for ok in [
            "corral",
            "a",
            "node-1",
            "web.example.com",
            "A1",
            &"x".repeat(63),
        ] {
            assert!(ok.parse::<Hostname>().is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn hostnames_that_are_refused_say_why() {
        let cases = [
            ("", "empty"),
            ("-lead", "starts or ends with '-'"),
            ("trail-", "starts or ends with '-'"),
            ("a..b", "empty label"),
            (".a", "empty label"),
            ("has space", "contains ' '"),
            ("under_score", "contains '_'"),
            ("ünïcode", "contains 'ü'"),
        ];
        for (input, reason) in cases {
            let err = input.parse::<Hostname>().unwrap_err().to_string();
            assert!(err.contains(reason), "{input:?}: {err:?} lacks {reason:?}");
        }
        let long = format!("{}.{}", "a".repeat(40), "b".repeat(40));
        assert!(long
            .parse::<Hostname>()
            .unwrap_err()
            .to_string()
            .contains("at most 64"));
        assert!("x"
            .repeat(64)
            .parse::<Hostname>()
            .unwrap_err()
            .to_string()
            .contains("longer than 63"));
    }

    #[test]
    fn durations_parse_human_units() {
        assert_eq!(
            "500ms".parse::<Duration>().unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!("30s".parse::<Duration>().unwrap(), Duration::from_secs(30));
        assert_eq!(
            "1m 30s".parse::<Duration>().unwrap(),
            Duration::from_secs(90)
        );
        let err = "5 parsecs".parse::<Duration>().unwrap_err().to_string();
        assert!(err.contains("invalid duration \"5 parsecs\""), "{err}");
        assert_eq!(Duration::from_millis(1500).to_string(), "1s 500ms");
    }

    #[test]
    fn commands_need_an_absolute_program() {
        let c = Command::try_from(vec!["/bin/sh".into(), "-l".into()]).unwrap();
        assert_eq!(c.program(), "/bin/sh");
        assert_eq!(c.args(), ["-l"]);
        assert!(Command::try_from(vec![])
            .unwrap_err()
            .to_string()
            .contains("at least the program"));
        assert!(Command::try_from(vec!["sh".into()])
            .unwrap_err()
            .to_string()
            .contains("absolute path"));
        assert!(Command::try_from(vec!["/bin/sh".into(), "a\0b".into()])
            .unwrap_err()
            .to_string()
            .contains("NUL"));
    }
}
