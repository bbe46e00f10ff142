//! Pure types and rules: no I/O here.

pub mod auth;
pub mod cdr;
pub mod item;
pub mod recording;
pub mod url_policy;
