//! Dockerfile words as Docker's shell lexer (moby's `shell.Lex`) reads
//! them: quotes removed (`'...'` literal, `"..."` with `\"`, `\$` and
//! `\\` escapes), the escape character outside quotes, and `$NAME`,
//! `${NAME}`, `${NAME:-word}`, `${NAME-word}`, `${NAME:+word}`,
//! `${NAME+word}`, `${NAME:?message}` expanded from the build's
//! variables. parse-dockerfile gives an instruction's arguments as text;
//! this is the part of Docker's semantics it leaves to the builder.

use std::collections::BTreeMap;

/// The variables a word is expanded with: `ARG`s in scope and `ENV`s.
pub type Vars = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WordError(pub String);

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    vars: &'a Vars,
    escape: char,
}

impl Lexer<'_> {
    /// One word up to unquoted whitespace (when `split`) or the end;
    /// None when only whitespace was left (a quoted empty word counts).
    fn word(&mut self, split: bool) -> Result<Option<String>, WordError> {
        if split {
            while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
                self.chars.next();
            }
        }
        let mut out = String::new();
        let mut any = false;
        while let Some(&c) = self.chars.peek() {
            if split && c.is_whitespace() {
                break;
            }
            any = true;
            self.chars.next();
            match c {
                '\'' => {
                    loop {
                        match self.chars.next() {
                        Some('\'') => break,
                        Some(c) => out.push(c),
                        None => return Err(WordError("unexpected end of statement while looking for matching single-quote".into())),
                    }
                    }
                }
                '"' => {
                    loop {
                        match self.chars.next() {
                        Some('"') => break,
                        Some('$') => self.variable(&mut out)?,
                        Some(c) if c == self.escape => match self.chars.peek() {
                            Some(&n) if n == '"' || n == '$' || n == self.escape => {
                                out.push(n);
                                self.chars.next();
                            }
                            _ => out.push(c),
                        },
                        Some(c) => out.push(c),
                        None => return Err(WordError("unexpected end of statement while looking for matching double-quote".into())),
                    }
                    }
                }
                '$' => self.variable(&mut out)?,
                c if c == self.escape => match self.chars.next() {
                    Some(n) => out.push(n),
                    None => out.push(c),
                },
                c => out.push(c),
            }
        }
        Ok(any.then_some(out))
    }

    /// After a `$`: the variable's value, or the `$` itself when no name
    /// follows.
    fn variable(&mut self, out: &mut String) -> Result<(), WordError> {
        let braced = self.chars.peek() == Some(&'{');
        if braced {
            self.chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.chars.next();
            } else {
                break;
            }
        }
        if !braced {
            if name.is_empty() {
                out.push('$');
            } else {
                out.push_str(self.vars.get(&name).map(String::as_str).unwrap_or(""));
            }
            return Ok(());
        }
        if name.is_empty() {
            return Err(WordError(
                "bad substitution: ${} needs a variable name".into(),
            ));
        }
        let value = self.vars.get(&name);
        match self.chars.next() {
            Some('}') => {
                out.push_str(value.map(String::as_str).unwrap_or(""));
                Ok(())
            }
            Some(first) => {
                let colon = first == ':';
                let op = if colon {
                    self.chars.next()
                } else {
                    Some(first)
                };
                let mut word = String::new();
                let mut depth = 0;
                loop {
                    match self.chars.next() {
                        Some('}') if depth == 0 => break,
                        Some('}') => {
                            depth -= 1;
                            word.push('}');
                        }
                        Some('{') => {
                            depth += 1;
                            word.push('{');
                        }
                        Some(c) => word.push(c),
                        None => {
                            return Err(WordError(format!(
                                "bad substitution: ${{{name}... has no closing brace"
                            )))
                        }
                    }
                }
                let word = expand(&word, self.vars, self.escape)?;
                // `:` also treats an empty value as unset.
                let set = value.is_some_and(|v| !colon || !v.is_empty());
                match op {
                    Some('-') => out.push_str(if set {
                        value.map(String::as_str).unwrap_or("")
                    } else {
                        &word
                    }),
                    Some('+') => {
                        if set {
                            out.push_str(&word)
                        }
                    }
                    Some('?') if !set => {
                        return Err(WordError(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )))
                    }
                    Some('?') => out.push_str(value.map(String::as_str).unwrap_or("")),
                    other => {
                        return Err(WordError(format!(
                            "bad substitution: unsupported modifier {:?} in ${{{name}...}}",
                            other.map(String::from).unwrap_or_default()
                        )))
                    }
                }
                Ok(())
            }
            None => Err(WordError(format!(
                "bad substitution: ${{{name} has no closing brace"
            ))),
        }
    }
}

/// The text as one word: quotes removed, variables expanded, whitespace
/// kept.
pub fn expand(text: &str, vars: &Vars, escape: char) -> Result<String, WordError> {
    let mut l = Lexer {
        chars: text.chars().peekable(),
        vars,
        escape,
    };
    Ok(l.word(false)?.unwrap_or_default())
}

