//! Integration tests: the real `appliance` binary, a real port, real files.
//!
//! One test binary (faster to link, one place for helpers). Each test starts its own
//! daemon on port 0 with a temporary data dir through [`support::TestApp`].

mod auth;
mod cli;
mod daemon;
mod errors;
mod support;
