//! TLS listeners: the server identity from PEM files, optional client certificates, ALPN, and
//! reloading the files without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::x509::certificate_names;
use super::{CertificateUsername, ClientCertificate, Upgrade};
use crate::config::{ClientCertificates, ListenerConfig, ListenerKind, TlsConfig, UsernameFrom};

/// Why a TLS listener cannot start or reload. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The listener has no `[listeners.tls]` table; validation normally says so first.
    #[error("no [listeners.tls] table with cert and key")]
    NotConfigured,
    /// A file is missing, unreadable or not PEM.
    #[error("{}: {what}: {error}", path.display())]
    Pem {
        /// The file as configured.
        path: PathBuf,
        /// What the file should hold.
        what: &'static str,
        /// The reader's reason.
        error: rustls_pki_types::pem::Error,
    },
    /// rustls refused the certificate chain, key or CA bundle.
    #[error("{}: {error}", path.display())]
    Rejected {
        /// The file whose contents were refused.
        path: PathBuf,
        /// rustls' reason.
        error: String,
    },
}

/// A listener's current TLS settings. A reload swaps them; each handshake takes the settings
/// current when it starts.
pub(crate) struct TlsIdentity {
    settings: TlsConfig,
    kind: ListenerKind,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsIdentity {
    /// Reads the listener's certificate, key and CA files.
    pub(crate) fn load(listener: &ListenerConfig) -> Result<TlsIdentity, TlsError> {
        let Some(settings) = listener.tls.clone() else {
            return Err(TlsError::NotConfigured);
        };
        let config = server_config(&settings, listener.kind)?;
        Ok(TlsIdentity {
            settings,
            kind: listener.kind,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again; on any error the settings in use stay.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.settings, self.kind)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// A handshake with the settings current now.
    pub(crate) fn upgrade(&self) -> TlsUpgrade {
        let config = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        TlsUpgrade {
            config,
            username_from: self.settings.username_from,
        }
    }
}

/// Runs the server side of a TLS handshake.
pub(crate) struct TlsUpgrade {
    config: Arc<ServerConfig>,
    username_from: UsernameFrom,
}

impl Upgrade for TlsUpgrade {
    type Stream = TlsStream<TcpStream>;

    async fn upgrade(
        self,
        tcp: TcpStream,
    ) -> std::io::Result<(Self::Stream, Option<ClientCertificate>)> {
        let stream = tokio_rustls::TlsAcceptor::from(self.config)
            .accept(tcp)
            .await?;
        // The first certificate is the client's own; rustls has verified the chain.
        let certificate = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|der| client_certificate(der, self.username_from));
        Ok((stream, certificate))
    }
}

/// What the listener takes from a verified certificate. A certificate whose DER cannot be
/// read for names (rustls accepted it, so this is unlikely) gives no names at all.
fn client_certificate(der: &[u8], username_from: UsernameFrom) -> ClientCertificate {
    let names = certificate_names(der).unwrap_or_default();
    let username = match username_from {
        UsernameFrom::Connect => None,
        UsernameFrom::Cn => Some(names.common_name.clone()),
        UsernameFrom::San => Some(names.alternative_names.into_iter().next()),
    };
    ClientCertificate {
        common_name: names.common_name.map(String::into_boxed_str),
        username: match username {
            None => CertificateUsername::NotUsed,
            Some(Some(name)) if !name.is_empty() => CertificateUsername::Name(name.into()),
            Some(_) => CertificateUsername::Missing,
        },
    }
}

/// Builds rustls' server settings: TLS 1.2 and 1.3 with the ring provider, the client
/// certificate policy, and ALPN.
fn server_config(tls: &TlsConfig, kind: ListenerKind) -> Result<ServerConfig, TlsError> {
    let chain = read_certificates(&tls.cert, "certificate chain")?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|error| TlsError::Pem {
        path: tls.key.clone(),
        what: "private key",
        error,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| rejected(&tls.cert, e))?;
    let builder = match (&tls.ca, tls.verify) {
        (Some(ca), ClientCertificates::Optional | ClientCertificates::Required) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(ca, "CA bundle")? {
                roots.add(cert).map_err(|e| rejected(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match tls.verify {
                ClientCertificates::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| rejected(ca, e))?)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| rejected(&tls.key, e))?;
    config.alpn_protocols = match &tls.alpn {
        Some(protocols) => protocols.iter().map(|p| p.as_bytes().to_vec()).collect(),
        None if kind == ListenerKind::Wss => vec![b"http/1.1".to_vec()],
        None => vec![b"mqtt".to_vec()],
    };
    Ok(config)
}

fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |error| TlsError::Pem {
        path: path.to_owned(),
        what,
        error,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(pem(rustls_pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

fn rejected(path: &Path, error: impl std::fmt::Display) -> TlsError {
    TlsError::Rejected {
        path: path.to_owned(),
        error: error.to_string(),
    }
}

/// rustls' client settings for a bridge: the upstream checked against `tls.ca`, the client
/// certificate when one is configured, and ALPN. The ring provider, as for listeners.
#[cfg(feature = "bridge")]
pub(crate) fn client_config(
    tls: &crate::config::BridgeTlsConfig,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(&tls.ca, "CA bundle")? {
        roots.add(cert).map_err(|e| rejected(&tls.ca, e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| rejected(&tls.ca, e))?
        .with_root_certificates(roots);
    let mut config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates(cert, "certificate chain")?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::Pem {
                path: key.clone(),
                what: "private key",
                error,
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| rejected(key, e))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Ok(config)
}
