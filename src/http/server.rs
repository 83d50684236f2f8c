//! The listener: accepting connections, TLS, HTTP/1.1 and HTTP/2, and draining.
//!
//! One accept loop for plain and TLS connections, so the same bounds hold for both: at
//! most `max_connections` open connections and `max_connections_per_address` from one
//! client address (more are closed at once), a deadline for the TLS handshake and for
//! every request head (a client that sends half a request cannot hold a connection, or
//! the shutdown, forever), and a deadline between the parts of a request body. On
//! shutdown the listener closes, idle connections are closed, and requests in flight
//! get the grace period.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tower::Service;
use tower_http::timeout::TimeoutBody;

/// Limits and deadlines of the listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Time to send a request head (and to finish a TLS handshake).
    pub header_timeout: Duration,
    /// Longest pause between parts of a request body.
    pub body_timeout: Duration,
    /// Open connections at once.
    pub max_connections: usize,
    /// Open connections at once from one address.
    pub max_connections_per_address: usize,
    /// Time requests in flight get after a shutdown signal.
    pub grace: Duration,
}

/// The HTTPS configuration, replaceable while serving (SIGHUP reloads certificates).
#[derive(Clone)]
pub struct Tls {
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl Tls {
    /// Loads a PEM certificate chain and private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        Ok(Tls {
            current: Arc::new(RwLock::new(server_config(cert, key)?)),
        })
    }

    /// Replaces the certificate and key; the old pair stays in use when the new one is
    /// unusable. New connections use the new pair.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), String> {
        let config = server_config(cert, key)?;
        *self.current.write() = config;
        Ok(())
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading the certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("reading the private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not make a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Counts open connections, in all and per address.
#[derive(Default)]
struct Connections {
    total: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; gives its place back when dropped.
struct Admitted {
    connections: Arc<Connections>,
    address: IpAddr,
}

impl Connections {
    fn admit(self: &Arc<Self>, address: IpAddr, options: &ServerOptions) -> Option<Admitted> {
        let mut per_address = self.per_address.lock();
        let mine = per_address.entry(address).or_default();
        if *mine >= options.max_connections_per_address
            || self.total.load(Ordering::Acquire) >= options.max_connections
        {
            if *mine == 0 {
                per_address.remove(&address);
            }
            return None;
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        Some(Admitted {
            connections: self.clone(),
            address,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.total.fetch_sub(1, Ordering::AcqRel);
        let mut per_address = self.connections.per_address.lock();
        if let Some(n) = per_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                per_address.remove(&self.address);
            }
        }
    }
}

/// Serves `router` on an already-bound listener until `shutdown` resolves, then stops
/// accepting and gives requests in flight `options.grace` to finish before cutting them
/// off. With `tls`, connections are HTTPS. Returns whether everything finished within
/// the grace period.
pub async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServerOptions,
    tls: Option<Tls>,
) -> std::io::Result<bool> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Connections::default());
    // Every connection's task, so that the ones still running when the grace period
    // ends can be ended here (their requests' clean-up, such as recording a cut-off
    // reply, then runs while the daemon can still store it).
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(admitted) = connections.admit(peer.ip(), &options) else {
            tracing::debug!(%peer, "connection refused: too many open connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_service(router.clone(), peer, options.body_timeout);
        let builder = builder.clone();
        let tls = tls.as_ref().map(Tls::acceptor);
        let watcher = graceful.watcher();
        tasks.spawn(async move {
            let _admitted = admitted;
            match tls {
                None => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(options.header_timeout, acceptor.accept(stream)).await;
                    let Ok(Ok(stream)) = handshake else {
                        return;
                    };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    match tokio::time::timeout(options.grace, graceful.shutdown()).await {
        Ok(()) => Ok(true),
        Err(_) => {
            tracing::warn!(
                grace_secs = options.grace.as_secs(),
                "in-flight requests did not finish within the grace period; cutting them off"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            Ok(false)
        }
    }
}

/// Adapts the router to a hyper service for one connection: the peer's address as
/// `ConnectInfo`, and the body deadline.
fn hyper_service(
    router: Router,
    peer: SocketAddr,
    body_timeout: Duration,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request = request.map(|body| Body::new(TimeoutBody::new(body_timeout, body)));
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move { router.call(request).await }
    })
}
