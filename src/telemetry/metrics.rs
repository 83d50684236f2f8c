//! A small Prometheus registry: the appliance's own counters and histograms, rendered
//! in the text exposition format (0.0.4) that `promtool check metrics` validates.
//!
//! Label values are bounded by construction: routes are axum's matched route templates
//! (or `unmatched`), database operations are `&'static str` names from the store.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use super::ProcessStats;

/// Bucket bounds (seconds) for HTTP request durations.
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Bucket bounds (seconds) for job attempts.
const JOB_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0];
/// Bucket bounds for the real-time factor of transcriptions (processing / audio time).
const RTF_BUCKETS: &[f64] = &[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];
/// Bucket bounds (seconds) for database calls.
const DB_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        // Buckets are cumulative at render time; store per-bucket counts here.
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct State {
    http_requests: BTreeMap<(String, String, u16), u64>,
    http_durations: BTreeMap<String, Histogram>,
    http_in_flight: i64,
    db_calls: BTreeMap<&'static str, Histogram>,
    llm_requests: BTreeMap<(String, &'static str), u64>,
    llm_prompt_tokens: BTreeMap<String, u64>,
    llm_cached_tokens: BTreeMap<String, u64>,
    llm_generated_tokens: BTreeMap<String, u64>,
    job_attempts: BTreeMap<(String, &'static str), u64>,
    job_durations: BTreeMap<String, Histogram>,
    speech_requests: BTreeMap<(String, &'static str), u64>,
    speech_audio_seconds: BTreeMap<String, f64>,
    speech_realtime_factor: BTreeMap<String, Histogram>,
    scheduler_evictions: BTreeMap<&'static str, u64>,
    scheduler_load_retries: u64,
    worker_crashes: BTreeMap<String, u64>,
}

/// A gauge whose samples are read at scrape time (e.g. busy slots per model).
pub struct Gauge {
    /// Metric name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// `(label set without braces, value)` pairs.
    pub samples: Vec<(String, f64)>,
}

/// The metrics registry. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
    started: Instant,
    version: &'static str,
}

impl Metrics {
    /// A new, empty registry for a process of `version`.
    pub fn new(version: &'static str) -> Self {
        Self {
            state: Arc::default(),
            started: Instant::now(),
            version,
        }
    }

    /// The scheduler unloaded an idle model to make room (`reason`: `vram` or
    /// `max_loaded_models`).
    pub fn scheduler_eviction(&self, reason: &'static str) {
        *self
            .state
            .lock()
            .scheduler_evictions
            .entry(reason)
            .or_default() += 1;
    }

    /// A worker process exited without being asked to.
    pub fn worker_crash(&self, model: &str) {
        *self
            .state
            .lock()
            .worker_crashes
            .entry(model.to_string())
            .or_default() += 1;
    }

    /// Crashes so far, by model.
    pub fn worker_crashes(&self) -> BTreeMap<String, u64> {
        self.state.lock().worker_crashes.clone()
    }

    /// A load ran out of GPU memory; the next one offloads fewer layers.
    pub fn scheduler_load_retry(&self) {
        self.state.lock().scheduler_load_retries += 1;
    }

    /// Time since the registry (i.e. the daemon) started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// A request started.
    pub fn http_started(&self) {
        self.lock().http_in_flight += 1;
    }

    /// A request finished with `status` after `elapsed`.
    pub fn http_finished(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let mut state = self.lock();
        state.http_in_flight -= 1;
        *state
            .http_requests
            .entry((route.to_string(), method.to_string(), status))
            .or_default() += 1;
        state
            .http_durations
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(HTTP_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    /// A database call named `op` ran for `elapsed` on a store thread.
    pub fn db_call(&self, op: &'static str, elapsed: Duration) {
        self.lock()
            .db_calls
            .entry(op)
            .or_insert_with(|| Histogram::new(DB_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    /// A generation ended with `outcome` (`stop`, `length`, `cancelled`, `error`).
    pub fn llm_request(
        &self,
        model: &str,
        outcome: &'static str,
        prompt: u64,
        cached: u64,
        generated: u64,
    ) {
        let mut state = self.lock();
        *state
            .llm_requests
            .entry((model.to_string(), outcome))
            .or_default() += 1;
        *state
            .llm_prompt_tokens
            .entry(model.to_string())
            .or_default() += prompt;
        *state
            .llm_cached_tokens
            .entry(model.to_string())
            .or_default() += cached;
        *state
            .llm_generated_tokens
            .entry(model.to_string())
            .or_default() += generated;
    }

    /// A speech request ended with `outcome` (`done`, `error`, `cancelled`). Finished
    /// ones count their audio and the real-time factor (processing time / audio time).
    pub fn speech_request(
        &self,
        model: &str,
        outcome: &'static str,
        audio_seconds: f64,
        processing: Duration,
    ) {
        let mut state = self.lock();
        *state
            .speech_requests
            .entry((model.to_string(), outcome))
            .or_default() += 1;
        if outcome == "done" && audio_seconds > 0.0 {
            *state
                .speech_audio_seconds
                .entry(model.to_string())
                .or_default() += audio_seconds;
            state
                .speech_realtime_factor
                .entry(model.to_string())
                .or_insert_with(|| Histogram::new(RTF_BUCKETS))
                .observe(processing.as_secs_f64() / audio_seconds);
        }
    }

    /// A job attempt ended with `outcome` (`done`, `failed`, `cancelled`, `retried`).
    pub fn job_finished(&self, kind: &str, outcome: &'static str, elapsed: Duration) {
        let mut state = self.lock();
        *state
            .job_attempts
            .entry((kind.to_string(), outcome))
            .or_default() += 1;
        state
            .job_durations
            .entry(kind.to_string())
            .or_insert_with(|| Histogram::new(JOB_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Renders every metric in the Prometheus text format, with `gauges` read by the
    /// caller at scrape time.
    pub fn render(&self, process: &ProcessStats, gauges: &[Gauge]) -> String {
        let state = self.lock().clone_for_render();
        let mut out = String::with_capacity(4096);
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };

        header(
            &mut out,
            "appliance_build_info",
            "gauge",
            "Build information; the value is always 1.",
        );
        let _ = writeln!(
            out,
            "appliance_build_info{{version=\"{}\"}} 1",
            self.version
        );

        header(
            &mut out,
            "appliance_uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
        );
        let _ = writeln!(
            out,
            "appliance_uptime_seconds {}",
            self.uptime().as_secs_f64()
        );

        header(
            &mut out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        );
        let _ = writeln!(out, "process_cpu_seconds_total {}", process.cpu_seconds);

        header(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {}", process.rss_bytes);

        header(
            &mut out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        );
        let _ = writeln!(
            out,
            "process_start_time_seconds {}",
            process.start_time_seconds
        );

        header(
            &mut out,
            "appliance_http_requests_in_flight",
            "gauge",
            "HTTP requests being served now.",
        );
        let _ = writeln!(
            out,
            "appliance_http_requests_in_flight {}",
            state.http_in_flight
        );

        header(
            &mut out,
            "appliance_http_requests_total",
            "counter",
            "HTTP requests served, by route template, method and status code.",
        );
        for ((route, method, status), count) in &state.http_requests {
            let _ = writeln!(
                out,
                "appliance_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {count}",
                escape(route),
                escape(method)
            );
        }

        header(
            &mut out,
            "appliance_http_request_duration_seconds",
            "histogram",
            "HTTP request duration from arrival to response headers, by route template.",
        );
        for (route, histogram) in &state.http_durations {
            histogram.render(
                &mut out,
                "appliance_http_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }

        header(
            &mut out,
            "appliance_db_query_duration_seconds",
            "histogram",
            "Time database calls spent on a store thread, by operation.",
        );
        for (op, histogram) in &state.db_calls {
            histogram.render(
                &mut out,
                "appliance_db_query_duration_seconds",
                &format!("op=\"{}\"", escape(op)),
            );
        }

        header(
            &mut out,
            "appliance_llm_requests_total",
            "counter",
            "Finished generations by model and outcome.",
        );
        for ((model, outcome), count) in &state.llm_requests {
            let _ = writeln!(
                out,
                "appliance_llm_requests_total{{model=\"{}\",outcome=\"{outcome}\"}} {count}",
                escape(model)
            );
        }
        for (name, help, map) in [
            (
                "appliance_llm_prompt_tokens_total",
                "Prompt tokens of finished generations, by model.",
                &state.llm_prompt_tokens,
            ),
            (
                "appliance_llm_cached_prompt_tokens_total",
                "Prompt tokens reused from the KV cache instead of evaluated, by model.",
                &state.llm_cached_tokens,
            ),
            (
                "appliance_llm_generated_tokens_total",
                "Tokens generated, by model.",
                &state.llm_generated_tokens,
            ),
        ] {
            header(&mut out, name, "counter", help);
            for (model, count) in map {
                let _ = writeln!(out, "{name}{{model=\"{}\"}} {count}", escape(model));
            }
        }
        header(
            &mut out,
            "appliance_job_attempts_total",
            "counter",
            "Ended job attempts, by kind and outcome (done, failed, cancelled, retried).",
        );
        for ((kind, outcome), count) in &state.job_attempts {
            let _ = writeln!(
                out,
                "appliance_job_attempts_total{{kind=\"{}\",outcome=\"{outcome}\"}} {count}",
                escape(kind)
            );
        }
        header(
            &mut out,
            "appliance_job_duration_seconds",
            "histogram",
            "Duration of job attempts, by kind.",
        );
        for (kind, histogram) in &state.job_durations {
            histogram.render(
                &mut out,
                "appliance_job_duration_seconds",
                &format!("kind=\"{}\"", escape(kind)),
            );
        }
        header(
            &mut out,
            "appliance_speech_requests_total",
            "counter",
            "Ended speech-to-text requests, by model and outcome.",
        );
        for ((model, outcome), count) in &state.speech_requests {
            let _ = writeln!(
                out,
                "appliance_speech_requests_total{{model=\"{}\",outcome=\"{outcome}\"}} {count}",
                escape(model)
            );
        }
        header(
            &mut out,
            "appliance_speech_audio_seconds_total",
            "counter",
            "Seconds of audio transcribed, by model.",
        );
        for (model, seconds) in &state.speech_audio_seconds {
            let _ = writeln!(
                out,
                "appliance_speech_audio_seconds_total{{model=\"{}\"}} {seconds}",
                escape(model)
            );
        }
        header(
            &mut out,
            "appliance_speech_realtime_factor",
            "histogram",
            "Processing time divided by audio duration of finished transcriptions, by model.",
        );
        for (model, histogram) in &state.speech_realtime_factor {
            histogram.render(
                &mut out,
                "appliance_speech_realtime_factor",
                &format!("model=\"{}\"", escape(model)),
            );
        }
        header(
            &mut out,
            "appliance_scheduler_evictions_total",
            "counter",
            "Idle models unloaded to make room, by reason (vram or max_loaded_models).",
        );
        for reason in ["vram", "max_loaded_models"] {
            let n = state.scheduler_evictions.get(reason).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "appliance_scheduler_evictions_total{{reason=\"{reason}\"}} {n}"
            );
        }
        header(
            &mut out,
            "appliance_worker_crashes_total",
            "counter",
            "Worker processes that exited without being asked to, by model.",
        );
        for (model, n) in &state.worker_crashes {
            let _ = writeln!(
                out,
                "appliance_worker_crashes_total{{model=\"{}\"}} {n}",
                escape(model)
            );
        }
        header(
            &mut out,
            "appliance_scheduler_load_retries_total",
            "counter",
            "Loads that ran out of GPU memory; the model's next load offloads fewer layers.",
        );
        let _ = writeln!(
            out,
            "appliance_scheduler_load_retries_total {}",
            state.scheduler_load_retries
        );
        for gauge in gauges {
            header(&mut out, gauge.name, "gauge", gauge.help);
            for (labels, value) in &gauge.samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "{} {value}", gauge.name);
                } else {
                    let _ = writeln!(out, "{}{{{labels}}} {value}", gauge.name);
                }
            }
        }
        out
    }
}

impl State {
    /// Copies what rendering needs so the lock is not held while formatting.
    fn clone_for_render(&self) -> State {
        State {
            http_requests: self.http_requests.clone(),
            http_durations: self.http_durations.clone(),
            http_in_flight: self.http_in_flight,
            db_calls: self.db_calls.clone(),
            llm_requests: self.llm_requests.clone(),
            llm_prompt_tokens: self.llm_prompt_tokens.clone(),
            llm_cached_tokens: self.llm_cached_tokens.clone(),
            llm_generated_tokens: self.llm_generated_tokens.clone(),
            job_attempts: self.job_attempts.clone(),
            job_durations: self.job_durations.clone(),
            speech_requests: self.speech_requests.clone(),
            speech_audio_seconds: self.speech_audio_seconds.clone(),
            speech_realtime_factor: self.speech_realtime_factor.clone(),
            scheduler_evictions: self.scheduler_evictions.clone(),
            scheduler_load_retries: self.scheduler_load_retries,
            worker_crashes: self.worker_crashes.clone(),
        }
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_complete() {
        let metrics = Metrics::new("test");
        metrics.http_started();
        metrics.http_finished("/healthz", "GET", 200, Duration::from_millis(3));
        metrics.http_started();
        metrics.http_finished("/healthz", "GET", 200, Duration::from_secs(100));
        let text = metrics.render(&ProcessStats::default(), &[]);
        assert!(text.contains(
            "appliance_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "appliance_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "appliance_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"60\"} 1"
        ));
        assert!(text.contains(
            "appliance_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("appliance_http_requests_in_flight 0"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
