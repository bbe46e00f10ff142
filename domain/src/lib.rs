//! The pure core of pns-cdr: NXCLOUD's two pushes (call records and binding errors), the
//! stored items, the events their changes publish, recording jobs and keys, the URL policy
//! and push authentication. No I/O and no AWS SDK, so fuzz targets and benches build it on
//! its own; the `pns-cdr` crate re-exports it as `pns_cdr::domain`.

pub mod auth;
pub mod binding;
pub mod canary;
mod canonical;
pub mod cdr;
pub mod events;
pub mod item;
pub mod numbers;
pub mod push;
pub mod recording;
pub mod url_policy;

pub use canonical::sha256_hex;
