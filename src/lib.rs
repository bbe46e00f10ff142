//! pns-cdr: the receiver for NXCLOUD PNS call detail records.
//!
//! `webhook` stores every push durably and queues its recording; `archiver` copies recordings
//! into S3. Both are generic over [`ports`]; [`adapters`] implement them over AWS and HTTP;
//! [`local`] runs the same handlers on an embedded AWS emulator.

pub mod adapters;
pub mod bench;
pub mod config;
pub mod domain;
pub mod handlers;
pub mod local;
pub mod metrics;
pub mod ops;
pub mod ports;
pub mod sim;
pub mod telemetry;
