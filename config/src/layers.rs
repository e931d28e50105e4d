//! The configuration is several documents laid over each other, later
//! ones winning key by key: the embedded defaults, the state disk's file,
//! a NoCloud config drive, and `corral.<key>=<value>` parameters on the
//! kernel command line. This module merges them, blames the right layer
//! for a mistake, and edits one layer by dotted key (`corral config set`).

use std::collections::BTreeMap;
use std::fmt;

use toml::de::DeTable;
use toml::{Table, Value};

use crate::{Config, ConfigError, Diagnostic};

/// Where a layer comes from, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LayerKind {
    /// Shipped in the image: `/etc/corral/config.toml`.
    Defaults,
    /// Kept on the state disk: `/var/lib/corral/config.toml`, written by
    /// `corral config set/unset/edit`.
    State,
    /// `user-data` on a NoCloud config drive (label `cidata`).
    Drive,
    /// `corral.<key>=<value>` on the kernel command line.
    Cmdline,
}

impl LayerKind {
    pub const ALL: [LayerKind; 4] = [
        LayerKind::Defaults,
        LayerKind::State,
        LayerKind::Drive,
        LayerKind::Cmdline,
    ];

    /// The name `corral config export --layer` takes.
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Defaults => "defaults",
            LayerKind::State => "state",
            LayerKind::Drive => "drive",
            LayerKind::Cmdline => "cmdline",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One document of the stack, checked for syntax, unknown keys, types and
/// values. Rules that span keys (an interface needs `dhcp` or `addresses`)
/// are checked on the merged result: a layer may set just an MTU.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub kind: LayerKind,
    /// Names it in errors: a file path, "kernel command line".
    pub origin: String,
    pub text: String,
    table: Table,
}

impl Layer {
    pub fn parse(kind: LayerKind, origin: &str, text: &str) -> Result<Self, ConfigError> {
        Config::deserialize_text(text, origin)?;
        let table = text.parse::<Table>().map_err(|e| {
            ConfigError::from(Diagnostic {
                origin: origin.to_owned(),
                line: None,
                column: None,
                key: None,
                message: e.to_string(),
            })
        })?;
        Ok(Self {
            kind,
            origin: origin.to_owned(),
            text: text.to_owned(),
            table,
        })
    }

