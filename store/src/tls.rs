//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert`, read from
//! `database.url`, and the rustls connector every connection Sluice opens
//! to PostgreSQL uses (the pool, the job runner's query cancel, the load
//! generator).
//!
//! tokio-postgres itself knows only `sslmode` `disable`, `prefer` and
//! `require`, and no `sslrootcert`; managed databases hand out URLs with
//! `sslmode=verify-full&sslrootcert=...`. So both are taken out of the URL
//! here ([`split`]), the remainder goes to `tokio_postgres::Config`, and the
//! verification they ask for is built into the rustls configuration.
//!
//! The modes, as libpq has them:
//!
//! | `sslmode` | TLS | server certificate |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (the default) | if the server offers it | not checked* |
//! | `require` | always | not checked* |
//! | `verify-ca` | always | chains to the roots; any host name |
//! | `verify-full` | always | chains to the roots and names the host |
//!
//! \* As in libpq, `prefer` and `require` with `sslrootcert=<file>` check
//! the chain as `verify-ca` does. Without it they stop passive snooping
//! only: whoever answers at the address is believed.
//!
//! Roots: `sslrootcert=<PEM file>`, or `sslrootcert=system` for the
//! system's store (libpq 16's spelling; as there, it makes `verify-full` the
//! default and refuses weaker modes). `verify-full` without `sslrootcert`
//! uses the system store; `verify-ca` needs a file, since against the
//! system's roots it would accept any publicly issued certificate.
//!
//! Client certificates: `sslcert` and `sslkey`, as in libpq, for a server
//! whose pg_hba asks for one (`cert`, or `clientcert=verify-full`); see
//! [`ClientCert`].
//!
//! The system store is read with `rustls-native-certs` (the operating
//! system's bundle, as libpq's `system` reads OpenSSL's), not the
//! `webpki-roots` copy of Mozilla's list compiled into the binary: the
//! operator's distribution keeps it current, and a private CA added to it
//! is honoured.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ConfigBuilder, RootCertStore};
use tokio_postgres::config::SslMode;

use crate::pool::StoreError;

mod chain;
mod params;
mod unverified;

#[cfg(test)]
mod tests;

/// What every PostgreSQL connection of Sluice's is opened with: the pool's
/// manager, a query cancel, the load generator. It carries the rustls
/// configuration that [`Tls`] describes; with `sslmode=disable`
/// tokio-postgres never calls it.
pub type Connector = tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, less `allow` (which tokio-postgres cannot do: it
/// tries without TLS first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, else plain; libpq's default and ours.
    Prefer,
    /// TLS or no connection.
    Require,
    /// TLS, the certificate chained to the roots, any host name.
    VerifyCa,
    /// TLS, the certificate chained to the roots and naming the host.
    VerifyFull,
}

impl Mode {
    /// Every mode, weakest first.
    pub const ALL: [Mode; 5] = [
        Mode::Disable,
        Mode::Prefer,
        Mode::Require,
        Mode::VerifyCa,
        Mode::VerifyFull,
    ];

    /// The mode `value` names, as spelled in a libpq URL.
    pub fn parse(value: &str) -> Result<Self, StoreError> {
        parse_mode(value).map_err(config_error)
    }

    /// The mode's name in a libpq URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: whether to ask for TLS and whether to
    /// insist. The verification is the connector's.
    pub fn ssl_mode(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

fn parse_mode(value: &str) -> Result<Mode, String> {
    Mode::ALL
        .into_iter()
        .find(|m| m.as_str() == value)
        .ok_or_else(|| match value {
            "allow" => "sslmode `allow` is not supported (it tries without TLS first): \
                use `prefer`, or `disable`"
                .to_owned(),
            _ => format!(
                "sslmode `{value}` is not one of disable, prefer, require, verify-ca, verify-full"
            ),
        })
}

/// Where the trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The operating system's store (`sslrootcert=system`, or none given
    /// with `verify-full`).
    System,
    /// A PEM bundle (`sslrootcert=<path>`).
    File(PathBuf),
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Nothing (`disable`, or `prefer`/`require` without a root file).
    Nothing,
    /// That it chains to these roots (`verify-ca`, or `prefer`/`require`
    /// with a root file).
    Chain(Roots),
    /// That it chains to these roots and names the host (`verify-full`).
    ChainAndName(Roots),
}

/// What `database.url` asks of TLS, once its `sslmode`, `sslrootcert`,
/// `sslcert` and `sslkey` are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Whether TLS is used at all, and insisted on.
    pub mode: Mode,
    /// What is checked of the server's certificate.
    pub check: Check,
    /// The certificate this client shows, for a server that checks it
    /// (pg_hba `cert`, or `clientcert=verify-full`).
    pub client: Option<ClientCert>,
}

/// A client certificate: libpq's `sslcert` (a PEM chain) and `sslkey` (its
/// unencrypted PEM key: PKCS#8, PKCS#1 or SEC1). Unlike libpq, nothing is
/// read from `~/.postgresql/` unless named: a certificate is sent only when
/// the URL says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// `sslcert`.
    pub cert: PathBuf,
    /// `sslkey`.
    pub key: PathBuf,
}

/// Reads `sslmode` and `sslrootcert` from `url` (a libpq URL or key=value
/// string) and returns the string without them, for `tokio_postgres::Config`,
/// with what they ask. Reads no file: see [`Tls::client_config`].
pub fn split(url: &str) -> Result<(String, Tls), StoreError> {
    split_reason(url).map_err(config_error)
}

