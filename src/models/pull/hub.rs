//! The hub's HTTP protocol, as huggingface.co serves it (so a mirror that copies its
//! URLs works too): the repository listing
//! `GET {hub}/api/models/{org}/{repo}/tree/main?recursive=true` (a JSON array of
//! entries, paged with `Link: <…>; rel="next"`), and files at
//! `GET {hub}/{org}/{repo}/resolve/main/{path}`, which usually redirect to a download
//! server and honour `Range: bytes=N-`.
//!
//! Redirects are followed by hand, at most [`MAX_REDIRECTS`], and the token goes only to
//! the hub's own origin, never to the server a redirect leads to. The proxy is the one
//! configured (`pull.proxy`): the environment's `HTTPS_PROXY` is deliberately not read,
//! since only `config` reads the environment.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{StatusCode, Url, header};
use serde::Deserialize;

use super::PullError;
use super::reference::HubFile;
use crate::config::PullSection;

/// Redirects followed at most per request.
pub const MAX_REDIRECTS: usize = 5;

/// Largest listing page accepted, in bytes.
const MAX_LISTING_BYTES: usize = 16 << 20;

/// Listing pages followed at most.
const MAX_LISTING_PAGES: usize = 20;

/// Entries accepted in a listing, over every page.
const MAX_LISTING_ENTRIES: usize = 100_000;

/// A client of one hub.
#[derive(Clone)]
pub struct Hub {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    /// How long one listing page may take in all.
    page_deadline: Duration,
}

/// One entry of a listing, as the hub sends it (unknown fields ignored).
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Debug, Deserialize)]
struct Lfs {
    oid: String,
    #[serde(default)]
    size: Option<u64>,
}

/// A file response, positioned where it was asked to start.
pub struct Download {
    /// The response whose body is the file from `offset`.
    pub response: reqwest::Response,
    /// Whether the body starts at the requested offset (206) or at byte 0 (200).
    pub partial: bool,
    /// The sha256 the hub announced for the file (`X-Linked-Etag` or `ETag`), when it
    /// looks like one.
    pub announced_sha256: Option<String>,
    /// The size the hub announced for the file (`X-Linked-Size`).
    pub announced_size: Option<u64>,
}

impl Hub {
    /// A client for `config.hub_url`.
    pub fn new(config: &PullSection) -> Result<Hub, PullError> {
        crate::client::tls_provider();
        let base = Url::parse(config.hub_url.trim_end_matches('/'))
            .map_err(|_| PullError::Hub("pull.hub_url is not a valid URL".into()))?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .read_timeout(Duration::from_secs(config.stall_timeout_secs))
            .user_agent(concat!(
                "appliance/",
                env!("CARGO_PKG_VERSION"),
                " (model pull)"
            ));
        if !config.proxy.is_empty() {
            let proxy = reqwest::Proxy::all(&config.proxy)
                .map_err(|_| PullError::Hub("pull.proxy is not a valid proxy URL".into()))?;
            builder = builder.proxy(proxy);
        }
        let http = builder
            .build()
            .map_err(|_| PullError::Hub("the HTTP client could not be built".into()))?;
        let token = (!config.token.is_empty()).then(|| config.token.clone());
        let page_deadline =
            Duration::from_secs(config.connect_timeout_secs + config.stall_timeout_secs);
        Ok(Hub {
            http,
            base,
            token,
            page_deadline,
        })
    }

