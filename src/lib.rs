//! pns-cdr: the receiver for NXCLOUD PNS call detail records.
//!
//! `webhook` stores every push durably and queues its recording; `archiver` copies recordings
//! into S3; `reconciler` re-queues lost jobs; `publisher` turns the tables' changes into
//! events. The handlers are generic over [`ports`]; [`adapters`] implement them over AWS and
//! HTTP. [`domain`] is the pure core, a crate of its own (`pns-cdr-domain`) so fuzz targets
//! can build it without the SDKs.

pub use pns_cdr_domain as domain;

pub mod adapters;
pub mod config;
pub mod handlers;
pub mod metrics;
pub mod ports;
pub mod telemetry;
