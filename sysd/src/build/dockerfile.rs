//! A Dockerfile read by `parse-dockerfile` (a maintained parser: parser
//! directives, line continuations, JSON and shell forms, heredocs, flags,
//! spans) into the builder's steps. Each step keeps its line and its
//! text as Docker prints it (`Step 2/5 : RUN ...`); its words are
//! expanded when it runs, with the variables in scope then. What the
//! classic builder does not do is refused here, naming the instruction
//! and its line.

use parse_dockerfile::{
    Command, Flag, HealthcheckArguments, Instruction, JsonOrStringArray, Source,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileError {
    /// 0 when the parser's own message carries the position.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "Dockerfile: {}", self.message),
            n => write!(f, "Dockerfile line {n}: {}", self.message),
        }
    }
}

impl std::error::Error for DockerfileError {}

/// `RUN`, `CMD`, `ENTRYPOINT`, `HEALTHCHECK CMD`: the exec form's argv
/// or the shell form's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub test: Option<Form>,
    /// `--interval` and friends as given (`30s`).
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub retries: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Run(Form),
    Copy {
        /// `ADD`: local archives are extracted.
        add: bool,
        sources: Vec<String>,
        dest: String,
        from: Option<String>,
        chown: Option<String>,
    },
    Env(String),
    Arg(Vec<(String, Option<String>)>),
    Label(String),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Cmd(Form),
    Entrypoint(Form),
    Stopsignal(String),
    Healthcheck(Health),
    Shell(Vec<String>),
    Maintainer(String),
    /// `ONBUILD`'s trigger, as written after the keyword: stored in the
    /// image, run when another build starts `FROM` it.
    Onbuild(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    /// The instruction as written, continuations joined.
    pub text: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub line: usize,
    pub text: String,
    /// The base image as written (`${BASE}` expanded with the global
    /// args when the stage starts), or `scratch`.
    pub base: String,
    pub name: Option<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `ARG`s before the first `FROM`: in scope for `FROM` lines, and
    /// counted and shown as steps, as Docker does.
    pub global_args: Vec<Step>,
    pub stages: Vec<Stage>,
    pub escape: char,
}

impl Dockerfile {
    /// `Step N/M`: every instruction, `FROM`s included.
    pub fn step_count(&self) -> usize {
        self.global_args.len() + self.stages.iter().map(|s| s.steps.len() + 1).sum::<usize>()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Docker's `Original`: the instruction's lines joined, comments and
/// continuation backslashes dropped.
fn original(text: &str, start: usize, end: usize, escape: char) -> String {
    let raw = &text[start..end.min(text.len())];
    let mut out = String::new();
    for line in raw.lines() {
        let t = line.trim();
        if t.starts_with('#') && !out.is_empty() {
            continue;
        }
        let t = t.strip_suffix(escape).unwrap_or(t).trim_end();
        if !out.is_empty() && !t.is_empty() {
            out.push(' ');
        }
        out.push_str(t);
    }
    out.trim().to_owned()
}

fn form(c: &Command, line: usize) -> Result<Form, DockerfileError> {
    match c {
        Command::Exec(argv) => Ok(Form::Exec(
            argv.value.iter().map(|s| s.value.to_string()).collect(),
        )),
        Command::Shell(text) => Ok(Form::Shell(text.value.to_owned())),
        // The parser's enum may grow (it is non-exhaustive): a form it
        // learns later is refused, not guessed at.
        _ => Err(DockerfileError {
            line,
            message: "this command form is not supported by this builder".into(),
        }),
    }
}

fn flag<'a>(flags: &'a [Flag], name: &str) -> Option<&'a Flag<'a>> {
    flags.iter().find(|f| f.name.value == name)
}

/// Refuses any flag not in `known`.
fn only_flags(
    flags: &[Flag],
    known: &[&str],
    what: &str,
    line: usize,
) -> Result<(), DockerfileError> {
    for f in flags {
        if !known.contains(&f.name.value.as_ref()) {
            return Err(DockerfileError {
                line,
                message: format!(
                    "{what} --{} is not supported by the classic builder{}",
                    f.name.value,
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(" (only --{})", known.join(", --"))
                    }
                ),
            });
        }
    }
    Ok(())
}

fn arg_decls(
    text: &str,
    escape: char,
    line: usize,
) -> Result<Vec<(String, Option<String>)>, DockerfileError> {
    // The default's quotes and variables are dealt with when the ARG
    // runs (`ARG A="x y"` is one declaration): keep them as written.
    let raw = super::words::raw_words(text, escape).map_err(|e| DockerfileError {
        line,
        message: format!("ARG: {e}"),
    })?;
    if raw.is_empty() {
        return Err(DockerfileError {
            line,
            message: "ARG needs a name".into(),
        });
    }
    raw.into_iter()
        .map(|w| {
            let (k, v) = match w.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (w.clone(), None),
            };
            if k.is_empty() {
                return Err(DockerfileError {
                    line,
                    message: format!("ARG {w:?}: the name is empty"),
                });
            }
            Ok((k, v))
        })
        .collect()
}

