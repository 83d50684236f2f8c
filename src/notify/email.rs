//! Notifications by email: one message per event to every address of
//! `notify.email_to`, through the SMTP relay `notify.smtp_*` (lettre, rustls,
//! STARTTLS or implicit TLS verified against the system's roots; plain SMTP only to
//! a relay on this host). The relay's password is read once at start-up from
//! `smtp_password_file`, never from the config file, and never logged.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::Notification;
use crate::config::NotifySection;

/// How long one SMTP read or write may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one whole SMTP conversation may take.
const SEND_DEADLINE: Duration = Duration::from_secs(60);

/// The ways to reach the relay (`smtp_security`).
pub const SECURITY: &[&str] = &["starttls", "tls", "none"];

/// Whether `host` is this machine (the only place plain SMTP may go).
pub fn is_local(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `text` is an address lettre accepts (`ops@example.com` or
/// `Ops <ops@example.com>`).
pub fn valid_mailbox(text: &str) -> bool {
    text.parse::<Mailbox>().is_ok()
}

/// A configured relay and its recipients.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// The relay's host name, which is all that is shown or audited.
    pub host: String,
}

/// Why a message was not sent.
#[derive(Debug)]
pub struct SendError {
    /// The relay's reply code, when it answered.
    pub code: Option<u16>,
    /// A retry cannot help (a 5xx reply: bad recipient, refused credentials…).
    pub permanent: bool,
}

impl Mailer {
    /// The mailer `section` describes, or `None` when it names no recipients. Errors
    /// (an unreadable password file, an address that does not parse) are for the
    /// person starting the daemon; the config checks have caught the rest.
    pub fn from_config(section: &NotifySection) -> Result<Option<Mailer>, String> {
        if section.email_to.is_empty() {
            return Ok(None);
        }
        let parse = |field: &str, text: &str| {
            text.parse::<Mailbox>()
                .map_err(|_| format!("notify.{field}: `{text}` is not an email address"))
        };
        let from = parse("email_from", &section.email_from)?;
        let to = section
            .email_to
            .iter()
            .map(|t| parse("email_to", t))
            .collect::<Result<Vec<_>, _>>()?;
        let host = section.smtp_host.as_str();
        let builder = match section.smtp_security.as_str() {
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            _ => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                host,
            )),
        }
        .map_err(|_| format!("notify.smtp_host: `{host}` cannot be used for TLS"))?;
        let mut builder = builder.port(section.smtp_port).timeout(Some(SMTP_TIMEOUT));
        if !section.smtp_username.is_empty() {
            let file = &section.smtp_password_file;
            let password = fs_err::read_to_string(file)
                .map_err(|e| format!("notify.smtp_password_file: {e}"))?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            builder =
                builder.credentials(Credentials::new(section.smtp_username.clone(), password));
        }
        Ok(Some(Mailer {
            transport: builder.build(),
            from,
            to,
            host: host.to_string(),
        }))
    }

    /// Sends `n` to every recipient, as one message.
    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let subject = format!("[appliance] {}", n.title);
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let host = hostname();
        let body = format!(
            "{}\n\n{}\n\nevent: {}\nseverity: {}\nat: {}\nhost: {host}\n",
            n.title,
            n.detail,
            n.event,
            serde_json::to_value(n.severity)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            n.at,
        );
        let message = message.body(body).map_err(|_| SendError {
            code: None,
            permanent: true,
        })?;
        // lettre's timeout bounds each socket operation; a relay that accepts a command
        // and never answers it is bounded here.
        match tokio::time::timeout(SEND_DEADLINE, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SendError {
                code: e.status().and_then(|c| c.to_string().parse().ok()),
                permanent: e.is_permanent(),
            }),
            Err(_) => Err(SendError {
                code: None,
                permanent: false,
            }),
        }
    }
}

/// This machine's name, for the message body (which appliance is speaking).
fn hostname() -> String {
    fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_host_is_local() {
        for host in ["localhost", "127.0.0.1", "::1", "[::1]", "127.0.0.2"] {
            assert!(is_local(host), "{host}");
        }
        for host in ["smtp.example.com", "10.0.0.1", "localhost.example.com", ""] {
            assert!(!is_local(host), "{host}");
        }
    }

    #[test]
    fn addresses_are_checked() {
        assert!(valid_mailbox("ops@example.com"));
        assert!(valid_mailbox("Ops Team <ops@example.com>"));
        assert!(!valid_mailbox("ops"));
        assert!(!valid_mailbox("ops@example.com\r\nBcc: x@evil.example"));
    }
}