/// [`split`], its error the reason alone (for `DatabaseConfig::validate`).
pub(crate) fn split_reason(url: &str) -> Result<(String, Tls), String> {
    let taken = params::take(url)?;
    let roots = match taken.sslrootcert.as_deref() {
        None => None,
        Some("") => return Err("sslrootcert is empty: give a PEM file, or `system`".into()),
        Some("system") => Some(Roots::System),
        Some(path) => Some(Roots::File(PathBuf::from(path))),
    };
    let mode = match (taken.sslmode.as_deref(), &roots) {
        (Some(value), _) => parse_mode(value)?,
        (None, Some(Roots::System)) => Mode::VerifyFull,
        (None, _) => Mode::Prefer,
    };
    let check = match (mode, roots) {
        (Mode::VerifyFull, roots) => Check::ChainAndName(roots.unwrap_or(Roots::System)),
        (weaker, Some(Roots::System)) => {
            return Err(format!(
                "sslmode `{}` may not be used with sslrootcert=system (use verify-full): \
                 anyone can get a certificate the system trusts for a name they own",
                weaker.as_str()
            ));
        }
        (Mode::VerifyCa, Some(file)) => Check::Chain(file),
        (Mode::VerifyCa, None) => {
            return Err(
                "sslmode `verify-ca` needs sslrootcert=<PEM file>: against the \
                 system's roots it would accept any publicly issued certificate \
                 (or use verify-full)"
                    .into(),
            );
        }
        (Mode::Disable, _) | (Mode::Prefer | Mode::Require, None) => Check::Nothing,
        (Mode::Prefer | Mode::Require, Some(file)) => Check::Chain(file),
    };
    let client = match (taken.sslcert, taken.sslkey) {
        (None, None) => None,
        (Some(_), None) => return Err("sslcert needs sslkey (both or neither)".into()),
        (None, Some(_)) => return Err("sslkey needs sslcert (both or neither)".into()),
        (Some(cert), Some(key)) if cert.is_empty() || key.is_empty() => {
            return Err("sslcert and sslkey must name PEM files".into());
        }
        (Some(_), Some(_)) if mode == Mode::Disable => {
            return Err("sslcert and sslkey need TLS, but sslmode is `disable`".into());
        }
        (Some(cert), Some(key)) => Some(ClientCert {
            cert: PathBuf::from(cert),
            key: PathBuf::from(key),
        }),
    };
    Ok((
        taken.rest,
        Tls {
            mode,
            check,
            client,
        },
    ))
}

/// Parses `url` for tokio-postgres and builds its connector: what opening a
/// connection needs. Reads the root file or the system store, so a bad one
/// is an error here, at start, rather than at the first connect.
pub fn connect_config(url: &str) -> Result<(tokio_postgres::Config, Connector), StoreError> {
    let (rest, tls) = split(url)?;
    let mut pg: tokio_postgres::Config = rest
        .parse()
        .map_err(|e: tokio_postgres::Error| config_error(e.to_string()))?;
    pg.ssl_mode(tls.mode.ssl_mode());
    Ok((pg, tls.connector()?))
}

impl Tls {
    /// The connector for this policy.
    pub fn connector(&self) -> Result<Connector, StoreError> {
        Ok(Connector::new(self.client_config()?))
    }

    /// The rustls configuration for this policy, on the ring provider.
    /// Reads the roots it names.
    pub fn client_config(&self) -> Result<ClientConfig, StoreError> {
        self.build().map_err(config_error)
    }

    fn build(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS cannot be set up: {e}"))?;
        let builder: ConfigBuilder<ClientConfig, WantsClientCert> = match &self.check {
            Check::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(unverified::AnyCertificate::new(
                    &provider,
                ))),
            Check::Chain(roots) => {
                let verifier = chain::ChainOnly::new(Arc::new(load_roots(roots)?), provider)?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
            }
            Check::ChainAndName(roots) => builder.with_root_certificates(load_roots(roots)?),
        };
        let Some(client) = &self.client else {
            return Ok(builder.with_no_client_auth());
        };
        let (chain, key) = client.load()?;
        builder.with_client_auth_cert(chain, key).map_err(|e| {
            format!(
                "sslkey `{}` cannot be used with sslcert `{}`: {e}",
                client.key.display(),
                client.cert.display()
            )
        })
    }
}

impl ClientCert {
    /// Reads the chain and the key, each error naming its parameter and
    /// file.
    fn load(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let shown = self.cert.display();
        let pem = std::fs::read(&self.cert)
            .map_err(|e| format!("sslcert `{shown}` cannot be read: {e}"))?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("sslcert `{shown}` is not a PEM chain: {e}"))?;
        if chain.is_empty() {
            return Err(format!("sslcert `{shown}` holds no PEM certificate"));
        }
        let shown = self.key.display();
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            format!("sslkey `{shown}` holds no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1): {e}")
        })?;
        Ok((chain, key))
    }
}

/// The roots `roots` names, at least one.
fn load_roots(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _unusable) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(format!(
                    "no root certificate could be loaded from the system's store{why}: \
                     install the CA certificates, or give sslrootcert=<PEM file>"
                ));
            }
        }
        Roots::File(path) => {
            let shown = path.display();
            let pem = std::fs::read(path)
                .map_err(|e| format!("sslrootcert `{shown}` cannot be read: {e}"))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslrootcert `{shown}` is not a PEM bundle: {e}"))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert `{shown}` holds no PEM certificate"));
            }
            let (added, unusable) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert `{shown}`: none of its certificates can be a root"
                ));
            }
            if unusable > 0 {
                tracing::warn!(file = %shown, unusable, "sslrootcert: some certificates were ignored");
            }
        }
    }
    Ok(store)
}

fn config_error(reason: String) -> StoreError {
    StoreError::Config(format!("database.url: {reason}"))
}