pub fn parse(text: &str) -> Result<Dockerfile, DockerfileError> {
    let parsed = parse_dockerfile::parse(text).map_err(|e| {
        let message = e.to_string();
        // Its messages carry their own position; the line is the first
        // number in them when there is one.
        DockerfileError { line: 0, message }
    })?;
    let escape = parsed
        .parser_directives
        .escape
        .as_ref()
        .map(|d| d.value.value)
        .unwrap_or('\\');
    let starts: Vec<usize> = parsed
        .instructions
        .iter()
        .map(|i| keyword_start(i))
        .collect();
    let mut out = Dockerfile {
        global_args: Vec::new(),
        stages: Vec::new(),
        escape,
    };
    for (n, ins) in parsed.instructions.iter().enumerate() {
        let start = starts[n];
        let end = starts.get(n + 1).copied().unwrap_or(text.len());
        let line = line_of(text, start);
        let shown = original(text, start, end, escape);
        let kind = match ins {
            Instruction::From(f) => {
                only_flags(&f.options, &["platform"], "FROM", line)?;
                if let Some(p) = flag(&f.options, "platform").and_then(|p| p.value.as_ref()) {
                    if p.value != "linux/amd64" && p.value != "$BUILDPLATFORM" {
                        return Err(DockerfileError {
                            line,
                            message: format!(
                                "FROM --platform={}: this engine builds linux/amd64 only",
                                p.value
                            ),
                        });
                    }
                }
                out.stages.push(Stage {
                    line,
                    text: shown,
                    base: f.image.value.to_string(),
                    name: f.as_.as_ref().map(|(_, n)| n.value.to_ascii_lowercase()),
                    steps: Vec::new(),
                });
                continue;
            }
            Instruction::Arg(a) => {
                let decls = arg_decls(&a.arguments.value, out.escape, line)?;
                if out.stages.is_empty() {
                    out.global_args.push(Step {
                        line,
                        text: shown,
                        kind: Kind::Arg(decls),
                    });
                    continue;
                }
                Kind::Arg(decls)
            }
            Instruction::Run(r) => {
                only_flags(&r.options, &[], "RUN", line)?;
                if !r.here_docs.is_empty() {
                    return Err(DockerfileError {
                        line,
                        message: "RUN with a here-document is BuildKit's: the classic builder does not run it".into(),
                    });
                }
                Kind::Run(form(&r.arguments, line)?)
            }
            Instruction::Copy(c) => {
                only_flags(&c.options, &["from", "chown"], "COPY", line)?;
                copy_kind(false, &c.options, &c.src, &c.dest.value, line)?
            }
            Instruction::Add(c) => {
                only_flags(&c.options, &["chown"], "ADD", line)?;
                copy_kind(true, &c.options, &c.src, &c.dest.value, line)?
            }
            Instruction::Env(e) => Kind::Env(e.arguments.value.to_string()),
            Instruction::Label(l) => Kind::Label(l.arguments.value.to_string()),
            Instruction::Workdir(w) => Kind::Workdir(w.arguments.value.to_string()),
            Instruction::User(u) => Kind::User(u.arguments.value.to_string()),
            Instruction::Expose(e) => {
                Kind::Expose(e.arguments.iter().map(|s| s.value.to_string()).collect())
            }
            Instruction::Volume(v) => Kind::Volume(match &v.arguments {
                JsonOrStringArray::Json(a) => a.value.iter().map(|s| s.value.to_string()).collect(),
                JsonOrStringArray::String(a) => a.iter().map(|s| s.value.to_string()).collect(),
            }),
            Instruction::Cmd(c) => Kind::Cmd(form(&c.arguments, line)?),
            Instruction::Entrypoint(e) => Kind::Entrypoint(form(&e.arguments, line)?),
            Instruction::Stopsignal(s) => Kind::Stopsignal(s.arguments.value.to_string()),
            Instruction::Shell(s) => {
                Kind::Shell(s.arguments.iter().map(|a| a.value.to_string()).collect())
            }
            Instruction::Maintainer(m) => Kind::Maintainer(m.name.value.to_string()),
            Instruction::Healthcheck(h) => {
                only_flags(
                    &h.options,
                    &["interval", "timeout", "start-period", "retries"],
                    "HEALTHCHECK",
                    line,
                )?;
                let value = |n: &str| {
                    flag(&h.options, n)
                        .and_then(|f| f.value.as_ref())
                        .map(|v| v.value.to_string())
                };
                Kind::Healthcheck(Health {
                    test: match &h.arguments {
                        HealthcheckArguments::Cmd { arguments, .. } => Some(form(arguments, line)?),
                        _ => None,
                    },
                    interval: value("interval"),
                    timeout: value("timeout"),
                    start_period: value("start-period"),
                    retries: value("retries"),
                })
            }
            Instruction::Onbuild(o) => {
                let trigger = shown
                    .get("ONBUILD".len()..)
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                let bad = match &*o.instruction {
                    Instruction::Onbuild(_) => Some("ONBUILD ONBUILD"),
                    Instruction::From(_) => Some("ONBUILD FROM"),
                    Instruction::Maintainer(_) => Some("ONBUILD MAINTAINER"),
                    _ => None,
                };
                if let Some(bad) = bad {
                    return Err(DockerfileError {
                        line,
                        message: format!("{bad} isn't allowed as an ONBUILD trigger"),
                    });
                }
                // The trigger is checked now, as the build that runs it
                // would check it.
                trigger_step(&trigger, escape).map_err(|e| DockerfileError {
                    line,
                    message: format!("ONBUILD: {}", e.message),
                })?;
                Kind::Onbuild(trigger)
            }
            other => {
                return Err(DockerfileError {
                    line,
                    message: format!(
                        "{} is not supported by this builder",
                        shown_keyword(text, other)
                    ),
                })
            }
        };
        let Some(stage) = out.stages.last_mut() else {
            return Err(DockerfileError {
                line,
                message: format!("{}: no FROM before it (only ARG may come first)", shown),
            });
        };
        stage.steps.push(Step {
            line,
            text: shown,
            kind,
        });
    }
    if out.stages.is_empty() {
        return Err(DockerfileError {
            line: 1,
            message: "no FROM: a Dockerfile starts its first stage with FROM".into(),
        });
    }
    Ok(out)
}

