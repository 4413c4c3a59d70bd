//! Building the rustls client configuration from [`TlsOptions`].

use std::sync::Arc;

use crate::error::Error;
use crate::ids::Protocol;
use crate::options::TlsOptions;

/// The rustls configuration for these options, offering `protocols` by ALPN.
pub(crate) fn client_config(opts: &TlsOptions, protocols: &[Protocol]) -> Result<Arc<rustls::ClientConfig>, Error> {
    let alpn: Vec<Vec<u8>> = protocols.iter().map(|p| p.alpn().to_vec()).collect();
    if let Some(custom) = &opts.config {
        let mut c = (**custom).clone();
        c.alpn_protocols = alpn;
        return Ok(Arc::new(c));
    }
    let mut roots = rustls::RootCertStore::empty();
    if opts.webpki_roots.unwrap_or(opts.extra_roots.is_empty()) {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for ca in &opts.extra_roots {
        roots.add(ca.clone()).map_err(|e| Error::InvalidOptions(format!("CA certificate rejected: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::InvalidOptions(
            "no trusted root: add a CA or enable the webpki roots (verification is never turned off silently)".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidOptions(format!("TLS versions: {e}")))?
        .with_root_certificates(roots);
    let mut config = match &opts.client_auth {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| Error::InvalidOptions(format!("client certificate rejected: {e}")))?,
    };
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}
