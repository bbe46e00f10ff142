//! The SDK's HTTP client over TLS: a TLS-terminating relay in front of the emulator, with a
//! certificate from a test CA. The client trusts what its root store holds, and only that.

use pns_cdr::config::AwsConfig;
use std::sync::Arc;

use pns_cdr::adapters::aws::AwsClients;
use pns_cdr::adapters::http_client::ReqwestHttpClient;
use pns_cdr::adapters::tls;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::common;

/// A test CA and a `localhost` server certificate it signed.
fn certificates() -> (
    CertificateDer<'static>,
    CertificateDer<'static>,
    PrivateKeyDer<'static>,
) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    (ca.der().clone(), server.der().clone(), key)
}

/// Relays TLS connections on a free loopback port to the emulator; returns the port.
async fn tls_relay(server: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> u16 {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![server], key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let emulator = common::emulator_endpoint();
    let upstream = emulator.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // A failed handshake (the untrusting client) just closes.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut plain = TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn the_sdk_talks_tls_to_what_its_roots_trust_and_nothing_else() {
    let (ca, server, key) = certificates();
    let endpoint = format!("https://localhost:{}", tls_relay(server, key).await);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let trusting = ReqwestHttpClient::with_tls(tls::client_config_with(roots).unwrap());
    let clients = AwsClients::with_http_client(&emulator(&endpoint), trusting).await;
    clients
        .dynamodb
        .list_tables()
        .send()
        .await
        .expect("DynamoDB over TLS through the relay");

    // The platform's roots do not hold the test CA: the handshake fails, nothing is sent.
    let clients = AwsClients::load(&emulator(&endpoint)).await.unwrap();
    let error = clients.dynamodb.list_tables().send().await.unwrap_err();
    let chain = pns_cdr::telemetry::ErrorChain(&error).to_string();
    assert!(
        chain.contains("certificate") || chain.contains("UnknownIssuer"),
        "{chain}"
    );
}

/// The relay as the clients' endpoint.
fn emulator(endpoint: &str) -> AwsConfig {
    AwsConfig {
        endpoint_url: Some(endpoint.to_owned()),
        caller: Some("harness".into()),
        ..AwsConfig::default()
    }
}
