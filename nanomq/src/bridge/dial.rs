//! Opening the byte stream to an upstream: TCP, and TLS over it when `[bridges.tls]` is set.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::BridgeConfig;

/// The stream MQTT travels on to the upstream.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Connects to the upstream of `config`; the error says what failed, for the log and
/// `last_error`.
pub(super) async fn dial(config: &BridgeConfig) -> Result<Box<dyn Stream>, String> {
    let tcp = TcpStream::connect(config.address.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", config.address))?;
    let _ = tcp.set_nodelay(true);
    match &config.tls {
        None => Ok(Box::new(tcp)),
        #[cfg(feature = "tls")]
        Some(tls) => {
            let client = crate::broker::client_config(tls).map_err(|e| e.to_string())?;
            let name = tls.server_name.as_deref().unwrap_or(config.host());
            let server_name = rustls_pki_types::ServerName::try_from(name.to_owned())
                .map_err(|e| format!("server name {name:?}: {e}"))?;
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
            let stream = connector
                .connect(server_name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {}: {e}", config.address))?;
            Ok(Box::new(stream))
        }
        // Validation refuses `[bridges.tls]` in builds without TLS.
        #[cfg(not(feature = "tls"))]
        Some(_) => Err("this build has no TLS (cargo feature `tls`)".into()),
    }
}