    pub fn empty(kind: LayerKind, origin: &str) -> Self {
        Self {
            kind,
            origin: origin.to_owned(),
            text: String::new(),
            table: Table::new(),
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

fn render(table: &Table, origin: &str) -> Result<String, ConfigError> {
    toml::to_string(table).map_err(|e| {
        ConfigError::from(Diagnostic {
            origin: origin.to_owned(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot write TOML: {e}"),
        })
    })
}

/// The layers merged: the config the system runs with.
#[derive(Debug, Clone)]
pub struct Merged {
    pub config: Config,
    pub table: Table,
    pub text: String,
}

/// Merges the layers in order and checks the result as a whole. A rule
/// broken by the result is blamed on the highest layer that sets the key,
/// at its line, or on "the merged config" when no layer sets it.
pub fn merge(layers: &[Layer]) -> Result<Merged, ConfigError> {
    let mut table = Table::new();
    for l in layers {
        merge_tables(&mut table, l.table.clone());
    }
    let text = render(&table, "the merged config")?;
    let (config, _) = Config::deserialize_text(&text, "the merged config")?;
    if let Err((key, message)) = config.validate() {
        let blamed = layers
            .iter()
            .rev()
            .find(|l| get(&l.table, &split_key(&key)).is_some());
        return Err(match blamed {
            Some(l) => match DeTable::parse(&l.text) {
                Ok(spanned) => Diagnostic::at_key(&l.text, &l.origin, &spanned, &key, message),
                Err(_) => Diagnostic::keyed(&l.origin, &key, message),
            },
            None => Diagnostic::keyed("the merged config", &key, message),
        }
        .into());
    }
    Ok(Merged {
        config,
        table,
        text,
    })
}

pub(crate) fn merge_tables(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge_tables(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Splits a dotted key path as `corral config` and the kernel command line
/// take it: `network.interfaces.eth0.mtu`, with `"..."` around a part that
/// contains dots. Under `sysctl` the rest is one kernel parameter name, so
/// `sysctl.net.ipv4.ip_forward` needs no quotes. Lists are set as a whole:
/// an index (`addresses[0]`) is refused with a message saying so.
pub fn parse_key(key: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    for c in key.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                parts.push((std::mem::take(&mut current), was_quoted));
                was_quoted = false;
            }
            c => current.push(c),
        }
    }
    if quoted {
        return Err(format!("key {key:?} has an unclosed quote"));
    }
    parts.push((current, was_quoted));
    if parts.iter().any(|(p, q)| p.is_empty() && !q) {
        return Err(format!(
            "key {key:?} has an empty part (e.g. network.interfaces.eth0.mtu)"
        ));
    }
    let sysctl = parts.first().is_some_and(|(p, _)| p == "sysctl");
    if !sysctl {
        if let Some((p, _)) = parts.iter().find(|(p, q)| !q && p.contains('[')) {
            let list = p.split('[').next().unwrap_or(p);
            return Err(format!(
                "{key}: a list is set and unset as a whole (the key is ...{list}, the value a list)"
            ));
        }
    }
    let mut parts: Vec<String> = parts.into_iter().map(|(p, _)| p).collect();
    if sysctl && parts.len() > 2 {
        let name = parts.split_off(1).join(".");
        parts.push(name);
    }
    Ok(parts)
}

/// Like [`parse_key`], for keys this crate produced itself (error paths
/// such as `ssh.authorized-keys[0]`): never fails, drops list indexes.
pub(crate) fn split_key(key: &str) -> Vec<String> {
    let stripped: String = {
        // Indexes only ever end a part: `a.b[0]` or `a.b[0].c`.
        let mut out = String::new();
        let mut depth = 0;
        for c in key.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                c if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    parse_key(&stripped).unwrap_or_else(|_| vec![stripped])
}

/// Writes a key path back as text, quoting parts that need it.
pub fn join_key(parts: &[String]) -> String {
    let sysctl = parts.first().map(String::as_str) == Some("sysctl");
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let bare = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if bare || (sysctl && i == 1) {
                p.clone()
            } else {
                format!("{p:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The value at a key path.
pub fn get<'a>(table: &'a Table, path: &[String]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get(p)?.as_table()?;
    }
    t.get(last)
}

/// Every value by its dotted key (lists are values, tables are walked).
pub fn flatten(table: &Table) -> BTreeMap<String, Value> {
    fn walk(t: &Table, prefix: &mut Vec<String>, out: &mut BTreeMap<String, Value>) {
        for (k, v) in t {
            prefix.push(k.clone());
            match v {
                Value::Table(inner) if !inner.is_empty() => walk(inner, prefix, out),
                v => {
                    out.insert(join_key(prefix), v.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = BTreeMap::new();
    walk(table, &mut Vec::new(), &mut out);
    out
}

/// The values a piece of text given on a command line could mean, most
/// likely first: as TOML (`1400`, `true`, `["a", "b"]`), as a string, and
/// as a comma-separated list of strings (the kernel command line cannot
/// easily carry quotes).
pub fn candidates(raw: &str) -> Vec<Value> {
    let mut out = Vec::new();
    if let Ok(t) = format!("v = {raw}").parse::<Table>() {
        if let Some(v) = t.get("v") {
            out.push(v.clone());
        }
    }
    let as_string = Value::String(raw.to_owned());
    if !out.contains(&as_string) {
        out.push(as_string);
    }
    let list = Value::Array(
        raw.split(',')
            .map(|s| Value::String(s.trim().to_owned()))
            .collect(),
    );
    if !out.contains(&list) {
        out.push(list);
    }
    out
}

/// Sets `key` to the value `raw` means in `layer` (which sits at its place
/// in `stack`, lowest first), trying each of [`candidates`] until the whole
/// stack is valid. The error, if none fits, is the most telling one: a
/// reason about the value rather than "invalid type".
pub fn set_in_stack(
    stack: &[Layer],
    index: usize,
    key: &str,
    raw: &str,
) -> Result<Layer, ConfigError> {
    let path = parse_key(key).map_err(|m| Diagnostic::keyed("command line", key, m))?;
    let layer = stack
        .get(index)
        .ok_or_else(|| Diagnostic::keyed("command line", key, "no such layer".into()))?;
    let mut errors = Vec::new();
    for value in candidates(raw) {
        let text = edit_text(&layer.text, &path, Some(&value))
            .map_err(|m| Diagnostic::keyed(&layer.origin, key, m))?;
        let result = Layer::parse(layer.kind, &layer.origin, &text).and_then(|new| {
            let mut trial = stack.to_vec();
            if let Some(slot) = trial.get_mut(index) {
                *slot = new.clone();
            }
            merge(&trial).map(|_| new)
        });
        match result {
            Ok(new) => return Ok(new),
            Err(e) => errors.push(e),
        }
    }
    let telling = errors
        .iter()
        .position(|e| !e.to_string().contains("invalid type"))
        .unwrap_or(0);
    Err(unplaced(
        errors.swap_remove(telling.min(errors.len().saturating_sub(1))),
        &layer.origin,
    ))
}

/// Sets (`Some`) or removes (`None`) the value at `path` in a TOML
/// document, keeping everything else as written: comments, order, layout.
/// Tables emptied by a removal go too.
fn edit_text(text: &str, path: &[String], value: Option<&Value>) -> Result<String, String> {
    use toml_edit::{DocumentMut, InlineTable, Item, TableLike};
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let Some((last, parents)) = path.split_last() else {
        return Err("an empty key".into());
    };
    match value {
        Some(v) => {
            let new: toml_edit::Value = v
                .to_string()
                .parse()
                .map_err(|e| format!("cannot write {v}: {e}"))?;
            let mut table: &mut dyn TableLike = doc.as_table_mut();
            let mut inline = false;
            for (n, p) in parents.iter().enumerate() {
                if table.get(p).is_none() {
                    let item = if inline {
                        Item::Value(toml_edit::Value::InlineTable(InlineTable::new()))
                    } else {
                        let mut t = toml_edit::Table::new();
                        t.set_implicit(true);
                        Item::Table(t)
                    };
                    table.insert(p, item);
                }
                let Some(item) = table.get_mut(p) else {
                    return Err(format!("cannot create {p}"));
                };
                inline = matches!(item, Item::Value(_));
                let kind = item.type_name();
                table = item.as_table_like_mut().ok_or_else(|| {
                    format!(
                        "{} is a {kind}, not a table",
                        join_key(path.get(..=n).unwrap_or(path))
                    )
                })?;
            }
            match table.get_mut(last) {
                // Keep the comment after the old value.
                Some(Item::Value(old)) => {
                    let decor = old.decor().clone();
                    *old = new;
                    *old.decor_mut() = decor;
                }
                _ => {
                    table.insert(last, Item::Value(new));
                }
            }
        }
        None => {
            fn remove(table: &mut dyn TableLike, path: &[String]) -> bool {
                match path {
                    [] => false,
                    [last] => table.remove(last).is_some(),
                    [first, rest @ ..] => {
                        let Some(inner) = table.get_mut(first).and_then(|i| i.as_table_like_mut())
                        else {
                            return false;
                        };
                        let removed = remove(inner, rest);
                        if removed && inner.is_empty() {
                            table.remove(first);
                        }
                        removed
                    }
                }
            }
            remove(doc.as_table_mut(), path);
        }
    }
    Ok(doc.to_string())
}

/// An error in the layer being edited points into a document that was
/// never written: its line and column mean nothing to the user, the key
/// path says it all. Errors in other layers keep their positions.
fn unplaced(e: ConfigError, origin: &str) -> ConfigError {
    match e {
        ConfigError::Invalid(mut d) if d.origin == origin => {
            d.line = None;
            d.column = None;
            ConfigError::Invalid(d)
        }
        other => other,
    }
}

/// Removes `key` from `layer` at `index`, checking that the stack is
/// still valid without it. Unsetting a key the layer does not set is an
/// error that says which layer sets it, if any.
pub fn unset_in_stack(stack: &[Layer], index: usize, key: &str) -> Result<Layer, ConfigError> {
    let path = parse_key(key).map_err(|m| Diagnostic::keyed("command line", key, m))?;
    let layer = stack
        .get(index)
        .ok_or_else(|| Diagnostic::keyed("command line", key, "no such layer".into()))?;
    if get(&layer.table, &path).is_none() {
        let elsewhere: Vec<&str> = stack
            .iter()
            .filter(|l| get(&l.table, &path).is_some())
            .map(|l| l.kind.name())
            .collect();
        let message = if elsewhere.is_empty() {
            "is not set".to_owned()
        } else {
            format!(
                "is not set in the {} layer (it comes from: {})",
                layer.kind,
                elsewhere.join(", ")
            )
        };
        return Err(Diagnostic::keyed(&layer.origin, key, message).into());
    }
    let text = edit_text(&layer.text, &path, None)
        .map_err(|m| Diagnostic::keyed(&layer.origin, key, m))?;
    let new =
        Layer::parse(layer.kind, &layer.origin, &text).map_err(|e| unplaced(e, &layer.origin))?;
    let mut trial = stack.to_vec();
    if let Some(slot) = trial.get_mut(index) {
        *slot = new.clone();
    }
    merge(&trial).map_err(|e| unplaced(e, &layer.origin))?;
    Ok(new)
}

/// The kernel command line's `corral.<key>=<value>` settings as a layer
/// over `below`. The last occurrence of a key counts. Parameters are
/// applied in passes until no more can be: a setting that needs another
/// one (an MTU for an interface whose `dhcp` comes later on the line)
/// is not lost to the order. What cannot be used is named in the returned
/// warnings and skipped; a bare `corral.<key>` means `true`.
pub fn cmdline_layer(params: &[(String, Option<String>)], below: &[Layer]) -> (Layer, Vec<String>) {
    const ORIGIN: &str = "kernel command line";
    let mut stack = below.to_vec();
    stack.push(Layer::empty(LayerKind::Cmdline, ORIGIN));
    let index = stack.len() - 1;
    let mut pending: Vec<(&str, &str)> = Vec::new();
    for (n, (key, value)) in params.iter().enumerate() {
        let later = params.get(n + 1..).unwrap_or_default();
        if !later.iter().any(|(k, _)| k == key) {
            pending.push((key, value.as_deref().unwrap_or("true")));
        }
    }
    let mut failed = Vec::new();
    loop {
        let mut progress = false;
        failed.clear();
        for &(key, raw) in &pending {
            match set_in_stack(&stack, index, key, raw) {
                Ok(layer) => {
                    if let Some(slot) = stack.get_mut(index) {
                        *slot = layer;
                    }
                    progress = true;
                }
                Err(e) => failed.push((key, raw, e)),
            }
        }
        pending = failed.iter().map(|(k, r, _)| (*k, *r)).collect();
        if pending.is_empty() {
            break;
        }
        if !progress {
            // Settings that only hold together (dhcp = false with the
            // addresses that replace it): all the rest at once.
            if let Some(layer) = set_together(&stack, index, &pending) {
                if let Some(slot) = stack.get_mut(index) {
                    *slot = layer;
                }
                failed.clear();
            }
            break;
        }
    }
    let warnings = failed
        .into_iter()
        .map(|(key, raw, e)| match e {
            ConfigError::Invalid(d) => format!(
                "corral.{key}={raw}: {}; ignored",
                if d.key.as_deref() == Some(key) {
                    d.message.clone()
                } else {
                    d.message_with_key()
                }
            ),
            e => format!("corral.{key}={raw}: {e}; ignored"),
        })
        .collect();
    let layer = stack
        .pop()
        .unwrap_or_else(|| Layer::empty(LayerKind::Cmdline, ORIGIN));
    (layer, warnings)
}

/// Sets every `(key, raw)` in the layer at `index` at once, each value
/// typed on its own (the first candidate the schema takes), and returns
/// the layer if the whole stack is then valid.
fn set_together(stack: &[Layer], index: usize, settings: &[(&str, &str)]) -> Option<Layer> {
    let layer = stack.get(index)?;
    let mut text = layer.text.clone();
    for (key, raw) in settings {
        let path = parse_key(key).ok()?;
        text = candidates(raw).into_iter().find_map(|v| {
            let t = edit_text(&text, &path, Some(&v)).ok()?;
            Layer::parse(layer.kind, &layer.origin, &t).ok().map(|_| t)
        })?;
    }
    let new = Layer::parse(layer.kind, &layer.origin, &text).ok()?;
    let mut trial = stack.to_vec();
    if let Some(slot) = trial.get_mut(index) {
        *slot = new.clone();
    }
    merge(&trial).ok().map(|_| new)
}

/// The file a layer is published as in the run directory.
fn published_name(kind: LayerKind) -> String {
    format!("{}.toml", kind.name())
}

/// Writes the running system's view into `dir` (/run/corral/config): each
/// layer of `stack` as `<layer>.toml` (removing those of layers not in
/// it) and the merged text as `effective.toml`, each replaced atomically.
/// Returns what could not be written.
pub fn publish(dir: &std::path::Path, stack: &[Layer], effective: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let mut write = |name: &str, text: &str| {
        let path = dir.join(name);
        if let Err(e) = crate::fsutil::write_atomic(&path, text.as_bytes(), 0o644, false) {
            errors.push(format!("cannot write {}: {e}", path.display()));
        }
    };
    for kind in LayerKind::ALL {
        let name = published_name(kind);
        match stack.iter().find(|l| l.kind == kind) {
            Some(l) => write(&name, &l.text),
            None => {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
    }
    write("effective.toml", effective);
    errors
}

/// The layers [`publish`]ed in `dir`, lowest first, with `state` in place
/// of the published state layer when given. Without published defaults
/// (outside a running Corral) the shipped file is used, if there. A file
/// that does not parse is left out and its error returned.
pub fn published(dir: &std::path::Path, state: Option<Layer>) -> (Vec<Layer>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut read = |kind: LayerKind, path: &std::path::Path| {
        let text = std::fs::read_to_string(path).ok()?;
        Layer::parse(kind, &path.display().to_string(), &text)
            .map_err(|e| errors.push(e))
            .ok()
    };
    let mut stack = Vec::new();
    let defaults = read(
        LayerKind::Defaults,
        &dir.join(published_name(LayerKind::Defaults)),
    )
    .or_else(|| {
        read(
            LayerKind::Defaults,
            std::path::Path::new(crate::DEFAULT_PATH),
        )
    });
    stack.extend(defaults);
    match state {
        Some(l) => stack.push(l),
        None => stack.extend(read(
            LayerKind::State,
            &dir.join(published_name(LayerKind::State)),
        )),
    }
    for kind in [LayerKind::Drive, LayerKind::Cmdline] {
        stack.extend(read(kind, &dir.join(published_name(kind))));
    }
    (stack, errors)
}

/// Which layer gives each key of the merged config its value.
pub fn provenance(layers: &[Layer]) -> BTreeMap<String, LayerKind> {
    let mut out = BTreeMap::new();
    for l in layers {
        for key in flatten(&l.table).into_keys() {
            out.insert(key, l.kind);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(kind: LayerKind, text: &str) -> Layer {
        Layer::parse(kind, kind.name(), text).unwrap()
    }

    fn parts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn later_layers_win_key_by_key() {
        let stack = [
            layer(
                LayerKind::Defaults,
                "hostname = \"a\"\n[syslog]\nkeep = 5\n[network.interfaces.eth0]\ndhcp = true\n",
            ),
            layer(LayerKind::State, "hostname = \"b\"\n[syslog]\nkeep = 2\n"),
            layer(LayerKind::Drive, "hostname = \"c\"\n"),
            layer(
                LayerKind::Cmdline,
                "[network.interfaces.eth0]\nmtu = 1400\n",
            ),
        ];
        let m = merge(&stack).unwrap();
        assert_eq!(m.config.hostname.unwrap().as_str(), "c");
        assert_eq!(m.config.syslog.keep, 2);
        let eth0 = &m.config.network.interfaces["eth0"];
        assert!(eth0.dhcp, "kept from the defaults");
        assert_eq!(eth0.mtu, Some(1400), "added by the command line");
        let p = provenance(&stack);
        assert_eq!(p["hostname"], LayerKind::Drive);
        assert_eq!(p["syslog.keep"], LayerKind::State);
        assert_eq!(p["network.interfaces.eth0.mtu"], LayerKind::Cmdline);
    }

    #[test]
    fn a_layer_may_set_part_of_a_rule_but_the_result_must_hold() {
        // An MTU alone is a fine layer when eth0 has dhcp below it...
        layer(LayerKind::State, "[network.interfaces.eth1]\nmtu = 1400\n");
        // ...but on its own the merged result is refused, blamed on the
        // layer and line that set it.
        let stack = [
            layer(LayerKind::Defaults, ""),
            layer(
                LayerKind::State,
                "\n[network.interfaces.eth1]\nmtu = 1400\n",
            ),
        ];
        let Err(ConfigError::Invalid(d)) = merge(&stack) else {
            panic!("accepted")
        };
        assert_eq!(d.origin, "state");
        assert_eq!(d.key.as_deref(), Some("network.interfaces.eth1"));
        assert_eq!(d.line, Some(2), "{d}");
        assert!(d.message.contains("dhcp = true or addresses"), "{d}");
    }

    #[test]
    fn a_layer_with_a_wrong_type_names_its_own_line() {
        let Err(ConfigError::Invalid(d)) =
            Layer::parse(LayerKind::State, "disk.toml", "\n[init]\ntty = 1\n")
        else {
            panic!("accepted")
        };
        assert_eq!((d.origin.as_str(), d.line), ("disk.toml", Some(3)));
        assert_eq!(d.key.as_deref(), Some("init.tty"));
    }

    #[test]
    fn keys_parse_with_quotes_and_sysctl_names() {
        assert_eq!(
            parse_key("network.interfaces.eth0.mtu").unwrap(),
            parts(&["network", "interfaces", "eth0", "mtu"])
        );
        assert_eq!(
            parse_key("sysctl.net.ipv4.ip_forward").unwrap(),
            parts(&["sysctl", "net.ipv4.ip_forward"])
        );
        assert_eq!(
            parse_key("sysctl.\"vm.swappiness\"").unwrap(),
            parts(&["sysctl", "vm.swappiness"])
        );
        assert_eq!(
            parse_key("network.interfaces.\"eth0.100\".dhcp").unwrap(),
            parts(&["network", "interfaces", "eth0.100", "dhcp"])
        );
        assert!(parse_key("a..b").unwrap_err().contains("empty part"));
        assert!(parse_key("").unwrap_err().contains("empty part"));
        assert!(parse_key("a.\"b").unwrap_err().contains("unclosed quote"));
        assert!(parse_key("network.interfaces.eth0.addresses[0]")
            .unwrap_err()
            .contains("set and unset as a whole"));
        assert_eq!(
            split_key("network.interfaces.\"eth0.100\".addresses[1]"),
            parts(&["network", "interfaces", "eth0.100", "addresses"])
        );
        assert_eq!(
            join_key(&parts(&["network", "interfaces", "eth0.100", "dhcp"])),
            "network.interfaces.\"eth0.100\".dhcp"
        );
        assert_eq!(
            join_key(&parts(&["sysctl", "vm.swappiness"])),
            "sysctl.vm.swappiness"
        );
    }

    #[test]
    fn edit_get_and_flatten() {
        let t = edit_text("", &parts(&["a", "b", "c"]), Some(&Value::Integer(1))).unwrap();
        let t = edit_text(&t, &parts(&["a", "d"]), Some(&Value::Boolean(true))).unwrap();
        let table: Table = t.parse().unwrap();
        assert_eq!(
            get(&table, &parts(&["a", "b", "c"])),
            Some(&Value::Integer(1))
        );
        let e = edit_text(&t, &parts(&["a", "d", "x"]), Some(&Value::Integer(2))).unwrap_err();
        assert_eq!(e, "a.d is a boolean, not a table");
        let flat = flatten(&table);
        assert_eq!(flat.keys().collect::<Vec<_>>(), ["a.b.c", "a.d"]);
        let t = edit_text(&t, &parts(&["a", "b", "c"]), None).unwrap();
        let table: Table = t.parse().unwrap();
        assert!(
            get(&table, &parts(&["a", "b"])).is_none(),
            "empty table pruned"
        );
        let t = edit_text(&t, &parts(&["a", "d"]), None).unwrap();
        assert_eq!(t.trim(), "");
    }

    #[test]
    fn set_finds_the_type_the_key_wants() {
        let stack = [
            layer(
                LayerKind::Defaults,
                "[network.interfaces.eth0]\ndhcp = true\n",
            ),
            Layer::empty(LayerKind::State, "state"),
        ];
        let with = |key: &str, raw: &str| set_in_stack(&stack, 1, key, raw);
        let l = with("hostname", "1234").unwrap();
        assert_eq!(
            l.text.trim(),
            "hostname = \"1234\"",
            "a string, not a number"
        );
        let l = with("syslog.keep", "3").unwrap();
        assert_eq!(l.text.trim(), "[syslog]\nkeep = 3");
        let l = with("network.interfaces.eth0.mtu", "1400").unwrap();
        assert!(l.text.contains("mtu = 1400"), "{}", l.text);
        let l = with("network.dns.nameservers", "1.1.1.1,9.9.9.9").unwrap();
        assert!(
            l.text.contains("nameservers = [\"1.1.1.1\", \"9.9.9.9\"]"),
            "{}",
            l.text
        );
        let l = with("ssh.authorized-keys", "ssh-ed25519 AAAAC3Nza me@x").unwrap();
        assert!(
            l.text.contains("authorized-keys = [\"ssh-ed25519"),
            "{}",
            l.text
        );
        let l = with("sysctl.vm.swappiness", "10").unwrap();
        assert!(l.text.contains("\"vm.swappiness\" = 10"), "{}", l.text);
        let l = with("console.autologin", "false").unwrap();
        assert!(l.text.contains("autologin = false"), "{}", l.text);
    }

    #[test]
    fn set_refuses_bad_values_with_the_reason_about_the_value() {
        let stack = [
            layer(LayerKind::Defaults, ""),
            Layer::empty(LayerKind::State, "/var/lib/corral/config.toml"),
        ];
        let err = |key: &str, raw: &str| match set_in_stack(&stack, 1, key, raw) {
            Err(ConfigError::Invalid(d)) => *d,
            other => panic!("{key}={raw}: expected an error, got {other:?}"),
        };
        let d = err("hostname", "bad_name");
        assert_eq!(d.key.as_deref(), Some("hostname"));
        assert_eq!(
            (d.line, d.column),
            (None, None),
            "no line of an unwritten file"
        );
        assert!(
            d.to_string()
                .starts_with("/var/lib/corral/config.toml: hostname: "),
            "{d}"
        );
        assert!(d.message.contains("contains '_'"), "{d}");
        let d = err("syslog.keep", "1000");
        assert!(d.message.contains("not between 1 and 100"), "{d}");
        let d = err("syslog.keep", "two");
        assert!(d.message.contains("invalid type"), "{d}");
        let d = err("hostnme", "x");
        assert!(d.message.contains("unknown field `hostnme`"), "{d}");
        let d = err("network.interfaces.eth0.mtu", "1400");
        assert!(d.message.contains("dhcp = true or addresses"), "{d}");
        let d = err("ssh.authorized-keys", "id_ed25519");
        assert!(d.message.contains("not a public key line"), "{d}");
        let d = err("hostname.x", "a");
        assert!(d.to_string().contains("invalid type"), "{d}");
    }

    #[test]
    fn set_and_unset_keep_the_users_comments_and_layout() {
        let text = "# who I am\nhostname = \"a\" # not b\n\n# logs\n[syslog]\nkeep = 2\n";
        let stack = [layer(LayerKind::State, text)];
        let l = set_in_stack(&stack, 0, "hostname", "b").unwrap();
        assert_eq!(
            l.text,
            "# who I am\nhostname = \"b\" # not b\n\n# logs\n[syslog]\nkeep = 2\n"
        );
        let l = set_in_stack(&[l], 0, "sysctl.net.ipv4.ip_forward", "1").unwrap();
        assert!(l.text.starts_with("# who I am\n"), "{}", l.text);
        assert!(
            l.text.contains("[sysctl]\n\"net.ipv4.ip_forward\" = 1\n"),
            "{}",
            l.text
        );
        let l = unset_in_stack(&[l], 0, "syslog.keep").unwrap();
        assert!(
            !l.text.contains("[syslog]"),
            "emptied table removed: {}",
            l.text
        );
        assert!(l.text.contains("# not b"), "{}", l.text);
        // Inline tables are edited in place.
        let stack = [layer(
            LayerKind::State,
            "sysctl = { \"vm.swappiness\" = 10 }\n",
        )];
        let l = set_in_stack(&stack, 0, "sysctl.vm.swappiness", "20").unwrap();
        assert_eq!(l.text, "sysctl = { \"vm.swappiness\" = 20 }\n");
    }

    #[test]
    fn published_layers_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let stack = [
            layer(LayerKind::Defaults, "hostname = \"a\"\n"),
            layer(LayerKind::Drive, "hostname = \"c\"\n"),
        ];
        std::fs::write(dir.path().join("cmdline.toml"), "stale").unwrap();
        assert!(publish(dir.path(), &stack, "hostname = \"c\"\n").is_empty());
        assert!(
            !dir.path().join("cmdline.toml").exists(),
            "a layer not in use is removed"
        );
        let state = layer(LayerKind::State, "hostname = \"b\"\n");
        let (read, errors) = published(dir.path(), Some(state));
        assert!(errors.is_empty(), "{errors:?}");
        let kinds: Vec<LayerKind> = read.iter().map(|l| l.kind).collect();
        assert_eq!(
            kinds,
            [LayerKind::Defaults, LayerKind::State, LayerKind::Drive]
        );
        std::fs::write(dir.path().join("drive.toml"), "hostname = 1").unwrap();
        let (read, errors) = published(dir.path(), None);
        assert_eq!(read.len(), 1);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn unset_says_where_a_key_comes_from() {
        let stack = [
            layer(LayerKind::Defaults, "hostname = \"a\"\n"),
            layer(LayerKind::State, "[syslog]\nkeep = 2\n"),
        ];
        let l = unset_in_stack(&stack, 1, "syslog.keep").unwrap();
        assert!(l.is_empty(), "{}", l.text);
        let e = unset_in_stack(&stack, 1, "hostname")
            .unwrap_err()
            .to_string();
        assert!(e.contains("comes from: defaults"), "{e}");
        let e = unset_in_stack(&stack, 1, "syslog.remote")
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not set"), "{e}");
    }

    #[test]
    fn command_line_order_does_not_matter_and_the_last_occurrence_counts() {
        let params: Vec<(String, Option<String>)> = [
            ("network.interfaces.eth1.mtu", Some("9000")),
            ("hostname", Some("first")),
            ("network.interfaces.eth1.dhcp", None),
            ("hostname", Some("last")),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
        .collect();
        let (l, warnings) = cmdline_layer(&params, &[]);
        assert!(warnings.is_empty(), "{warnings:?}");
        let c = merge(&[l]).unwrap().config;
        assert_eq!(c.network.interfaces["eth1"].mtu, Some(9000));
        assert_eq!(c.hostname.unwrap().as_str(), "last");
        // Two settings that only hold together: DHCP to a static address.
        let below = [layer(
            LayerKind::Defaults,
            "[network.interfaces.eth0]\ndhcp = true\n",
        )];
        let params: Vec<(String, Option<String>)> = vec![
            ("network.interfaces.eth0.dhcp".into(), Some("false".into())),
            (
                "network.interfaces.eth0.addresses".into(),
                Some("10.0.0.2/24".into()),
            ),
        ];
        let (l, warnings) = cmdline_layer(&params, &below);
        assert!(warnings.is_empty(), "{warnings:?}");
        let mut stack = below.to_vec();
        stack.push(l);
        let c = merge(&stack).unwrap().config;
        assert_eq!(
            c.network.interfaces["eth0"].addresses[0].to_string(),
            "10.0.0.2/24"
        );
    }

    #[test]
    fn command_line_parameters_become_a_layer_and_bad_ones_are_skipped() {
        let below = [layer(
            LayerKind::Defaults,
            "[network.interfaces.eth0]\ndhcp = true\n",
        )];
        let params: Vec<(String, Option<String>)> = [
            ("hostname", Some("from-cmdline")),
            ("syslog.keep", Some("3")),
            ("syslog.max-size", Some("huge")),
            ("network.interfaces.eth0.mtu", Some("9000")),
            ("console.autologin", None),
            ("sysctl.vm.swappiness", Some("5")),
            ("nosuch", Some("1")),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
        .collect();
        let (l, warnings) = cmdline_layer(&params, &below);
        let mut stack = below.to_vec();
        stack.push(l);
        let c = merge(&stack).unwrap().config;
        assert_eq!(c.hostname.unwrap().as_str(), "from-cmdline");
        assert_eq!(c.syslog.keep, 3);
        assert_eq!(c.network.interfaces["eth0"].mtu, Some(9000));
        assert!(c.console.autologin);
        assert_eq!(c.sysctl.len(), 1);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("corral.syslog.max-size=huge: invalid size \"huge\""),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("unknown field `nosuch`"),
            "{warnings:?}"
        );
    }
}