/// An `ONBUILD` trigger of a base image as the step it runs as; its
/// line is the trigger's own (1).
pub fn trigger_step(trigger: &str, escape: char) -> Result<Step, DockerfileError> {
    let directive = if escape == '\\' {
        String::new()
    } else {
        format!("# escape={escape}\n")
    };
    let mut d =
        parse(&format!("{directive}FROM scratch\n{trigger}\n")).map_err(|e| DockerfileError {
            line: 1,
            message: format!("trigger {trigger:?}: {}", e.message),
        })?;
    match (d.stages.len(), d.stages[0].steps.len()) {
        (1, 1) => {}
        _ => {
            return Err(DockerfileError {
                line: 1,
                message: format!("trigger {trigger:?} is not one instruction"),
            })
        }
    }
    let mut step = d.stages.remove(0).steps.remove(0);
    if matches!(step.kind, Kind::Onbuild(_)) {
        return Err(DockerfileError {
            line: 1,
            message: format!("trigger {trigger:?}: ONBUILD ONBUILD isn't allowed"),
        });
    }
    step.line = 1;
    Ok(step)
}

fn shown_keyword(text: &str, ins: &Instruction) -> String {
    let start = keyword_start(ins);
    text[start..]
        .split_whitespace()
        .next()
        .unwrap_or("this instruction")
        .to_ascii_uppercase()
}

fn copy_kind(
    add: bool,
    options: &[Flag],
    src: &[Source],
    dest: &str,
    line: usize,
) -> Result<Kind, DockerfileError> {
    let mut sources = Vec::new();
    for s in src {
        match s {
            Source::Path(p) => sources.push(p.value.to_string()),
            _ => {
                return Err(DockerfileError {
                    line,
                    message: format!(
                    "{} with a here-document is BuildKit's: the classic builder does not take it",
                    if add { "ADD" } else { "COPY" }
                ),
                })
            }
        }
    }
    let value = |n: &str| {
        flag(options, n)
            .and_then(|f| f.value.as_ref())
            .map(|v| v.value.to_string())
    };
    Ok(Kind::Copy {
        add,
        sources,
        dest: dest.to_owned(),
        from: value("from"),
        chown: value("chown"),
    })
}

