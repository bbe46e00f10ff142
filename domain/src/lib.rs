//! The pure core of pns-cdr: NXCLOUD's pushes, the stored item, recording jobs and keys, the
//! URL policy and push authentication. No I/O and no AWS SDK, so fuzz targets and benches
//! build it on its own; the `pns-cdr` crate re-exports it as `pns_cdr::domain`.

pub mod auth;
mod canonical;
pub mod cdr;
mod fast;
pub mod item;
pub mod recording;
pub mod url_policy;
