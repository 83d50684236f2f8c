//! The checks on a configuration that go beyond its types: ranges and relationships
//! between settings, each naming the offending key.

use super::{Config, parse_keep_alive, split_peer_user};

impl Config {
    /// Checks that go beyond the types: ranges and relationships.
    /// Returns the offending key and what was expected.
    pub(super) fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.server.shutdown_grace_secs > 3600 {
            return Err((
                "server.shutdown_grace_secs",
                "a number of seconds from 0 to 3600",
            ));
        }
        if self.server.max_json_body_bytes < 1024 {
            return Err(("server.max_json_body_bytes", "at least 1024 bytes"));
        }
        if self.server.cors_origins.iter().any(|o| {
            !(o.starts_with("http://") || o.starts_with("https://"))
                || o.ends_with('/')
                || axum::http::HeaderValue::from_str(o).is_err()
        }) {
            return Err((
                "server.cors_origins",
                "origins such as \"https://webui.example\" (scheme and host, no path)",
            ));
        }
        if self.server.max_inference_body_bytes < self.server.max_json_body_bytes {
            return Err((
                "server.max_inference_body_bytes",
                "at least server.max_json_body_bytes",
            ));
        }
        if self.log.retention_days == 0 {
            return Err(("log.retention_days", "at least 1"));
        }
        if !(1..=32).contains(&self.store.readers) {
            return Err(("store.readers", "a number from 1 to 32"));
        }
        if !(1..=64).contains(&self.engine.slots) {
            return Err(("engine.slots", "a number from 1 to 64"));
        }
        if self.engine.queue > 4096 {
            return Err(("engine.queue", "a number from 0 to 4096"));
        }
        if !(128..=1_048_576).contains(&self.engine.ctx_per_slot) {
            return Err((
                "engine.ctx_per_slot",
                "a number of tokens from 128 to 1048576",
            ));
        }
        if self.engine.gpu_layers < -1 || self.engine.gpu_layers > 10_000 {
            return Err((
                "engine.gpu_layers",
                "-1 (as many as fit), 0 (CPU) or a layer count",
            ));
        }
        if self.gpu.reserve_mb > 1 << 24 {
            return Err(("gpu.reserve_mb", "a number of MiB up to 16777216"));
        }
        if self.gpu.budget_mb > 1 << 24 {
            return Err((
                "gpu.budget_mb",
                "a number of MiB up to 16777216 (0: no cap)",
            ));
        }
        if self.notify.webhooks.len() > 16
            || self
                .notify
                .webhooks
                .iter()
                .any(|w| crate::notify::Target::parse(w).is_none())
        {
            return Err((
                "notify.webhooks",
                "at most 16 entries such as \"slack:https://hooks.slack.com/…\" (kind json, slack or matrix, then an http(s) URL)",
            ));
        }
        if !(1..=10_080).contains(&self.notify.min_interval_minutes) {
            return Err(("notify.min_interval_minutes", "minutes from 1 to 10080"));
        }
        if !(40..=120).contains(&self.notify.gpu_temperature_c) {
            return Err(("notify.gpu_temperature_c", "°C from 40 to 120"));
        }
        self.check_email()?;
        if self.backup.schedule_hours > 24 * 365 {
            return Err(("backup.schedule_hours", "hours from 0 (off) to 8760"));
        }
        if !(1..=1000).contains(&self.backup.keep) {
            return Err(("backup.keep", "a number from 1 to 1000"));
        }
        if !(1..=1024).contains(&self.gpu.max_queued_loads) {
            return Err(("gpu.max_queued_loads", "a number from 1 to 1024"));
        }
        if !(1..=64).contains(&self.engine.max_loaded_models) {
            return Err(("engine.max_loaded_models", "a number from 1 to 64"));
        }
        if !matches!(
            parse_keep_alive(&self.engine.user_max_keep_alive),
            Some(Some(_))
        ) {
            return Err((
                "engine.user_max_keep_alive",
                "a duration such as \"1h\" (not negative)",
            ));
        }
        if !(1024..=1 << 30).contains(&self.engine.max_prompt_bytes) {
            return Err((
                "engine.max_prompt_bytes",
                "a number of bytes from 1024 to 1073741824",
            ));
        }
        if !(1024..=1 << 40).contains(&self.documents.max_file_bytes) {
            return Err((
                "documents.max_file_bytes",
                "a number of bytes from 1024 to 2^40",
            ));
        }
        if !(16..=400).contains(&self.documents.chunk_tokens)
            || self.documents.chunk_overlap >= self.documents.chunk_tokens / 2
        {
            return Err((
                "documents.chunk_tokens",
                "a number from 16 to 400, more than twice documents.chunk_overlap",
            ));
        }
        if !(64..=65_536).contains(&self.documents.extract_memory_mb) {
            return Err((
                "documents.extract_memory_mb",
                "a number of MiB from 64 to 65536",
            ));
        }
        if !(1..=86_400).contains(&self.documents.extract_timeout_secs)
            || !(1..=3600).contains(&self.documents.url_timeout_secs)
        {
            return Err((
                "documents.extract_timeout_secs",
                "1 to 86400 seconds (and documents.url_timeout_secs 1 to 3600)",
            ));
        }
        if !(1024..=1 << 34).contains(&self.documents.max_url_bytes) {
            return Err((
                "documents.max_url_bytes",
                "a number of bytes from 1024 to 2^34",
            ));
        }
        if !(-1.0..=1.0).contains(&self.documents.min_score) {
            return Err(("documents.min_score", "a similarity from -1 to 1"));
        }
        if !(1..=50).contains(&self.documents.context_chunks) {
            return Err(("documents.context_chunks", "a number from 1 to 50"));
        }
        if !(1024..=1 << 34).contains(&self.speech.max_file_bytes) {
            return Err((
                "speech.max_file_bytes",
                "a number of bytes from 1024 to 2^34",
            ));
        }
        if !(1..=86_400).contains(&self.speech.max_audio_secs) {
            return Err((
                "speech.max_audio_secs",
                "a number of seconds from 1 to 86400",
            ));
        }
        if self.speech.parallel > 64 || self.speech.threads > 256 {
            return Err((
                "speech.parallel",
                "at most 64 (and speech.threads at most 256)",
            ));
        }
        if !(1..=16).contains(&self.speech.beam_size) {
            return Err(("speech.beam_size", "a number from 1 to 16"));
        }
        if !(1..=86_400).contains(&self.speech.job_threshold_secs) {
            return Err((
                "speech.job_threshold_secs",
                "a number of seconds from 1 to 86400",
            ));
        }
        if !(0.1..=100.0).contains(&self.speech.max_realtime_factor) {
            return Err(("speech.max_realtime_factor", "a number from 0.1 to 100"));
        }
        if !(1..=64).contains(&self.jobs.concurrency) {
            return Err(("jobs.concurrency", "a number from 1 to 64"));
        }
        if !(1..=3600).contains(&self.jobs.retry_base_secs) {
            return Err(("jobs.retry_base_secs", "a number of seconds from 1 to 3600"));
        }
        if !(1..=3600).contains(&self.server.header_timeout_secs) {
            return Err((
                "server.header_timeout_secs",
                "a number of seconds from 1 to 3600",
            ));
        }
        if !(1..=3600).contains(&self.server.body_timeout_secs) {
            return Err((
                "server.body_timeout_secs",
                "a number of seconds from 1 to 3600",
            ));
        }
        if self
            .server
            .peer_users
            .iter()
            .any(|entry| split_peer_user(entry).is_none())
        {
            return Err((
                "server.peer_users",
                "entries such as \"alice\" or \"alice=bob\" (Unix user = appliance user)",
            ));
        }
        if self
            .server
            .unix_socket_group
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ':')
        {
            return Err(("server.unix_socket_group", "a group name, or empty"));
        }
        if self.server.max_connections == 0 || self.server.max_connections_per_address == 0 {
            return Err((
                "server.max_connections",
                "at least 1 (and server.max_connections_per_address at least 1)",
            ));
        }
        if !(1..=64).contains(&self.auth.max_concurrent_hashes) {
            return Err(("auth.max_concurrent_hashes", "a number from 1 to 64"));
        }
        if self.auth.audit_retention_days == 0 {
            return Err(("auth.audit_retention_days", "at least 1"));
        }
        if parse_keep_alive(&self.engine.keep_alive).is_none() {
            return Err((
                "engine.keep_alive",
                "a duration such as \"5m\", \"30s\", \"0\" or \"-1\"",
            ));
        }
        if self.tls.cert.as_os_str().is_empty() != self.tls.key.as_os_str().is_empty() {
            return Err(("tls.key", "both tls.cert and tls.key, or neither"));
        }
        if !self.auth.enabled && !self.server.bind.is_loopback() {
            return Err((
                "auth.enabled",
                "true while server.bind is not a loopback address (the daemon refuses to serve a network without authentication)",
            ));
        }
        if !(1..=24 * 365).contains(&self.auth.session_hours) {
            return Err(("auth.session_hours", "a number of hours from 1 to 8760"));
        }
        if self.engine.request_timeout_secs == 0 {
            return Err(("engine.request_timeout_secs", "at least 1 second"));
        }
        if self.engine.load_timeout_secs == 0 {
            return Err(("engine.load_timeout_secs", "at least 1 second"));
        }
        if !valid_http_url(&self.pull.hub_url) {
            return Err((
                "pull.hub_url",
                "an http:// or https:// URL such as \"https://huggingface.co\"",
            ));
        }
        if !self.pull.proxy.is_empty() && !valid_http_url(&self.pull.proxy) {
            return Err((
                "pull.proxy",
                "empty, or an http:// or https:// URL such as \"http://proxy.internal:3128\"",
            ));
        }
        if self.pull.token.len() > 4096 || self.pull.token.chars().any(|c| !c.is_ascii_graphic()) {
            return Err((
                "pull.token",
                "a token of at most 4096 printable characters without spaces",
            ));
        }
        if !(1 << 20..=1 << 44).contains(&self.pull.max_download_bytes) {
            return Err((
                "pull.max_download_bytes",
                "a number of bytes from 2^20 to 2^44",
            ));
        }
        if self.pull.free_space_margin_mb > 1 << 20 {
            return Err((
                "pull.free_space_margin_mb",
                "a number of MiB from 0 to 1048576",
            ));
        }
        if !(1..=300).contains(&self.pull.connect_timeout_secs)
            || !(1..=3600).contains(&self.pull.stall_timeout_secs)
        {
            return Err((
                "pull.connect_timeout_secs",
                "1 to 300 seconds (and pull.stall_timeout_secs 1 to 3600)",
            ));
        }
        if self.pull.retries > 100 {
            return Err(("pull.retries", "a number from 0 to 100"));
        }
        if self.log.level.trim().is_empty() {
            return Err(("log.level", "a filter such as \"info\""));
        }
        Ok(())
    }
}

