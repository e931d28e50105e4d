//! The classic builder's Dockerfile side (`docker build` with
//! `DOCKER_BUILDKIT=0`, what the CLI uses when `/_ping` does not announce
//! BuildKit): the Dockerfile read into stages and steps ([`dockerfile`]),
//! its words expanded as Docker's shell lexer does ([`words`]), and what
//! each metadata instruction does to the image config ([`state`]).

pub mod dockerfile;
pub mod state;
pub mod words;
