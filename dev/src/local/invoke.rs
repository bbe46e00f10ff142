//! A webhook version in this process, invoked as Lambda invokes one: the API Gateway event
//! in, the HTTP answer out. Where the pre-traffic hook's check meets a local "new version".

use lambda_http::Body;
use pns_cdr::handlers::webhook::Webhook;
use pns_cdr::ports::{
    BindingErrorStore, FunctionInvoker, JobQueue, ObjectStore, PortError, RecordStore,
};
use serde_json::{json, Value};

pub struct InProcess<S, Q, O, B>(pub Webhook<S, Q, O, B>);

impl<S, Q, O, B> FunctionInvoker for InProcess<S, Q, O, B>
where
    S: RecordStore,
    Q: JobQueue,
    O: ObjectStore,
    B: BindingErrorStore,
{
    async fn invoke(&self, payload: &Value) -> Result<Value, PortError> {
        let request = lambda_http::request::from_str(&payload.to_string())
            .map_err(|e| PortError::new("Invoke", e))?;
        let Ok(response) = self.0.handle_http(request).await;
        let body = match response.body() {
            Body::Text(text) => text.clone(),
            other => String::from_utf8_lossy(other.as_ref()).into_owned(),
        };
        Ok(json!({"statusCode": response.status().as_u16(), "body": body}))
    }
}