impl Config {
    /// Checks the email settings of `[notify]` (only when it names recipients).
    fn check_email(&self) -> Result<(), (&'static str, &'static str)> {
        let e = &self.notify;
        if e.email_to.is_empty() {
            return Ok(());
        }
        use crate::notify::email::{SECURITY, is_local, valid_mailbox};
        if e.email_to.len() > 16 || !e.email_to.iter().all(|t| valid_mailbox(t)) {
            return Err((
                "notify.email_to",
                "at most 16 addresses such as \"ops@example.com\"",
            ));
        }
        if !valid_mailbox(&e.email_from) {
            return Err((
                "notify.email_from",
                "an address such as \"appliance@example.com\"",
            ));
        }
        let host = e.smtp_host.as_str();
        let dns_name = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !(dns_name || host.parse::<std::net::IpAddr>().is_ok()) {
            return Err(("notify.smtp_host", "the relay's host name or IP address"));
        }
        if e.smtp_port == 0 {
            return Err(("notify.smtp_port", "a port from 1 to 65535"));
        }
        if !SECURITY.contains(&e.smtp_security.as_str()) {
            return Err(("notify.smtp_security", "starttls, tls or none"));
        }
        if e.smtp_security == "none" && !is_local(&e.smtp_host) {
            return Err((
                "notify.smtp_security",
                "starttls or tls: plain SMTP (none) is only for a relay on this host",
            ));
        }
        if e.smtp_username.is_empty() != e.smtp_password_file.as_os_str().is_empty() {
            return Err((
                "notify.smtp_password_file",
                "a password file together with smtp_username (both or neither)",
            ));
        }
        Ok(())
    }

