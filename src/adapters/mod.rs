//! One module per real system behind a port.

pub mod aws;
pub mod codedeploy;
pub mod dynamodb;
pub mod eventbridge;
pub mod http_client;
pub mod http_source;
pub mod lambda;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod s3;
pub mod secrets;
pub mod sqs;
pub mod tls;
