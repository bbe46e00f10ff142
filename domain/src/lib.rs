//! The pure core of pns-cdr: NXCLOUD's two pushes (call records and binding errors), the
//! stored items, the events their changes publish, recording jobs and keys, the URL policy
//! and push authentication. No I/O and no AWS SDK, so fuzz targets and benches build it on
//! its own; the `pns-cdr` crate re-exports it as `pns_cdr::domain`.

pub mod auth;
pub mod binding;
mod canonical;
pub mod cdr;
pub mod events;
mod fast;
pub mod item;
pub mod push;
pub mod recording;
pub mod url_policy;

/// A seeded xorshift generator for the tests that compare a fast path with the general tool
/// on many generated inputs: `next(n)` is in `0..n`, the same sequence on every run.
#[cfg(test)]
pub(crate) fn picker(seed: u64) -> impl FnMut(usize) -> usize {
    let mut state = seed;
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    }
}
