//! The classic builder (`docker build` with `DOCKER_BUILDKIT=0`, what the
//! CLI uses when `/_ping` does not announce BuildKit): the Dockerfile
//! read into stages and steps ([`dockerfile`]), its words expanded as
//! Docker's shell lexer does ([`words`]), what each metadata instruction
//! does to the image config ([`state`]), the files `COPY` and `ADD` pick
//! and place ([`sources`]), the steps done in the engine's containers
//! ([`run`]), and the build with its layer cache ([`builder`]).

pub mod builder;
pub mod dockerfile;
pub mod run;
pub mod sources;
pub mod state;
pub mod words;

/// Why a build stopped.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub message: String,
    /// A failed `RUN`'s exit code: the CLI exits with it.
    pub code: Option<i64>,
}

impl BuildError {
    pub fn new(message: impl Into<String>) -> Self {
        BuildError {
            message: message.into(),
            code: None,
        }
    }
}