    /// The hub's host, for messages.
    pub fn host(&self) -> String {
        self.base.host_str().unwrap_or_default().to_string()
    }

    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// `base` joined with path segments (each percent-encoded).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        url
    }

    async fn get(&self, url: Url, range_from: Option<u64>) -> Result<reqwest::Response, PullError> {
        let mut request = self.http.get(url.clone());
        if let Some(token) = self.token.as_deref().filter(|_| self.same_origin(&url)) {
            request = request.bearer_auth(token);
        }
        if let Some(from) = range_from.filter(|n| *n > 0) {
            request = request.header(header::RANGE, format!("bytes={from}-"));
        }
        request.send().await.map_err(|e| {
            PullError::Transient(format!(
                "{} could not be reached: {}",
                url.host_str().unwrap_or("the hub"),
                short(&e)
            ))
        })
    }

    /// Every file of a repository's `main` branch.
    pub async fn list(&self, org: &str, repo: &str) -> Result<Vec<HubFile>, PullError> {
        let mut url = self.url(&["api", "models", org, repo, "tree", "main"]);
        url.set_query(Some("recursive=true"));
        let what = format!("hf.co/{org}/{repo}");
        let mut files = Vec::new();
        let mut entries_seen = 0usize;
        for _ in 0..MAX_LISTING_PAGES {
            // A deadline per page: a slow drip cannot hold a pull before it starts.
            let (entries, next) = tokio::time::timeout(self.page_deadline, self.page(&what, &url))
                .await
                .map_err(|_| {
                    PullError::Hub(format!(
                        "{} took longer than {} s to list {what}",
                        self.host(),
                        self.page_deadline.as_secs()
                    ))
                })??;
            entries_seen += entries.len();
            if entries_seen > MAX_LISTING_ENTRIES {
                return Err(PullError::Hub(format!(
                    "{what} lists more than {MAX_LISTING_ENTRIES} files"
                )));
            }
            files.extend(entries.into_iter().filter(|e| e.kind == "file").map(|e| {
                HubFile {
                    size: e.lfs.as_ref().and_then(|l| l.size).unwrap_or(e.size),
                    sha256: e
                        .lfs
                        .map(|l| l.oid.to_ascii_lowercase())
                        .filter(|oid| is_sha256(oid)),
                    path: e.path,
                }
            }));
            match next.and_then(|n| url.join(&n).ok()) {
                // A next page elsewhere would receive the token: only the hub's own.
                Some(next) if self.same_origin(&next) => url = next,
                _ => return Ok(files),
            }
        }
        Err(PullError::Hub(format!(
            "the listing of {what} has more than {MAX_LISTING_PAGES} pages"
        )))
    }

    /// One page of a listing: its entries and the `Link` to the next page, if any.
    async fn page(&self, what: &str, url: &Url) -> Result<(Vec<Entry>, Option<String>), PullError> {
        let response = self.get(url.clone(), None).await.map_err(|e| match e {
            PullError::Transient(m) => PullError::Hub(m),
            other => other,
        })?;
        let status = response.status();
        match status {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(PullError::Denied(format!(
                    "the hub refused access to {what} (HTTP {}): a gated or private repository needs an access token (pull.token) that has been granted access",
                    status.as_u16()
                )));
            }
            StatusCode::NOT_FOUND => {
                return Err(PullError::NotFound(format!(
                    "{what} does not exist on {} (or is private)",
                    self.host()
                )));
            }
            other => {
                return Err(PullError::Hub(format!(
                    "{} answered HTTP {} to the repository listing",
                    self.host(),
                    other.as_u16()
                )));
            }
        }
        let next = next_link(response.headers());
        let body = read_bounded(response, MAX_LISTING_BYTES).await?;
        let entries: Vec<Entry> = serde_json::from_slice(&body).map_err(|_| {
            PullError::Hub(format!(
                "{} sent a repository listing that is not a JSON list of files",
                self.host()
            ))
        })?;
        Ok((entries, next))
    }

    /// Requests a file from byte `offset`, following redirects.
    pub async fn open(
        &self,
        org: &str,
        repo: &str,
        path: &str,
        offset: u64,
    ) -> Result<Download, PullError> {
        let mut segments = vec![org, repo, "resolve", "main"];
        segments.extend(path.split('/'));
        let mut url = self.url(&segments);
        let mut announced = None;
        let mut announced_size = None;
        for _ in 0..=MAX_REDIRECTS {
            let response = self.get(url.clone(), Some(offset)).await?;
            announced = announced.or_else(|| announced_sha256(response.headers()));
            announced_size = announced_size.or_else(|| {
                response
                    .headers()
                    .get("x-linked-size")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
            });
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| PullError::Hub("a redirect had no location".into()))?;
                url = url
                    .join(location)
                    .map_err(|_| PullError::Hub("a redirect location is not a URL".into()))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(PullError::Hub("a redirect led to a non-HTTP URL".into()));
                }
                continue;
            }
            let host = url.host_str().unwrap_or("the hub").to_string();
            return match status {
                StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                    let partial = status == StatusCode::PARTIAL_CONTENT;
                    if partial && content_range_start(response.headers()) != Some(offset) {
                        return Err(PullError::Transient(format!(
                            "{host} answered a range other than the one asked for"
                        )));
                    }
                    Ok(Download {
                        response,
                        partial,
                        announced_sha256: announced,
                        announced_size,
                    })
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    Err(PullError::Denied(format!(
                        "{host} refused the download (HTTP {}): a gated repository needs pull.token",
                        status.as_u16()
                    )))
                }
                StatusCode::NOT_FOUND => Err(PullError::NotFound(format!(
                    "{host} has no file {path} in hf.co/{org}/{repo}"
                ))),
                s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => Err(
                    PullError::Transient(format!("{host} answered HTTP {}", s.as_u16())),
                ),
                s => Err(PullError::Hub(format!(
                    "{host} answered HTTP {} to the download",
                    s.as_u16()
                ))),
            };
        }
        Err(PullError::Hub(format!(
            "the download redirected more than {MAX_REDIRECTS} times"
        )))
    }
}

