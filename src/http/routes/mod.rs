//! Route handlers, one file per area.

pub mod health;
pub mod models;
pub mod status;
