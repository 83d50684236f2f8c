//! The listener: accepting connections, TLS, HTTP/1.1 and HTTP/2, and draining.
//!
//! One accept loop for plain and TLS connections on TCP and for the Unix socket, and
//! one way to serve a connection, so the same bounds hold for all: at most
//! `max_connections` open connections and `max_connections_per_address` from one
//! client address or local Unix user (more are closed at once), a deadline for the TLS
//! handshake and for every request head (a client that sends half a request cannot
//! hold a connection, or the shutdown, forever), and a deadline between the parts of a
//! request body. On shutdown the listeners close, idle connections are closed, and
//! requests in flight get the grace period. Each request carries where it came from:
//! `ConnectInfo<SocketAddr>` on TCP, [`PeerCredentials`] on the Unix socket.

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
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use parking_lot::{Mutex, RwLock};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tower::Service;
use tower_http::timeout::TimeoutBody;

use super::unix::{PeerCredentials, UnixSocket};

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

/// Whom an open connection counts against: a client address, or on the Unix socket
/// the connecting Unix user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Origin {
    Address(IpAddr),
    LocalUser(u32),
}

/// Counts open connections, in all and per origin.
#[derive(Default)]
struct Connections {
    total: AtomicUsize,
    per_origin: Mutex<HashMap<Origin, usize>>,
}

/// One admitted connection; gives its place back when dropped.
struct Admitted {
    connections: Arc<Connections>,
    origin: Origin,
}

impl Connections {
    fn admit(self: &Arc<Self>, origin: Origin, options: &ServerOptions) -> Option<Admitted> {
        let mut per_origin = self.per_origin.lock();
        let mine = per_origin.entry(origin).or_default();
        if *mine >= options.max_connections_per_address
            || self.total.load(Ordering::Acquire) >= options.max_connections
        {
            if *mine == 0 {
                per_origin.remove(&origin);
            }
            return None;
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        Some(Admitted {
            connections: self.clone(),
            origin,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.total.fetch_sub(1, Ordering::AcqRel);
        let mut per_origin = self.connections.per_origin.lock();
        if let Some(n) = per_origin.get_mut(&self.origin) {
            *n -= 1;
            if *n == 0 {
                per_origin.remove(&self.origin);
            }
        }
    }
}

/// A connection just accepted, from either listener.
enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

/// Where a connection's requests come from, attached to each of them.
#[derive(Clone, Copy)]
enum Remote {
    /// As `ConnectInfo<SocketAddr>`.
    Tcp(SocketAddr),
    /// As [`PeerCredentials`].
    Unix(PeerCredentials),
}

/// Serves `router` on an already-bound TCP listener, and on `unix` when given, until
/// `shutdown` resolves; then stops accepting and gives requests in flight
/// `options.grace` to finish before cutting them off. With `tls`, TCP connections are
/// HTTPS (the Unix socket is always plain: it never leaves the host). Both listeners
/// share the connection caps, deadlines and the drain. Returns whether everything
/// finished within the grace period.
pub async fn serve(
    listener: std::net::TcpListener,
    unix: Option<&mut UnixSocket>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServerOptions,
    tls: Option<Tls>,
) -> std::io::Result<bool> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let unix = match unix.and_then(UnixSocket::take_listener) {
        Some(socket) => {
            socket.set_nonblocking(true)?;
            Some(UnixListener::from_std(socket)?)
        }
        None => None,
    };
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
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted.map(|(stream, peer)| Accepted::Tcp(stream, peer)),
            accepted = accept_unix(unix.as_ref()) => accepted.map(Accepted::Unix),
            () = &mut shutdown => break,
        };
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (origin, remote) = match &accepted {
            Accepted::Tcp(_, peer) => (Origin::Address(peer.ip()), Remote::Tcp(*peer)),
            Accepted::Unix(stream) => match stream.peer_cred() {
                Ok(cred) => {
                    let cred = PeerCredentials {
                        uid: cred.uid(),
                        gid: cred.gid(),
                        pid: cred.pid(),
                    };
                    (Origin::LocalUser(cred.uid), Remote::Unix(cred))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no peer credentials on a Unix socket connection");
                    continue;
                }
            },
        };
        let Some(admitted) = connections.admit(origin, &options) else {
            tracing::debug!(?origin, "connection refused: too many open connections");
            continue;
        };
        let connection = Connection {
            builder: builder.clone(),
            watcher: graceful.watcher(),
            service: RouterService {
                router: router.clone(),
                remote,
                body_timeout: options.body_timeout,
            },
            _admitted: admitted,
        };
        match accepted {
            Accepted::Tcp(stream, _) => {
                let _ = stream.set_nodelay(true);
                match tls.as_ref().map(Tls::acceptor) {
                    None => tasks.spawn(connection.serve(stream)),
                    Some(acceptor) => tasks.spawn(async move {
                        let handshake =
                            tokio::time::timeout(options.header_timeout, acceptor.accept(stream))
                                .await;
                        if let Ok(Ok(stream)) = handshake {
                            connection.serve(stream).await;
                        }
                    }),
                };
            }
            Accepted::Unix(stream) => {
                tasks.spawn(connection.serve(stream));
            }
        }
    }
    drop(listener);
    drop(unix);
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

/// The next connection on the Unix socket; never resolves without one.
async fn accept_unix(listener: Option<&UnixListener>) -> std::io::Result<UnixStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// One admitted connection, whatever its transport: served with the same HTTP
/// settings, watched by the same drain, holding its place until it ends.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    service: RouterService,
    _admitted: Admitted,
}

impl Connection {
    async fn serve<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), self.service);
        let _ = self.watcher.watch(conn.into_owned()).await;
    }
}

/// The router as a hyper service for one connection: where the connection comes from
/// (`ConnectInfo` or [`PeerCredentials`]) on every request, and the body deadline.
#[derive(Clone)]
struct RouterService {
    router: Router,
    remote: Remote,
    body_timeout: Duration,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for RouterService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn call(&self, request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let mut request = request.map(|body| Body::new(TimeoutBody::new(self.body_timeout, body)));
        match self.remote {
            Remote::Tcp(address) => {
                request.extensions_mut().insert(ConnectInfo(address));
            }
            Remote::Unix(peer) => {
                request.extensions_mut().insert(peer);
            }
        }
        self.router.clone().call(request)
    }
}
