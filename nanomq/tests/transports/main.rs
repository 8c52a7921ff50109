//! TLS, WebSocket and WSS listeners, end to end through the public API: in-process brokers
//! (`bind` + `serve` on 127.0.0.1 port 0) and clients written here with tokio-rustls and
//! tokio-tungstenite, on certificates made per test with rcgen.
//!
//! - `tls`: MQTT 5 and 3.1.1 over TLS 1.3 and TLS 1.2; ALPN (`mqtt` by default, `alpn = []`
//!   turns it off); client certificates, required and optional, from the right CA and another.
//! - `websocket`: the upgrade on the configured path only (404 elsewhere), the MQTT subprotocol
//!   echoed; packets split across frames and joined in one; routing between TCP, WS and WSS;
//!   text frames refused; pings answered.
//! - `certificates`: reloading the server certificate while clients stay connected, a broken
//!   file refused on reload with the old certificate kept, and unusable files refused at start
//!   with their path named.
//! - `deadlines`: one CONNECT deadline covers the transport handshake and CONNECT (silent
//!   sockets, half an HTTP request, a dripped ClientHello); graceful shutdown tells TLS and
//!   WebSocket clients (DISCONNECT 0x8B).
//!
//! `client` holds the test's clients (TLS, WebSocket, and MQTT on the crate's codec over either)
//! and `pki` the certificates. Every wait is bounded by a timeout, and each broker runs on a
//! thread of its own, so a broker that never answers fails a test instead of hanging it.

#![cfg(all(feature = "tls", feature = "websocket"))]

mod certificates;
mod client;
mod deadlines;
mod identity;
mod pki;
mod tls;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use nanomq::auth::Authenticator;
use nanomq::broker::{bind, serve, BrokerError, CertificateReloader, Live};
use nanomq::config::Config;
use nanomq::service::Health;
use tokio::sync::oneshot;

use client::within;

/// An in-process broker on the listeners of a TOML config, on a thread and runtime of its own:
/// a broker task that never yields cannot stall the test's timeouts. Shut down when dropped.
pub struct TestBroker {
    addrs: Vec<SocketAddr>,
    reloaders: Vec<CertificateReloader>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<oneshot::Receiver<Result<(), BrokerError>>>,
}

impl TestBroker {
    /// Parses `toml`, binds its listeners (each should bind 127.0.0.1:0) and serves them.
    pub async fn start(toml: &str) -> TestBroker {
        let config = Config::parse(toml, "test.toml").unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let (bound, listening) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let (done, served) = oneshot::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listeners = match bind(&config).await {
                    Ok(listeners) => listeners,
                    Err(e) => return drop(bound.send(Err(e))),
                };
                let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr()).collect();
                let reloaders: Vec<_> = listeners.iter().map(|l| l.reloader()).collect();
                let _ = bound.send(Ok((addrs, reloaders)));
                let auth = Arc::new(Authenticator::load(&config.auth).expect("auth config"));
                let live = Live::new(&config, auth);
                let result = serve(config, live, listeners, Health::new(), None, async move {
                    let _ = stopped.await;
                })
                .await;
                let _ = done.send(result);
            });
        });
        let (addrs, reloaders) = match within("bind", listening).await {
            Ok(Ok(bound)) => bound,
            Ok(Err(e)) => panic!("bind: {e}"),
            Err(_) => panic!("the broker thread ended before binding"),
        };
        TestBroker {
            addrs,
            reloaders,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// The address of the `i`th listener of the config.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// The certificate reloader of the `i`th listener.
    pub fn reloader(&self, i: usize) -> &CertificateReloader {
        &self.reloaders[i]
    }

    /// Resolves the shutdown future and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let served = self.served.take().unwrap();
        within("serve to return", served).await.unwrap().unwrap();
    }
}

/// A `[[listeners]]` entry on 127.0.0.1:0; `extra` holds more keys or a `[listeners.tls]`
/// table.
pub fn listener(kind: &str, extra: &str) -> String {
    format!("[[listeners]]\nkind = \"{kind}\"\nbind = \"127.0.0.1:0\"\n{extra}\n")
}
