//! Notifications: events an administrator should hear about (a failed or stale
//! backup, a disk running full, a worker crashing again and again, a hot GPU, a failed
//! job, login throttling) sent to webhooks, and published on the live event stream.
//!
//! Targets come from `notify.webhooks`: `json:URL` (the event as JSON), `slack:URL`
//! (Slack's incoming-webhook shape, `{"text": …}`), `matrix:URL` (a Matrix
//! webhook bridge taking `{"text", "format", "html"}`); a bare URL is `json`; and from
//! `notify.email_to` with the `notify.smtp_*` relay, one email target for all its
//! recipients (`email`). The same event (kind and key) is not repeated within
//! `notify.min_interval_minutes`. Each
//! delivery is retried (three attempts, growing waits) and audited by target kind and
//! host only: webhook URLs carry secrets and are never logged or shown.

pub mod email;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;

pub use email::Mailer;
pub use watch::{Watched, spawn_watchers};

use crate::store::Store;
use crate::store::accounts::AuditEntry;

/// Every event kind the appliance sends (bounded: they are labels and UI rows).
pub const EVENTS: &[&str] = &[
    "backup_failed",
    "backup_stale",
    "disk_low",
    "worker_crash_loop",
    "gpu_hot",
    "job_failed",
    "login_throttled",
    "certificate_expiring",
    "test",
];

/// How urgent an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

/// One event.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// When (RFC 3339).
    pub at: String,
    /// One of [`EVENTS`].
    pub event: &'static str,
    /// A short title ("Backup failed").
    pub title: String,
    /// What happened and what to do, in words (no secrets, no paths of clients).
    pub detail: String,
    /// How urgent.
    pub severity: Severity,
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `json`, `slack`, `matrix` or `email`.
    pub kind: &'static str,
    /// The webhook's full URL (secret: never logged or shown); empty for email.
    url: String,
    /// The webhook's or the SMTP relay's host, which is all that is shown.
    pub host: String,
}

impl Target {
    /// Parses `kind:URL` (or a bare URL, `json`). `None` when it is not an http(s) URL.
    pub fn parse(text: &str) -> Option<Target> {
        let (kind, url) = match text.split_once(':') {
            Some(("json", rest)) => ("json", rest),
            Some(("slack", rest)) => ("slack", rest),
            Some(("matrix", rest)) => ("matrix", rest),
            _ => ("json", text),
        };
        let parsed = reqwest::Url::parse(url).ok()?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return None;
        }
        Some(Target {
            kind,
            host: parsed.host_str()?.to_string(),
            url: url.to_string(),
        })
    }

    /// What is shown and audited: kind and host.
    pub fn label(&self) -> String {
        format!("{} {}", self.kind, self.host)
    }

    /// The email target (the relay's host).
    fn email(host: &str) -> Target {
        Target {
            kind: "email",
            url: String::new(),
            host: host.to_string(),
        }
    }

    /// The body this target takes.
    fn body(&self, n: &Notification) -> serde_json::Value {
        let line = format!("[appliance] {}: {}", n.title, n.detail);
        match self.kind {
            "slack" => json!({ "text": line }),
            "matrix" => json!({
                "text": line,
                "format": "org.matrix.custom.html",
                "html": format!("<b>{}</b>: {}", html_escape(&n.title), html_escape(&n.detail)),
            }),
            _ => json!({
                "source": "appliance",
                "event": n.event,
                "severity": n.severity,
                "title": n.title,
                "detail": n.detail,
                "at": n.at,
            }),
        }
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The notifier. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    targets: Vec<Target>,
    min_interval: Duration,
    store: Store,
    http: Option<reqwest::Client>,
    mailer: Option<Mailer>,
    last_sent: Mutex<HashMap<String, Instant>>,
    live: broadcast::Sender<Notification>,
    /// Waits between attempts (shortened in tests).
    backoff: Vec<Duration>,
}

/// Attempts per delivery.
const ATTEMPTS: usize = 3;

impl Notifier {
    /// A notifier for `targets` (as configured: `kind:URL`) and the mailer, repeating
    /// an event at most every `min_interval`. Unparseable targets are logged and left out.
    pub fn new(
        targets: &[String],
        mailer: Option<Mailer>,
        min_interval: Duration,
        store: Store,
    ) -> Notifier {
        crate::client::tls_provider();
        let mut parsed: Vec<Target> = targets
            .iter()
            .filter_map(|t| {
                let target = Target::parse(t);
                if target.is_none() {
                    tracing::error!(
                        "a notify.webhooks entry is not kind:http(s)-URL; it is ignored"
                    );
                }
                target
            })
            .collect();
        if let Some(mailer) = &mailer {
            parsed.push(Target::email(&mailer.host));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .user_agent(concat!(
                "appliance/",
                env!("CARGO_PKG_VERSION"),
                " (notifications)"
            ))
            .build()
            .map_err(|e| {
                // E.g. no CA certificates on the system: notifications cannot be sent,
                // but the daemon runs (each delivery is then audited as failed).
                tracing::error!(error = %e, "the notification HTTP client could not be built");
            })
            .ok();
        Notifier {
            inner: Arc::new(Inner {
                targets: parsed,
                min_interval,
                store,
                http,
                mailer,
                last_sent: Mutex::new(HashMap::new()),
                live: broadcast::channel(64).0,
                backoff: vec![Duration::from_secs(2), Duration::from_secs(10)],
            }),
        }
    }

    /// The same notifier with short retry waits (tests).
    pub fn with_backoff(self, backoff: Vec<Duration>) -> Notifier {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| panic!("notifier in use"));
        Notifier {
            inner: Arc::new(Inner { backoff, ..inner }),
        }
    }

