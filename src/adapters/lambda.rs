//! One Lambda function version, invoked synchronously.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::Client;
use serde_json::Value;

use crate::ports::{FunctionInvoker, PortError};

/// A function by name or ARN, a version's qualified ARN included.
#[derive(Clone, Debug)]
pub struct LambdaFunction {
    client: Client,
    function: String,
}

impl LambdaFunction {
    pub fn new(client: Client, function: impl Into<String>) -> Self {
        Self {
            client,
            function: function.into(),
        }
    }
}

impl FunctionInvoker for LambdaFunction {
    async fn invoke(&self, payload: &Value) -> Result<Value, PortError> {
        let out = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(Blob::new(payload.to_string()))
            .send()
            .await
            .map_err(|e| PortError::new("Invoke", e))?;
        let answer = out.payload.map(Blob::into_inner).unwrap_or_default();
        if let Some(failure) = out.function_error {
            // The function crashed or timed out: its answer is Lambda's error object.
            let detail = String::from_utf8_lossy(&answer).into_owned();
            return Err(PortError::new("Invoke", format!("{failure}: {detail}")));
        }
        serde_json::from_slice(&answer).map_err(|e| PortError::new("Invoke", e))
    }
}
