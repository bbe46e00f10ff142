//! The process's one TLS client configuration: one root store, loaded once, shared by the AWS
//! SDK's HTTP client and the recording downloader.
//!
//! The roots come from the platform's CA bundle, one PEM file (`SSL_CERT_FILE`, else the
//! file the OpenSSL layout probe finds: `/etc/pki/tls/certs/ca-bundle.crt` on Amazon Linux
//! 2023). Cold start is why: the default loaders also read every file of the certificate
//! directory (about 150 on Debian, 1.8 ms here) and each client loaded them again (the
//! archiver twice), where one bundle read and parse costs about 0.3 ms.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why no TLS configuration could be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA bundle {}", path.display())]
    Bundle {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("no trusted root certificate was found on this system")]
    NoRoots,
    #[error("the TLS configuration is invalid")]
    Config(#[source] rustls::Error),
}

static CONFIG: LazyLock<Result<ClientConfig, TlsError>> =
    LazyLock::new(|| client_config_with(platform_roots()?));

/// The shared client configuration (a clone shares its root store and verifier).
pub fn client_config() -> Result<ClientConfig, TlsError> {
    CONFIG.clone()
}

/// A client configuration over `roots` (tests pass their own CA).
pub fn client_config_with(roots: RootCertStore) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The platform's roots: its CA bundle file, or (no bundle) its certificate directories.
fn platform_roots() -> Result<RootCertStore, TlsError> {
    let certs: Vec<CertificateDer<'static>> = match openssl_probe::probe().cert_file {
        Some(path) => {
            let pem = std::fs::read(&path).map_err(|source| TlsError::Bundle {
                path,
                source: Arc::new(source),
            })?;
            // A malformed entry is skipped, as the platform's own loaders do.
            CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect()
        }
        None => rustls_native_certs::load_native_certs().certs,
    };
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_bundle_gives_the_public_roots() {
        let roots = platform_roots().expect("this machine has a CA bundle");
        assert!(roots.len() > 50, "{} roots", roots.len());
        client_config().unwrap();
    }
}
