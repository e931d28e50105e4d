//! The classic builder's Dockerfile side (`docker build` with
//! `DOCKER_BUILDKIT=0`, what the CLI uses when `/_ping` does not announce
//! BuildKit): the Dockerfile read into stages and steps ([`dockerfile`]),
//! and its words expanded as Docker's shell lexer does ([`words`]).

pub mod dockerfile;
pub mod words;
