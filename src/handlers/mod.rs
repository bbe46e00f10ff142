//! Lambda events in, domain logic, Lambda responses out; generic over the ports.

pub mod archiver;
pub mod pretraffic;
pub mod publisher;
pub mod reconciler;
pub mod webhook;
