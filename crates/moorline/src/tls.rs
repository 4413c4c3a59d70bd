//! Building the rustls client configuration from [`TlsOptions`].

use std::sync::Arc;

use crate::error::{Error, OptionsError, PemItem};
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
        roots.add(ca.clone()).map_err(|source| {
            Error::InvalidOptions(OptionsError::Certificate { item: PemItem::CaCertificate, source })
        })?;
    }
    if roots.is_empty() {
        return Err(Error::InvalidOptions(OptionsError::NoTrustedRoot));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidOptions(OptionsError::TlsVersions(e)))?
        .with_root_certificates(roots);
    let mut config = match &opts.client_auth {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder.with_client_auth_cert(chain.clone(), key.clone_key()).map_err(|source| {
            Error::InvalidOptions(OptionsError::Certificate { item: PemItem::ClientCertificate, source })
        })?,
    };
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn alpn(c: &rustls::ClientConfig) -> Vec<&[u8]> {
        c.alpn_protocols.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn the_offered_protocols_go_in_alpn_in_order() {
        let c = client_config(&TlsOptions::default(), &[Protocol::Http2, Protocol::Http1]).unwrap();
        assert_eq!(alpn(&c), [&b"h2"[..], b"http/1.1"]);
        let c = client_config(&TlsOptions::default(), &[Protocol::Http1]).unwrap();
        assert_eq!(alpn(&c), [&b"http/1.1"[..]]);
    }

    #[test]
    fn a_custom_config_is_used_as_is_but_for_alpn() {
        let mut custom = (*client_config(&TlsOptions::default(), &[Protocol::Http1]).unwrap()).clone();
        custom.alpn_protocols = vec![b"spdy/3".to_vec()];
        custom.enable_sni = false;
        let c = client_config(&TlsOptions::default().config(Arc::new(custom)), &[Protocol::Http2]).unwrap();
        assert_eq!(alpn(&c), [&b"h2"[..]]);
        assert!(!c.enable_sni, "the rest of the custom config is kept");
    }

    #[test]
    fn verification_is_never_left_without_roots() {
        let e = client_config(&TlsOptions::default().webpki_roots(false), &[Protocol::Http1]).unwrap_err();
        assert!(matches!(&e, Error::InvalidOptions(OptionsError::NoTrustedRoot)), "{e:?}");
        // A custom CA alone is enough (and then the webpki roots are off unless asked for).
        let ca = moorline_testkit::http::unrelated_ca_pem().unwrap();
        let with_ca = TlsOptions::default().add_ca_pem(&ca).unwrap();
        client_config(&with_ca, &[Protocol::Http1]).unwrap();
        client_config(&with_ca.webpki_roots(true), &[Protocol::Http1]).unwrap();
    }
}
