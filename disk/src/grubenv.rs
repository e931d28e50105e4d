//! GRUB's environment block (`grubenv`): the 1024-byte file that
//! `load_env`/`save_env` read and write, which carries the A/B boot state
//! between GRUB and the running system. Format from GRUB's lib/envblk.c:
//! a signature line, `name=value` lines with `\` and newline escaped by a
//! backslash, padded with `#` to exactly 1024 bytes. GRUB rewrites it in
//! place and never resizes it, so it must always be exactly that size.

use std::collections::BTreeMap;

pub const SIZE: usize = 1024;
const SIGNATURE: &str = "# GRUB Environment Block\n";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("grubenv has no GRUB environment block signature")]
    Signature,
    #[error("grubenv is {0} bytes, not {SIZE}")]
    Size(usize),
    #[error("grubenv variable {0:?} is not a name (letters, digits and _)")]
    Name(String),
    #[error("grubenv would need {0} bytes, more than the block's {SIZE}")]
    Full(usize),
}

/// The variables of an environment block, in name order (GRUB keeps
/// insertion order; order carries no meaning to `load_env`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env(pub BTreeMap<String, String>);

impl Env {
    pub fn parse(block: &[u8]) -> Result<Self, EnvError> {
        if block.len() != SIZE {
            return Err(EnvError::Size(block.len()));
        }
        let text = block
            .strip_prefix(SIGNATURE.as_bytes())
            .ok_or(EnvError::Signature)?;
        let mut vars = BTreeMap::new();
        let mut i = 0;
        while i < text.len() {
            if text[i] == b'#' || text[i] == b'\n' {
                // Padding or an empty line: skip to the next line.
                while i < text.len() && text[i] != b'\n' {
                    i += 1;
                }
                i += 1;
                continue;
            }
            let mut name = Vec::new();
            while i < text.len() && text[i] != b'=' && text[i] != b'\n' {
                name.push(text[i]);
                i += 1;
            }
            if i >= text.len() || text[i] != b'=' {
                i += 1;
                continue;
            }
            i += 1;
            let mut value = Vec::new();
            while i < text.len() && text[i] != b'\n' {
                if text[i] == b'\\' && i + 1 < text.len() {
                    i += 1;
                }
                value.push(text[i]);
                i += 1;
            }
            i += 1;
            vars.insert(
                String::from_utf8_lossy(&name).into_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            );
        }
        Ok(Self(vars))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_owned(), value.into());
    }

    /// The 1024-byte block.
    pub fn to_block(&self) -> Result<Vec<u8>, EnvError> {
        let mut out = SIGNATURE.as_bytes().to_vec();
        for (name, value) in &self.0 {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(EnvError::Name(name.clone()));
            }
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            for b in value.bytes() {
                if b == b'\\' || b == b'\n' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'\n');
        }
        if out.len() > SIZE {
            return Err(EnvError::Full(out.len()));
        }
        out.resize(SIZE, b'#');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads_to_1024_bytes() {
        let mut env = Env::default();
        env.set("corral_default", "a");
        env.set("corral_note", "x\\y\nz");
        let block = env.to_block().unwrap();
        assert_eq!(block.len(), SIZE);
        assert!(block.starts_with(
            b"# GRUB Environment Block\ncorral_default=a\ncorral_note=x\\\\y\\\nz\n#"
        ));
        assert_eq!(Env::parse(&block).unwrap(), env);
    }

    #[test]
    fn reads_what_grub_editenv_writes() {
        // `grub-editenv FILE create; grub-editenv FILE set a=1 b=`
        let mut block = b"# GRUB Environment Block\na=1\nb=\n".to_vec();
        block.resize(SIZE, b'#');
        let env = Env::parse(&block).unwrap();
        assert_eq!(env.get("a"), Some("1"));
        assert_eq!(env.get("b"), None, "an empty value reads as unset");
    }

    #[test]
    fn refuses_bad_blocks_and_names() {
        assert_eq!(Env::parse(&[b'#'; 10]), Err(EnvError::Size(10)));
        assert_eq!(Env::parse(&[b'#'; SIZE]), Err(EnvError::Signature));
        let mut env = Env::default();
        env.set("bad name", "1");
        assert!(matches!(env.to_block(), Err(EnvError::Name(_))));
        let mut env = Env::default();
        env.set("big", "x".repeat(SIZE));
        assert!(matches!(env.to_block(), Err(EnvError::Full(_))));
    }
}
