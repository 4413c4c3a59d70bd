//! Certificates (generated with `rcgen`) and rustls configurations.

use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A freshly generated CA and a leaf certificate it signed for `localhost` and `127.0.0.1`.
pub(crate) struct ServerCerts {
    /// PEM of the CA certificate.
    pub(crate) ca_pem: String,
    /// DER of the CA certificate.
    pub(crate) ca_der: CertificateDer<'static>,
    /// DER of the leaf certificate.
    pub(crate) leaf_der: CertificateDer<'static>,
    /// PKCS#8 DER of the leaf's private key.
    leaf_key: Vec<u8>,
    /// PEM of a client certificate signed by the same CA (for mutual TLS).
    pub(crate) client_cert_pem: String,
    /// PEM (PKCS#8) of the client certificate's private key.
    pub(crate) client_key_pem: String,
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

fn new_ca(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

impl ServerCerts {
    /// Generates a CA and a leaf certificate for `localhost` / `127.0.0.1`.
    pub(crate) fn generate() -> io::Result<Self> {
        let ca = new_ca("moorline testkit CA").map_err(other)?;
        let leaf_key = KeyPair::generate().map_err(other)?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).map_err(other)?;
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let leaf = params.signed_by(&leaf_key, &ca).map_err(other)?;
        let client_key = KeyPair::generate().map_err(other)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        params.distinguished_name.push(DnType::CommonName, "moorline testkit client");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let client = params.signed_by(&client_key, &ca).map_err(other)?;
        Ok(Self {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            leaf_der: leaf.der().clone(),
            leaf_key: leaf_key.serialize_der(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        })
    }

    /// A rustls server configuration presenting the leaf certificate (plus the
    /// CA) and offering ALPN `h2` + `http/1.1` (or only `http/1.1`).
    /// With `client_auth`, clients must present a certificate signed by the CA.
    pub(crate) fn server_config(&self, h2: bool, client_auth: bool) -> io::Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.clone()));
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(other)?;
        let builder = if client_auth {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca_der.clone()).map_err(other)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(other)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config =
            builder.with_single_cert(vec![self.leaf_der.clone(), self.ca_der.clone()], key).map_err(other)?;
        config.alpn_protocols =
            if h2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
        Ok(Arc::new(config))
    }
}

/// A rustls client configuration (ring provider) trusting only `ca`, offering `alpn`.
pub(crate) fn client_config(ca: CertificateDer<'static>, alpn: &[&str]) -> io::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(other)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(config)
}

/// PEM of a freshly generated CA that signed nothing the test server presents.
///
/// Use it as the only trust anchor of a client to provoke a certificate
/// verification failure against a TLS [`TestServer`](crate::http::TestServer).
pub fn unrelated_ca_pem() -> io::Result<String> {
    Ok(new_ca("moorline testkit unrelated CA").map_err(other)?.pem())
}

/// DER of a freshly generated CA that signed nothing the test server presents.
///
/// See [`unrelated_ca_pem`].
pub fn unrelated_ca_der() -> io::Result<CertificateDer<'static>> {
    Ok(new_ca("moorline testkit unrelated CA").map_err(other)?.der().clone())
}

/// A fresh CA and a server certificate it signed for `localhost` and `127.0.0.1`, as PEM:
/// for running servers that are not ours (Hypercorn, nginx...) with TLS in tests.
#[derive(Debug, Clone)]
pub struct PemCertificates {
    /// The CA certificate (trust it in the client).
    pub ca_pem: String,
    /// The server certificate.
    pub cert_pem: String,
    /// The server certificate's private key (PKCS#8).
    pub key_pem: String,
}

/// Generates [`PemCertificates`].
///
/// ```
/// let certs = moorline_testkit::localhost_certificates().unwrap();
/// assert!(certs.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
/// ```
pub fn localhost_certificates() -> io::Result<PemCertificates> {
    let certs = ServerCerts::generate()?;
    Ok(PemCertificates {
        cert_pem: pem_block("CERTIFICATE", &certs.leaf_der),
        key_pem: pem_block("PRIVATE KEY", &certs.leaf_key),
        ca_pem: certs.ca_pem,
    })
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
