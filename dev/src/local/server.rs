//! The webhook over plain HTTP on 127.0.0.1: each request to one of its routes becomes the
//! `lambda_http::Request` API Gateway would deliver (path, query, headers, body, source IP in
//! the request context) and goes through the same `Webhook::handle_http` the Lambda runs.
//! With a throttle, a request that finds the stage's token bucket empty is answered 429 as
//! API Gateway answers it, before the webhook runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::apigw::{
    ApiGatewayV2httpRequestContext, ApiGatewayV2httpRequestContextHttpDescription,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use tokio::net::TcpListener;

use super::throttle::TokenBucket;
use pns_cdr::handlers::webhook::{Webhook, BINDING_ERROR_ROUTE, CALL_RESULT_ROUTE};
use pns_cdr::ports::{BindingErrorStore, JobQueue, ObjectStore, RecordStore};

/// The webhook's routes, as in `template.yaml`.
pub const ROUTES: [&str; 2] = [CALL_RESULT_ROUTE, BINDING_ERROR_ROUTE];
/// API Gateway's own payload limit is 10 MB; bodies past it never reach the function.
const GATEWAY_LIMIT: usize = 10 * 1024 * 1024;

/// Serves until the task is aborted.
pub async fn serve<S, Q, O, B>(
    listener: TcpListener,
    webhook: Arc<Webhook<S, Q, O, B>>,
    throttle: Option<Arc<TokenBucket>>,
) where
    S: RecordStore + 'static,
    Q: JobQueue + 'static,
    O: ObjectStore + 'static,
    B: BindingErrorStore + 'static,
{
    while let Ok((stream, peer)) = listener.accept().await {
        let (webhook, throttle) = (webhook.clone(), throttle.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (webhook, throttle) = (webhook.clone(), throttle.clone());
                async move {
                    if throttle.is_some_and(|t| !t.try_take()) {
                        return Ok(json(429, r#"{"message":"Too Many Requests"}"#.into()));
                    }
                    Ok::<_, Infallible>(route(req, peer, &webhook).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route<S, Q, O, B>(
    req: Request<hyper::body::Incoming>,
    peer: SocketAddr,
    webhook: &Webhook<S, Q, O, B>,
) -> Response<Full<Bytes>>
where
    S: RecordStore,
    Q: JobQueue,
    O: ObjectStore,
    B: BindingErrorStore,
{
    let Some(route) = ROUTES.into_iter().find(|r| req.uri().path() == *r) else {
        return json(
            404,
            r#"{"ok":false,"error":"not_found","message":"no such route"}"#.into(),
        );
    };
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, GATEWAY_LIMIT).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            // API Gateway itself refuses such bodies before the function runs.
            let message = format!(
                r#"{{"ok":false,"error":"payload_too_large","message":"body over the gateway's {GATEWAY_LIMIT} bytes"}}"#
            );
            return json(413, message);
        }
    };
    let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
    http.method = parts.method.clone();
    http.path = Some(route.into());
    http.source_ip = Some(peer.ip().to_string());
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.http = http;
    context.stage = Some("$default".into());
    context.route_key = Some(format!("ANY {route}"));
    let request = lambda_http::Request::from_parts(parts, lambda_http::Body::from(body.to_vec()))
        .with_request_context(RequestContext::ApiGatewayV2(context));
    let Ok(response) = webhook.handle_http(request).await;
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Full::new(Bytes::copy_from_slice(body.as_ref())))
}

fn json(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}
