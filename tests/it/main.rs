//! Integration tests: the real `appliance` binary, a real port, real files.
//!
//! One test binary (faster to link, one place for helpers). Each test starts its own
//! daemon on port 0 with a temporary data dir through [`support::TestApp`].

// Tests read files and their own environment directly; the daemon's rules on both
// (fs_err, only `config` reads the environment) are for the daemon's code.
#![allow(clippy::disallowed_methods)]

mod auth;
mod backup;
mod bounds;
mod cli;
mod daemon;
mod engine;
mod errors;
mod gpu;
mod security;
mod support;
mod tokenizer;
mod unix;