/// Reads a body up to `limit` bytes.
async fn read_bounded(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, PullError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(PullError::Hub(format!(
            "the repository listing is larger than {limit} bytes"
        )));
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            PullError::Hub(format!("the repository listing broke off: {}", short(&e)))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(PullError::Hub(format!(
                "the repository listing is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &header::HeaderMap) -> Option<String> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().eq_ignore_ascii_case("rel=\"next\"") || p.trim() == "rel=next");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

/// The start of a `Content-Range: bytes START-END/TOTAL` header.
fn content_range_start(headers: &header::HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// The hub's `X-Linked-Etag` (or `ETag`) when it is a sha256, as for LFS files.
fn announced_sha256(headers: &header::HeaderMap) -> Option<String> {
    ["x-linked-etag", "etag"].iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?;
        let value = value.trim().trim_start_matches("W/").trim_matches('"');
        let value = value.to_ascii_lowercase();
        is_sha256(&value).then_some(value)
    })
}

/// Whether `text` is 64 lower-case hex digits.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A reqwest error in a few words, without internal detail.
pub fn short(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the connection broke off"
    } else {
        "request failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> header::HeaderMap {
        let mut map = header::HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn link_headers_give_the_next_page() {
        let h = headers(&[(
            "link",
            "<https://huggingface.co/api/models/a/b/tree/main?recursive=true&cursor=xyz>; rel=\"next\"",
        )]);
        assert_eq!(
            next_link(&h).unwrap(),
            "https://huggingface.co/api/models/a/b/tree/main?recursive=true&cursor=xyz"
        );
        assert!(next_link(&headers(&[("link", "<x>; rel=\"prev\"")])).is_none());
    }

    #[test]
    fn announced_digests_and_ranges_are_read() {
        let sha = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
        let h = headers(&[("x-linked-etag", &format!("\"{sha}\""))]);
        assert_eq!(announced_sha256(&h).unwrap(), sha);
        assert!(announced_sha256(&headers(&[("etag", "\"abc\"")])).is_none());
        let h = headers(&[("content-range", "bytes 100-199/200")]);
        assert_eq!(content_range_start(&h), Some(100));
    }

    #[test]
    fn urls_are_built_from_encoded_segments() {
        let config = PullSection {
            hub_url: "http://127.0.0.1:9/mirror/".into(),
            proxy: String::new(),
            token: String::new(),
            max_download_bytes: 1 << 30,
            free_space_margin_mb: 0,
            connect_timeout_secs: 1,
            stall_timeout_secs: 1,
            retries: 0,
        };
        let hub = Hub::new(&config).unwrap();
        assert_eq!(
            hub.url(&["org", "repo", "resolve", "main", "a b.gguf"])
                .as_str(),
            "http://127.0.0.1:9/mirror/org/repo/resolve/main/a%20b.gguf"
        );
        assert!(hub.same_origin(&Url::parse("http://127.0.0.1:9/other").unwrap()));
        assert!(!hub.same_origin(&Url::parse("http://127.0.0.1:10/").unwrap()));
        assert!(!hub.same_origin(&Url::parse("https://127.0.0.1:9/").unwrap()));
    }
}
