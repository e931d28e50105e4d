use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::DeTable;
use toml::Spanned;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}

impl From<Diagnostic> for ConfigError {
    fn from(d: Diagnostic) -> Self {
        Self::Invalid(Box::new(d))
    }
}

/// A problem in a configuration document, with where it is:
/// `origin:line:column: key: message`, the format editors and compilers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub origin: String,
    /// 1-based, when the position is known.
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    /// Dotted key path, e.g. `init.restart-delay`.
    pub key: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn from_toml(
        text: &str,
        origin: &str,
        key: Option<String>,
        e: &toml::de::Error,
    ) -> Self {
        let (line, column) = position(text, e.span());
        Self {
            origin: origin.to_owned(),
            line,
            column,
            key,
            message: e.message().trim_end().to_owned(),
        }
    }

    /// A problem with a key whose position is not known.
    pub fn keyed(origin: &str, key: &str, message: String) -> Self {
        Self {
            origin: origin.to_owned(),
            line: None,
            column: None,
            key: Some(key.to_owned()),
            message,
        }
    }

    /// `key: message`, without the origin and position.
    pub fn message_with_key(&self) -> String {
        match &self.key {
            Some(k) => format!("{k}: {}", self.message),
            None => self.message.clone(),
        }
    }

    pub(crate) fn at_key(
        text: &str,
        origin: &str,
        table: &Spanned<DeTable<'_>>,
        key: &str,
        message: String,
    ) -> Self {
        let (line, column) = position(text, crate::locate(table, key));
        Self {
            origin: origin.to_owned(),
            line,
            column,
            key: Some(key.to_owned()),
            message,
        }
    }
}

fn position(text: &str, span: Option<Range<usize>>) -> (Option<usize>, Option<usize>) {
    let Some(span) = span else {
        return (None, None);
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (Some(line), Some(column))
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Diagnostic {}