    /// Checks every `[models."name"]` table like the `[engine]` keys it overrides.
    pub(super) fn validate_models(&self) -> Result<(), String> {
        for (name, m) in &self.models {
            let bad = |key: &str, expected: &str| {
                Err(format!("models.\"{name}\".{key}: expected {expected}"))
            };
            if name.is_empty() || name.len() > 200 {
                return bad("(name)", "a model name of 1 to 200 characters");
            }
            if m.gpu_layers.is_some_and(|n| !(-1..=10_000).contains(&n)) {
                return bad(
                    "gpu_layers",
                    "-1 (as many as fit), 0 (CPU) or a layer count",
                );
            }
            if m.slots.is_some_and(|n| !(1..=64).contains(&n)) {
                return bad("slots", "a number from 1 to 64");
            }
            if m.ctx_per_slot
                .is_some_and(|n| !(128..=1_048_576).contains(&n))
            {
                return bad("ctx_per_slot", "a number of tokens from 128 to 1048576");
            }
            if m.keep_alive
                .as_deref()
                .is_some_and(|k| parse_keep_alive(k).is_none())
            {
                return bad("keep_alive", "a duration such as \"5m\", \"0\" or \"-1\"");
            }
        }
        Ok(())
    }
}

/// Whether `text` is an absolute `http://` or `https://` URL with a host.
fn valid_http_url(text: &str) -> bool {
    reqwest::Url::parse(text).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}
