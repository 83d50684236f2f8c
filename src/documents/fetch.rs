//! Fetching a web page (or a file by URL) for indexing, safely.
//!
//! The daemon often runs inside a private network, next to cloud metadata services and
//! admin interfaces, so a URL is a request to reach *from inside*. Every hop is
//! checked: the name is resolved here, every address it resolves to must be public
//! (loopback, private, link-local — which includes 169.254.169.254 —, carrier-grade NAT,
//! multicast, unspecified and documentation ranges are refused unless
//! `documents.allow_private_urls`), and the connection is pinned to the checked address
//! so a second DNS answer cannot swap it (DNS rebinding). Redirects are followed by
//! hand, at most [`MAX_REDIRECTS`], each checked the same way. The body streams to disk
//! under a size limit, the whole fetch under a deadline, and only document content
//! types are accepted.

use std::net::{IpAddr, SocketAddr};

use futures_util::StreamExt;
use reqwest::Url;

use super::files::{Incoming, Stored};
use super::{DocumentsConfig, MediaType};

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 5;

/// Why a URL could not be fetched. Messages are for the client that sent the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not a URL this fetcher takes.
    #[error("{0}")]
    BadUrl(String),
    /// The address is not public.
    #[error(
        "{host} resolves to {addr}, a private, loopback or link-local address; fetching it is refused (documents.allow_private_urls)"
    )]
    Private {
        /// The host.
        host: String,
        /// The address.
        addr: IpAddr,
    },
    /// The server could not be reached or answered badly.
    #[error("{0}")]
    Remote(String),
    /// The file could not be stored.
    #[error(transparent)]
    File(#[from] super::files::FileError),
}

/// A fetched document.
#[derive(Debug)]
pub struct Fetched {
    /// The stored file.
    pub stored: Stored,
    /// Its format.
    pub media: MediaType,
    /// The URL it finally came from.
    pub url: String,
}

/// Whether an address is one a fetch must not reach by default.
pub fn is_private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 → IPv4 inside
        }
    }
}

/// Checks a URL's form (before any network access).
pub fn parse(url: &str) -> Result<Url, FetchError> {
    if url.len() > 2048 {
        return Err(FetchError::BadUrl(
            "the URL is longer than 2048 characters".into(),
        ));
    }
    let parsed =
        Url::parse(url).map_err(|e| FetchError::BadUrl(format!("not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FetchError::BadUrl(
            "only http:// and https:// URLs can be fetched".into(),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(FetchError::BadUrl("the URL has no host".into()));
    }
    Ok(parsed)
}

async fn resolve(url: &Url, allow_private: bool) -> Result<SocketAddr, FetchError> {
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        .map_err(|_| FetchError::Remote(format!("resolving {host} timed out")))?
        .map_err(|_| FetchError::Remote(format!("{host} could not be resolved")))?
        .collect(),
    };
    let first = *addrs
        .first()
        .ok_or_else(|| FetchError::Remote(format!("{host} has no addresses")))?;
    if !allow_private && let Some(bad) = addrs.iter().find(|a| is_private(a.ip())) {
        return Err(FetchError::Private {
            host,
            addr: bad.ip(),
        });
    }
    Ok(first)
}

const ACCEPTED: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "text/plain",
    "text/markdown",
    "text/x-markdown",
    "text/csv",
    "application/json",
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
];

/// Fetches `url` into the file store (blocking parts run on the blocking pool).
pub async fn fetch(config: &DocumentsConfig, url: &str) -> Result<Fetched, FetchError> {
    crate::client::tls_provider();
    let mut url = parse(url)?;
    let deadline = tokio::time::Instant::now() + config.url_timeout;
    for _ in 0..=MAX_REDIRECTS {
        let addr = resolve(&url, config.allow_private_urls).await?;
        let host = url.host_str().unwrap_or_default().to_string();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .resolve(&host, addr)
            .connect_timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!(
                "appliance/",
                env!("CARGO_PKG_VERSION"),
                " (document fetcher)"
            ))
            .build()
            .map_err(|_| FetchError::Remote("the HTTP client could not be built".into()))?;
        let response = tokio::time::timeout_at(deadline, client.get(url.clone()).send())
            .await
            .map_err(|_| {
                FetchError::Remote(format!(
                    "fetching took longer than {} s",
                    config.url_timeout.as_secs()
                ))
            })?
            .map_err(|e| {
                FetchError::Remote(format!("{host} could not be reached: {}", short(&e)))
            })?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| {
                    FetchError::Remote(format!("{host} redirected without a location"))
                })?;
            url = url.join(location).map_err(|_| {
                FetchError::Remote("the redirect location is not a valid URL".into())
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(FetchError::BadUrl(
                    "a redirect led to a non-HTTP URL".into(),
                ));
            }
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Remote(format!(
                "{host} answered HTTP {}",
                status.as_u16()
            )));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mime = content_type
            .as_deref()
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if !ACCEPTED.contains(&mime.as_str()) {
            return Err(FetchError::Remote(format!(
                "the URL serves `{}`, not a document type this appliance reads",
                if mime.is_empty() {
                    "no content type"
                } else {
                    &mime
                }
            )));
        }
        if response
            .content_length()
            .is_some_and(|n| n > config.max_url_bytes)
        {
            return Err(FetchError::File(super::files::FileError::TooLarge {
                limit: config.max_url_bytes,
            }));
        }
        let dir = config.files_dir.clone();
        let limit = config.max_url_bytes;
        let mut incoming = tokio::task::spawn_blocking(move || Incoming::start(&dir, limit))
            .await
            .map_err(|_| FetchError::Remote("storing the page failed".into()))??;
        let mut body = response.bytes_stream();
        loop {
            let next = tokio::time::timeout_at(deadline, body.next())
                .await
                .map_err(|_| {
                    FetchError::Remote(format!(
                        "fetching took longer than {} s",
                        config.url_timeout.as_secs()
                    ))
                })?;
            match next {
                Some(Ok(bytes)) => incoming.write(&bytes)?,
                Some(Err(e)) => {
                    return Err(FetchError::Remote(format!(
                        "the download broke off: {}",
                        short(&e)
                    )));
                }
                None => break,
            }
        }
        let stored = tokio::task::spawn_blocking(move || incoming.finish())
            .await
            .map_err(|_| FetchError::Remote("storing the page failed".into()))??;
        let name = url.path().rsplit('/').next().unwrap_or("");
        let media =
            MediaType::detect(name, &stored.head, content_type.as_deref()).ok_or_else(|| {
                FetchError::Remote(
                    "the page's content is not a document type this appliance reads".into(),
                )
            })?;
        return Ok(Fetched {
            stored,
            media,
            url: url.to_string(),
        });
    }
    Err(FetchError::Remote(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

/// A reqwest error in a few words, without internal detail.
fn short(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read"
    } else {
        "request failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_private() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn only_http_urls_are_taken() {
        assert!(parse("file:///etc/passwd").is_err());
        assert!(parse("gopher://x").is_err());
        assert!(parse("http://").is_err());
        assert!(parse("https://example.com/a.pdf").is_ok());
    }
}