/// The text split into words on unquoted whitespace, each expanded.
pub fn words(text: &str, vars: &Vars, escape: char) -> Result<Vec<String>, WordError> {
    let mut l = Lexer {
        chars: text.chars().peekable(),
        vars,
        escape,
    };
    let mut out = Vec::new();
    while let Some(w) = l.word(true)? {
        out.push(w);
    }
    Ok(out)
}

/// The text split on unquoted whitespace with each word kept as written
/// (quotes, escapes and `$` left in): `ARG`'s declarations, whose
/// defaults are expanded only when the step runs.
pub fn raw_words(text: &str, escape: char) -> Result<Vec<String>, WordError> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            out.extend(word.take());
            continue;
        }
        let w = word.get_or_insert_with(String::new);
        w.push(c);
        let close = match c {
            '\'' => '\'',
            '"' => '"',
            c if c == escape => {
                w.extend(chars.next());
                continue;
            }
            _ => continue,
        };
        loop {
            match chars.next() {
                Some(n) if n == close => {
                    w.push(n);
                    break;
                }
                Some(n) if close == '"' && n == escape => {
                    w.push(n);
                    w.extend(chars.next());
                }
                Some(n) => w.push(n),
                None => {
                    return Err(WordError(format!(
                        "unexpected end of statement while looking for matching {}",
                        if close == '"' {
                            "double-quote"
                        } else {
                            "single-quote"
                        }
                    )))
                }
            }
        }
    }
    out.extend(word);
    Ok(out)
}

/// `ENV`'s and `LABEL`'s arguments: `K=V K2="V 2"`, or the legacy
/// `K V with spaces` (only when the first word has no `=`).
pub fn pairs(text: &str, vars: &Vars, escape: char) -> Result<Vec<(String, String)>, WordError> {
    let first_has_eq = text
        .split_whitespace()
        .next()
        .is_some_and(|w| w.contains('='));
    if !first_has_eq {
        let text = text.trim_start();
        let (key, rest) = text
            .split_once(char::is_whitespace)
            .ok_or_else(|| WordError(format!("{text:?} needs a value (KEY=VALUE or KEY VALUE)")))?;
        return Ok(vec![(
            expand(key, vars, escape)?,
            expand(rest.trim(), vars, escape)?,
        )]);
    }
    let mut out = Vec::new();
    for w in words(text, vars, escape)? {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| WordError(format!("{w:?} is not KEY=VALUE")))?;
        if k.is_empty() {
            return Err(WordError(format!("{w:?}: the name is empty")));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_words_split_outside_quotes_only() {
        assert_eq!(
            raw_words(r#"A="x y" B='$z w' C=a\ b D"#, '\\').unwrap(),
            [r#"A="x y""#, "B='$z w'", r"C=a\ b", "D"]
        );
        assert!(raw_words(r#"A="x"#, '\\').is_err());
    }

    fn vars() -> Vars {
        Vars::from([
            ("A".to_owned(), "one".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ])
    }

    #[test]
    fn variables_expand_as_docker_expands_them() {
        let v = vars();
        let e = |t: &str| expand(t, &v, '\\').unwrap();
        assert_eq!(e("$A-${A}x"), "one-onex");
        assert_eq!(e("${NOPE:-def} ${EMPTY:-def} ${EMPTY-def}"), "def def ");
        assert_eq!(e("${A:+set} ${NOPE:+set} ${EMPTY+set}"), "set  set");
        assert_eq!(e("'$A' \"$A\" \\$A $"), "$A one $A $");
        assert_eq!(e("\"a \\\"b\\\" \\n\""), "a \"b\" \\n");
        assert_eq!(e("${NOPE:-${A}}"), "one");
        assert!(expand("${NOPE:?must be set}", &v, '\\')
            .unwrap_err()
            .0
            .contains("must be set"));
        assert!(expand("'open", &v, '\\').is_err());
        assert!(expand("${A", &v, '\\').is_err());
        // Another escape character (`# escape=``).
        assert_eq!(expand("`$A", &v, '`').unwrap(), "$A");
    }

    #[test]
    fn words_split_on_unquoted_space() {
        let v = vars();
        assert_eq!(
            words("a \"b c\" '' $A", &v, '\\').unwrap(),
            ["a", "b c", "", "one"]
        );
        assert!(words("   ", &v, '\\').unwrap().is_empty());
    }

    #[test]
    fn env_and_label_pairs_in_both_forms() {
        let v = vars();
        assert_eq!(
            pairs("X=1 Y=\"two words\" Z=$A", &v, '\\').unwrap(),
            [
                ("X".to_owned(), "1".to_owned()),
                ("Y".to_owned(), "two words".to_owned()),
                ("Z".to_owned(), "one".to_owned())
            ]
        );
        assert_eq!(
            pairs("OLD legacy  value $A", &v, '\\').unwrap(),
            [("OLD".to_owned(), "legacy  value one".to_owned())]
        );
        assert_eq!(
            pairs("\"com.x\"=\"y z\"", &v, '\\').unwrap(),
            [("com.x".to_owned(), "y z".to_owned())]
        );
        assert!(pairs("X=1 Y", &v, '\\').is_err());
        assert!(pairs("LONE", &v, '\\').is_err());
    }
}
