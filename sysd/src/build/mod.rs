//! The classic builder (`docker build` with `DOCKER_BUILDKIT=0`, what the
//! CLI uses when `/_ping` does not announce BuildKit): the Dockerfile
//! read into stages and steps ([`dockerfile`]), its words expanded as
//! Docker's shell lexer does ([`words`]), what each metadata instruction
//! does to the image config ([`state`]), the files `COPY` and `ADD` pick
//! and place ([`sources`]) and the steps that copy them ([`copy`]), the
//! steps done in the engine's containers ([`run`]), the layer cache
//! ([`cache`]), the context's own files ([`context`]), and the build from
//! start to end ([`builder`]).

pub mod builder;
pub mod cache;
pub mod context;
pub mod copy;
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

/// The client went away: Docker stops the build there, tags nothing.
pub fn cancelled() -> BuildError {
    BuildError::new("the client went away: the build was cancelled")
}
