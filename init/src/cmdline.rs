//! The kernel command line: `corral.<key>=<value>` parameters.
//!
//! The kernel hands dotted parameters to nobody, so init reads them from
//! `/proc/cmdline`. Some are init's own (`corral.debug`, `corral.rescue`,
//! and the boot menu's `corral.slot`, `corral.trial`, `corral.live`); every other `corral.<dotted.key>=<value>` is a
//! setting of the system config, laid over all the other layers
//! (`corral_config::layers::cmdline_layer` checks them). Parsing never
//! fails: a line the user typed at a boot prompt must not stop the machine
//! from booting. What init cannot use becomes a warning that names the
//! parameter, and is ignored.

/// init's flags, the config settings, and what had to be ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    /// `corral.debug`: debug-level logging from init.
    pub debug: bool,
    /// `corral.rescue`: start a rescue shell before the service manager.
    pub rescue: bool,
    /// `corral.slot=a|b`: the boot menu booted this slot of an installed
    /// disk (its partition `CORRAL_A` or `CORRAL_B`).
    pub slot: Option<char>,
    /// `corral.trial`: this boot is the one trial of a freshly upgraded
    /// slot; it becomes the default only once healthy.
    pub trial: bool,
    /// `corral.live`: booted from the ISO, root in RAM.
    pub live: bool,
    /// `corral.<key>[=<value>]` settings of the config, in order (a later
    /// one for the same key wins).
    pub config: Vec<(String, Option<String>)>,
    /// One line per ignored parameter, saying why.
    pub warnings: Vec<String>,
}

const PREFIX: &str = "corral.";

impl Cmdline {
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for param in split(text) {
            let Some(rest) = param.strip_prefix(PREFIX) else {
                continue;
            };
            let (key, value) = match rest.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (rest, None),
            };
            match key {
                "debug" => set_flag(&mut out.debug, key, value, &mut out.warnings),
                "rescue" => set_flag(&mut out.rescue, key, value, &mut out.warnings),
                "trial" => set_flag(&mut out.trial, key, value, &mut out.warnings),
                "live" => set_flag(&mut out.live, key, value, &mut out.warnings),
                "slot" => match value {
                    Some("a" | "A") => out.slot = Some('a'),
                    Some("b" | "B") => out.slot = Some('b'),
                    _ => out
                        .warnings
                        .push(format!("{param:?}: the slot is a or b; ignored")),
                },
                "" => out.warnings.push(format!(
                    "malformed parameter {param:?}: no key after \"corral.\"; ignored"
                )),
                _ => out.config.push((key.to_owned(), value.map(str::to_owned))),
            }
        }
        out
    }
}

/// A flag is on when given bare (`corral.debug`) or with a true value.
fn set_flag(flag: &mut bool, key: &str, value: Option<&str>, warnings: &mut Vec<String>) {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("1" | "y" | "yes" | "on" | "true") => *flag = true,
        Some("0" | "n" | "no" | "off" | "false") => *flag = false,
        Some(other) => warnings.push(format!(
            "corral.{key}={other:?} is not a boolean (use corral.{key}, corral.{key}=1 or corral.{key}=0); ignored"
        )),
    }
}

/// Splits the command line into parameters the way the kernel does
/// (`next_arg` in lib/cmdline.c): whitespace separates parameters except
/// inside double quotes; a quote that opens the parameter or its value is
/// removed with its closing one, so `corral.x="a b"` and `"corral.x=a b"`
/// are both `corral.x=a b`. Quotes elsewhere stay, as the kernel keeps
/// them: `corral.network.interfaces."eth0.100".dhcp` keeps its quoted
/// key part.
pub fn split(text: &str) -> Vec<String> {
    let mut params = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
            continue;
        }
        let start = i;
        let mut in_quotes = false;
        while let Some(&c) = chars.get(i) {
            if c.is_whitespace() && !in_quotes {
                break;
            }
            if c == '"' {
                in_quotes = !in_quotes;
            }
            i += 1;
        }
        let raw: String = chars.get(start..i).unwrap_or_default().iter().collect();
        params.push(unquote(&raw));
    }
    params
}

fn unquote(raw: &str) -> String {
    let strip_end = |s: &str| s.strip_suffix('"').unwrap_or(s).to_owned();
    if let Some(inner) = raw.strip_prefix('"') {
        return strip_end(inner);
    }
    match raw.split_once('=') {
        Some((key, value)) if value.starts_with('"') => {
            format!("{key}={}", strip_end(value.get(1..).unwrap_or_default()))
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_menu_parameters() {
        let c = Cmdline::parse("console=ttyS0 corral.slot=b corral.trial quiet");
        assert_eq!((c.slot, c.trial, c.live), (Some('b'), true, false));
        assert!(c.config.is_empty() && c.warnings.is_empty(), "{c:?}");
        let c = Cmdline::parse("corral.live corral.slot=c");
        assert!(c.live);
        assert_eq!(c.slot, None);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("corral.slot=c"), "{:?}", c.warnings);
    }

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(
            split("console=ttyS0  quiet\tcorral.x=\"a b\" \"corral.y=c d\"\n"),
            ["console=ttyS0", "quiet", "corral.x=a b", "corral.y=c d"]
        );
        assert!(split("   \n").is_empty());
        assert_eq!(split("a=\"\""), ["a="]);
        assert_eq!(
            split("corral.network.interfaces.\"eth0.100\".dhcp=1 x"),
            ["corral.network.interfaces.\"eth0.100\".dhcp=1", "x"]
        );
    }

    #[test]
    fn reads_flags_and_config_settings_and_ignores_other_parameters() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=/bzImage console=ttyS0 corral.hostname=node-7 corral.debug quiet corral.rescue=0 corral.sysctl.vm.swappiness=5 corral.console.autologin",
        );
        assert!(c.debug);
        assert!(!c.rescue);
        assert_eq!(
            c.config,
            [
                ("hostname".to_owned(), Some("node-7".to_owned())),
                ("sysctl.vm.swappiness".to_owned(), Some("5".to_owned())),
                ("console.autologin".to_owned(), None),
            ]
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn flags_accept_common_spellings() {
        for on in [
            "corral.rescue",
            "corral.rescue=1",
            "corral.rescue=yes",
            "corral.rescue=ON",
        ] {
            assert!(Cmdline::parse(on).rescue, "{on}");
        }
        for off in [
            "",
            "corral.rescue=0",
            "corral.rescue=no",
            "corral.rescue=false",
        ] {
            assert!(!Cmdline::parse(off).rescue, "{off}");
        }
    }

    #[test]
    fn the_last_flag_wins() {
        let c = Cmdline::parse("corral.debug corral.debug=0");
        assert!(!c.debug);
    }

    #[test]
    fn malformed_flags_become_warnings() {
        let c = Cmdline::parse("corral.debug=maybe corral. corral.=1");
        assert!(!c.debug);
        let w = c.warnings.join("\n");
        assert_eq!(c.warnings.len(), 3, "{w}");
        assert!(w.contains("corral.debug=\"maybe\" is not a boolean"), "{w}");
        assert!(w.contains("malformed parameter \"corral.\""), "{w}");
        assert!(w.contains("malformed parameter \"corral.=1\""), "{w}");
    }
}
