//! TLS to RabbitMQ for `amqps://` nodes: whom to trust and which client
//! certificate to show, from the `[amqp]` settings.
//!
//! The rustls configuration is built here rather than through lapin's
//! `OwnedTLSConfig`, whose CA is added to the system's roots (so a public
//! CA could still vouch for the broker's name) and which fails outright on
//! a host with no system roots even when a CA file is given. Here
//! `amqp.tls_ca_file`, when set, is the only root; otherwise the system's
//! store is read with `rustls-native-certs`, as the PostgreSQL side does.
//! The crypto is ring's, as everywhere in Sluice.
//!
//! A client certificate is a PEM chain (`amqp.tls_client_cert_file`) and
//! an unencrypted PEM key (`amqp.tls_client_key_file`: PKCS#8, PKCS#1 or
//! SEC1), the form `rabbitmq.conf`'s own examples use; no PKCS#12.

use std::path::Path;
use std::sync::Arc;

use lapin::tcp::RustlsConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::AmqpConfig;

/// The setting a TLS problem is about, and what it is.
pub type TlsError = (&'static str, String);

/// Whether any of the TLS settings is set (they are used by `amqps://`
/// nodes alone).
pub fn configured(config: &AmqpConfig) -> bool {
    !config.tls_ca_file.is_empty()
        || !config.tls_client_cert_file.is_empty()
        || !config.tls_client_key_file.is_empty()
}

/// The connector `amqps://` nodes are reached with. Reads the files the
/// settings name (and the system's roots without a CA file) each time, so
/// a renewed certificate is picked up at the next connect.
pub fn connector(config: &AmqpConfig) -> Result<RustlsConnector, TlsError> {
    Ok(RustlsConnector::from(Arc::new(client_config(config)?)))
}

/// The rustls configuration for `amqps://`, on the ring provider.
pub fn client_config(config: &AmqpConfig) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("amqp.url", format!("TLS cannot be set up: {e}")))?
        .with_root_certificates(roots(config)?);
    let cert = config.tls_client_cert_file.as_str();
    let key = config.tls_client_key_file.as_str();
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => Ok(builder.with_no_client_auth()),
        (false, true) => Err((
            "amqp.tls_client_key_file",
            "must be set with amqp.tls_client_cert_file (both or neither)".into(),
        )),
        (true, false) => Err((
            "amqp.tls_client_cert_file",
            "must be set with amqp.tls_client_key_file (both or neither)".into(),
        )),
        (false, false) => {
            let chain = certificates("amqp.tls_client_cert_file", Path::new(cert))?;
            let key = private_key(Path::new(key))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                (
                    "amqp.tls_client_key_file",
                    format!("cannot be used with amqp.tls_client_cert_file: {e}"),
                )
            })
        }
    }
}

/// `amqp.tls_ca_file`'s certificates, or the system's.
fn roots(config: &AmqpConfig) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    if config.tls_ca_file.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        let (added, _unusable) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            let why = found
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            return Err((
                "amqp.tls_ca_file",
                format!(
                    "not set, and no root certificate could be loaded from the system's \
                     store{why}: give the broker's CA, or install the CA certificates"
                ),
            ));
        }
    } else {
        let certs = certificates("amqp.tls_ca_file", Path::new(&config.tls_ca_file))?;
        let (added, _unusable) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err((
                "amqp.tls_ca_file",
                format!(
                    "`{}`: none of its certificates can be a root",
                    config.tls_ca_file
                ),
            ));
        }
    }
    Ok(store)
}

/// The PEM certificates in `path`, at least one.
fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display();
    let pem =
        std::fs::read(path).map_err(|e| (setting, format!("`{shown}` cannot be read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (setting, format!("`{shown}` is not a PEM file: {e}")))?;
    if certs.is_empty() {
        return Err((setting, format!("`{shown}` holds no PEM certificate")));
    }
    Ok(certs)
}

/// The unencrypted PEM private key in `path`.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const SETTING: &str = "amqp.tls_client_key_file";
    let shown = path.display();
    let pem =
        std::fs::read(path).map_err(|e| (SETTING, format!("`{shown}` cannot be read: {e}")))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        (
            SETTING,
            format!("`{shown}` holds no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })
}

#[cfg(test)]
mod tests;