    /// The configured targets.
    pub fn targets(&self) -> &[Target] {
        &self.inner.targets
    }

    /// The repeat interval.
    pub fn min_interval(&self) -> Duration {
        self.inner.min_interval
    }

    /// The live feed (for `/api/v1/events`).
    pub fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.inner.live.subscribe()
    }

    /// Sends an event unless the same `event`+`key` was sent within the interval
    /// (tests always go). Returns the number of deliveries queued.
    pub fn notify(
        &self,
        event: &'static str,
        key: &str,
        severity: Severity,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> usize {
        if event != "test" {
            let mut last = self.inner.last_sent.lock();
            let id = format!("{event}:{key}");
            if last
                .get(&id)
                .is_some_and(|at| at.elapsed() < self.inner.min_interval)
            {
                return 0;
            }
            last.insert(id, Instant::now());
        }
        let notification = Notification {
            at: jiff::Timestamp::now().to_string(),
            event,
            title: title.into(),
            detail: detail.into(),
            severity,
        };
        tracing::warn!(event, title = %notification.title, detail = %notification.detail, "notification");
        let _ = self.inner.live.send(notification.clone());
        for target in self.inner.targets.clone() {
            let (inner, notification) = (self.inner.clone(), notification.clone());
            tokio::spawn(async move { deliver(&inner, &target, &notification).await });
        }
        self.inner.targets.len()
    }
}

/// One attempt's outcome: the reply code (HTTP or SMTP) when there was one, and
/// whether a retry cannot help.
enum Attempt {
    Sent(Option<u16>),
    Failed {
        status: Option<u16>,
        permanent: bool,
    },
}

/// One attempt at one target.
async fn attempt(inner: &Inner, target: &Target, n: &Notification) -> Attempt {
    if target.kind == "email" {
        let Some(mailer) = &inner.mailer else {
            return Attempt::Failed {
                status: None,
                permanent: true,
            };
        };
        return match mailer.send(n).await {
            Ok(()) => Attempt::Sent(None),
            Err(e) => Attempt::Failed {
                status: e.code,
                permanent: e.permanent,
            },
        };
    }
    let Some(http) = &inner.http else {
        return Attempt::Failed {
            status: None,
            permanent: true,
        };
    };
    match http.post(&target.url).json(&target.body(n)).send().await {
        Ok(response) if response.status().is_success() => {
            Attempt::Sent(Some(response.status().as_u16()))
        }
        // A client error will not change on a retry.
        Ok(response) => Attempt::Failed {
            status: Some(response.status().as_u16()),
            permanent: response.status().is_client_error() && response.status().as_u16() != 429,
        },
        Err(_) => Attempt::Failed {
            status: None,
            permanent: false,
        },
    }
}

/// Sends one notification to one target, retrying, then audits the outcome.
async fn deliver(inner: &Inner, target: &Target, n: &Notification) {
    let mut status = None;
    let mut attempts = 0;
    let mut success = false;
    for tried in 0..ATTEMPTS {
        attempts = tried + 1;
        match attempt(inner, target, n).await {
            Attempt::Sent(code) => {
                status = code;
                success = true;
                break;
            }
            Attempt::Failed {
                status: code,
                permanent,
            } => {
                status = code;
                if permanent {
                    break;
                }
            }
        }
        if let Some(wait) = inner.backoff.get(tried) {
            tokio::time::sleep(*wait).await;
        }
    }
    if !success {
        tracing::error!(target = %target.label(), event = n.event, ?status, attempts, "a notification could not be delivered");
    }
    let entry = AuditEntry {
        id: 0,
        at: jiff::Timestamp::now().to_string(),
        actor: None,
        action: if success {
            "notification.sent"
        } else {
            "notification.failed"
        }
        .into(),
        target: Some(target.label()),
        ip: None,
        success,
        detail: json!({
            "event": n.event,
            "title": n.title,
            "attempts": attempts,
            "status": status,
        }),
    };
    if let Err(e) = inner.store.audit(entry).await {
        tracing::warn!(error = %e, "could not audit a notification");
    }
}

#[cfg(test)]
mod tests;