/// Where the instruction's keyword starts. parse-dockerfile keeps each
/// instruction's keyword span; its own accessor is private.
fn keyword_start(ins: &Instruction) -> usize {
    match ins {
        Instruction::Add(i) => i.add.span.start,
        Instruction::Arg(i) => i.arg.span.start,
        Instruction::Cmd(i) => i.cmd.span.start,
        Instruction::Copy(i) => i.copy.span.start,
        Instruction::Entrypoint(i) => i.entrypoint.span.start,
        Instruction::Env(i) => i.env.span.start,
        Instruction::Expose(i) => i.expose.span.start,
        Instruction::From(i) => i.from.span.start,
        Instruction::Healthcheck(i) => i.healthcheck.span.start,
        Instruction::Label(i) => i.label.span.start,
        Instruction::Maintainer(i) => i.maintainer.span.start,
        Instruction::Onbuild(i) => i.onbuild.span.start,
        Instruction::Run(i) => i.run.span.start,
        Instruction::Shell(i) => i.shell.span.start,
        Instruction::Stopsignal(i) => i.stopsignal.span.start,
        Instruction::User(i) => i.user.span.start,
        Instruction::Volume(i) => i.volume.span.start,
        Instruction::Workdir(i) => i.workdir.span.start,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = "# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS build
ARG GREETING=hello
ENV A=1 B=\"two words\" \\
    C=3
COPY --chown=1000:1000 src/ /app/
RUN echo $GREETING > /out \\
    && cat /out
FROM scratch
COPY --from=build /out /out
USER 1000
HEALTHCHECK --interval=5s CMD [\"/bin/check\"]
CMD [\"/bin/app\"]
";

    #[test]
    fn stages_steps_lines_and_texts() {
        let d = parse(MULTI).unwrap();
        assert_eq!(d.global_args.len(), 1);
        assert_eq!(d.global_args[0].text, "ARG BASE=busybox");
        assert_eq!(
            d.global_args[0].kind,
            Kind::Arg(vec![("BASE".to_owned(), Some("busybox".to_owned()))])
        );
        assert_eq!(d.stages.len(), 2);
        assert_eq!(d.step_count(), 11);
        let b = &d.stages[0];
        assert_eq!(
            (b.base.as_str(), b.name.as_deref(), b.line),
            ("${BASE}", Some("build"), 3)
        );
        assert_eq!(b.text, "FROM ${BASE} AS build");
        assert_eq!(b.steps[1].text, "ENV A=1 B=\"two words\" C=3");
        assert_eq!(b.steps[3].line, 8);
        assert_eq!(b.steps[3].text, "RUN echo $GREETING > /out && cat /out");
        assert_eq!(
            b.steps[2].kind,
            Kind::Copy {
                add: false,
                sources: vec!["src/".into()],
                dest: "/app/".into(),
                from: None,
                chown: Some("1000:1000".into())
            }
        );
        let s = &d.stages[1];
        assert_eq!(s.base, "scratch");
        assert!(matches!(&s.steps[0].kind, Kind::Copy { from: Some(f), .. } if f == "build"));
        assert!(
            matches!(&s.steps[2].kind, Kind::Healthcheck(h) if h.interval.as_deref() == Some("5s"))
        );
        assert_eq!(
            s.steps[3].kind,
            Kind::Cmd(Form::Exec(vec!["/bin/app".into()]))
        );
    }

    #[test]
    fn onbuild_triggers_are_kept_as_written_and_run_as_steps() {
        let d = parse("FROM a\nONBUILD COPY --chown=1:1 . /app/\n").unwrap();
        assert_eq!(
            d.stages[0].steps[0].kind,
            Kind::Onbuild("COPY --chown=1:1 . /app/".into())
        );
        let s = trigger_step("RUN echo \"hi there\"", '\\').unwrap();
        assert_eq!(s.kind, Kind::Run(Form::Shell("echo \"hi there\"".into())));
        assert_eq!(s.text, "RUN echo \"hi there\"");
        assert!(trigger_step("RUN a\nRUN b", '\\')
            .unwrap_err()
            .message
            .contains("not one instruction"));
    }

    #[test]
    fn what_the_classic_builder_lacks_is_named_with_its_line() {
        let e = |t: &str| parse(t).unwrap_err().to_string();
        assert_eq!(
            e("FROM a\nRUN --mount=type=cache,target=/x true\n"),
            "Dockerfile line 2: RUN --mount is not supported by the classic builder"
        );
        assert!(e("FROM a\nONBUILD FROM x\n").contains("line 2: ONBUILD FROM isn't allowed"));
        let nested = e("FROM a\nONBUILD ONBUILD RUN x\n");
        assert!(
            nested.contains("ONBUILD ONBUILD") && nested.contains("line 2"),
            "{nested}"
        );
        assert!(e("FROM a\nONBUILD RUN --mount=type=cache,target=/x true\n")
            .contains("line 2: ONBUILD: "));
        assert!(e("FROM a\nCOPY --chmod=755 x /x\n").contains("line 2: COPY --chmod"));
        // The parser's own messages carry their position.
        assert_eq!(e("RUN x\n"), "Dockerfile: expected FROM at line 1 column 1");
        assert!(e("# just a comment\n").contains("at least one FROM"));
        assert!(e("FROM --platform=linux/arm64 a\n").contains("linux/amd64 only"));
    }
}
