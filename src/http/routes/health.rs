//! Liveness, readiness and metrics endpoints (for systemd, load balancers, Prometheus).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::{self, AppState};
use crate::engine::GpuView;
use crate::gpu::GpuSnapshot;
use crate::telemetry::{self, Gauge};

/// `GET /healthz`: 200 while the process runs and its runtime answers.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when every check passes, else 503 listing the failing ones.
/// Anyone sees each check's name and status; only administrators see the details
/// (paths, free space, hints).
pub async fn readyz(
    State(state): State<AppState>,
    principal: Option<axum::Extension<crate::auth::Principal>>,
) -> Response {
    let checks = state.readiness().await;
    let ready = app::is_ready(&checks);
    let detailed = principal.is_some_and(|p| p.is_admin());
    let shown: Vec<serde_json::Value> = checks
        .iter()
        .map(|c| {
            if detailed {
                json!(c)
            } else {
                json!({"name": c.name, "status": c.status})
            }
        })
        .collect();
    let failing: Vec<_> = shown
        .iter()
        .filter(|c| c["status"] == "fail")
        .cloned()
        .collect();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": shown,
        "failing": failing,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Per-GPU gauges (labels bounded: one set per device, throttle reasons from a fixed
/// list) and the scheduler's budget and queue.
fn gpu_gauges(snapshot: &GpuSnapshot, view: Option<&GpuView>) -> Vec<Gauge> {
    let label = |v: &str| v.replace(['"', '\\', '\n'], "_");
    let per_device = |value: &dyn Fn(&crate::gpu::GpuDevice) -> Option<f64>| -> Vec<(String, f64)> {
        snapshot
            .devices
            .iter()
            .filter_map(|d| value(d).map(|v| (format!("gpu=\"{}\"", d.index), v)))
            .collect()
    };
    let mut ecc = Vec::new();
    let mut throttled = Vec::new();
    for d in &snapshot.devices {
        for (kind, count) in [
            ("corrected", d.ecc_corrected),
            ("uncorrected", d.ecc_uncorrected),
        ] {
            if let Some(n) = count {
                ecc.push((format!("gpu=\"{}\",type=\"{kind}\"", d.index), n as f64));
            }
        }
        for reason in crate::gpu::THROTTLE_REASONS {
            let active = d.throttle_reasons.contains(reason);
            throttled.push((
                format!("gpu=\"{}\",reason=\"{reason}\"", d.index),
                if active { 1.0 } else { 0.0 },
            ));
        }
    }
    let budget = view.map(|v| &v.budget);
    let mut gauges = vec![
        Gauge {
            name: "appliance_gpu_available",
            help: "1 when the NVIDIA driver answers and lists at least one GPU, else 0.",
            samples: vec![(
                String::new(),
                if snapshot.has_devices() { 1.0 } else { 0.0 },
            )],
        },
        Gauge {
            name: "appliance_gpu_info",
            help: "One sample per GPU naming it; the value is always 1.",
            samples: snapshot
                .devices
                .iter()
                .map(|d| {
                    (
                        format!(
                            "gpu=\"{}\",name=\"{}\",uuid=\"{}\",driver=\"{}\"",
                            d.index,
                            label(&d.name),
                            label(&d.uuid),
                            label(snapshot.driver_version.as_deref().unwrap_or(""))
                        ),
                        1.0,
                    )
                })
                .collect(),
        },
        Gauge {
            name: "appliance_gpu_memory_total_bytes",
            help: "Installed GPU memory.",
            samples: per_device(&|d| Some(d.memory_total_bytes as f64)),
        },
        Gauge {
            name: "appliance_gpu_memory_used_bytes",
            help: "GPU memory in use by any process.",
            samples: per_device(&|d| Some(d.memory_used_bytes as f64)),
        },
        Gauge {
            name: "appliance_gpu_memory_free_bytes",
            help: "GPU memory free.",
            samples: per_device(&|d| Some(d.memory_free_bytes as f64)),
        },
        Gauge {
            name: "appliance_gpu_utilization_percent",
            help: "GPU compute utilisation over the driver's last sample period.",
            samples: per_device(&|d| d.utilization_percent.map(f64::from)),
        },
        Gauge {
            name: "appliance_gpu_temperature_celsius",
            help: "GPU die temperature.",
            samples: per_device(&|d| d.temperature_c.map(f64::from)),
        },
        Gauge {
            name: "appliance_gpu_power_watts",
            help: "GPU power draw.",
            samples: per_device(&|d| d.power_w),
        },
        Gauge {
            name: "appliance_gpu_ecc_errors",
            help: "ECC errors since the driver loaded, by type (corrected, uncorrected).",
            samples: ecc,
        },
        Gauge {
            name: "appliance_gpu_throttled",
            help: "1 while a clock throttle reason is active, by reason.",
            samples: throttled,
        },
        Gauge {
            name: "appliance_vram_reserve_bytes",
            help: "GPU memory the scheduler leaves free for others (gpu.reserve_mb).",
            samples: budget
                .map(|b| vec![(String::new(), b.reserve_bytes as f64)])
                .unwrap_or_default(),
        },
        Gauge {
            name: "appliance_vram_committed_bytes",
            help: "GPU memory the daemon's models hold (measured where known, else estimated).",
            samples: budget
                .map(|b| vec![(String::new(), b.committed_bytes as f64)])
                .unwrap_or_default(),
        },
        Gauge {
            name: "appliance_vram_budget_bytes",
            help: "GPU memory the scheduler may use in total now: what its models hold plus what it may still place.",
            samples: budget
                .and_then(|b| b.available_bytes.map(|a| a + b.committed_bytes))
                .map(|v| vec![(String::new(), v as f64)])
                .unwrap_or_default(),
        },
        Gauge {
            name: "appliance_scheduler_queue_depth",
            help: "Model loads waiting for GPU memory or a free place.",
            samples: vec![(String::new(), view.map_or(0, |v| v.queue.len()) as f64)],
        },
    ];
    gauges.retain(|g| !g.samples.is_empty());
    gauges
}

/// `GET /metrics`: Prometheus text exposition format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let process = tokio::task::spawn_blocking(telemetry::process_stats)
        .await
        .unwrap_or_default();
    let loaded = state.engine.loaded().await;
    let per_model = |value: fn(&crate::engine::LoadedModel) -> f64| -> Vec<(String, f64)> {
        loaded
            .iter()
            .map(|m| {
                let name = m.name.replace(['"', '\\', '\n'], "_");
                let kind = match m.kind {
                    crate::engine::ModelKind::Chat => "chat",
                    crate::engine::ModelKind::Embedding => "embedding",
                    crate::engine::ModelKind::Speech => "speech",
                };
                (format!("model=\"{name}\",kind=\"{kind}\""), value(m))
            })
            .collect()
    };
    let jobs: Vec<(String, f64)> = state
        .store
        .job_counts()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, job_state, _)| matches!(job_state.as_str(), "queued" | "running"))
        .map(|(kind, job_state, n)| {
            let kind = kind.replace(['"', '\\', '\n'], "_");
            (format!("kind=\"{kind}\",state=\"{job_state}\""), n as f64)
        })
        .collect();
    let view = state.engine.gpu_view().await;
    let mut gauges = vec![
        Gauge {
            name: "appliance_jobs",
            help: "Background jobs queued or running, by kind and state (the queue depth).",
            samples: jobs,
        },
        Gauge {
            name: "appliance_llm_loaded_models",
            help: "Models loaded in worker processes (chat, embedding and speech).",
            samples: vec![(String::new(), loaded.len() as f64)],
        },
        Gauge {
            name: "appliance_llm_requests_running",
            help: "Requests running in a worker (generations holding a slot, embeddings, transcriptions), by model and kind.",
            samples: per_model(|m| m.running as f64),
        },
        Gauge {
            name: "appliance_llm_requests_waiting",
            help: "Admitted requests waiting for a place in their worker, by model and kind.",
            samples: per_model(|m| m.waiting as f64),
        },
        Gauge {
            name: "appliance_llm_slots",
            help: "Requests a loaded model runs at once (chat slots, speech states), by model and kind.",
            samples: per_model(|m| m.slots as f64),
        },
        Gauge {
            name: "appliance_model_vram_bytes",
            help: "GPU memory a loaded model holds (measured when the driver tells, else estimated), by model and kind.",
            samples: per_model(|m| m.vram_bytes as f64),
        },
    ];
    gauges.extend(gpu_gauges(&state.gpu.latest(), view.as_ref()));
    if state.config.tls_enabled() {
        let cert = state.config.tls.cert.clone();
        let expiry = tokio::task::spawn_blocking(move || crate::health::certificate_expiry(&cert))
            .await
            .ok()
            .and_then(Result::ok);
        if let Some(at) = expiry {
            gauges.push(Gauge {
                name: "appliance_tls_certificate_expiry_timestamp_seconds",
                help: "When the daemon's TLS certificate expires (Unix seconds).",
                samples: vec![(String::new(), at as f64)],
            });
        }
    }
    let dir = state.config.paths.data_dir.clone();
    let disk = tokio::task::spawn_blocking(move || {
        rustix::fs::statvfs(&dir).ok().map(|s| {
            (
                s.f_bavail.saturating_mul(s.f_frsize),
                s.f_blocks.saturating_mul(s.f_frsize),
            )
        })
    })
    .await
    .ok()
    .flatten();
    if let Some((free, total)) = disk {
        gauges.push(Gauge {
            name: "appliance_data_disk_free_bytes",
            help: "Free space on the data dir's file system.",
            samples: vec![(String::new(), free as f64)],
        });
        gauges.push(Gauge {
            name: "appliance_data_disk_total_bytes",
            help: "Size of the data dir's file system.",
            samples: vec![(String::new(), total as f64)],
        });
    }
    let newest = state.backups.newest().await;
    let last = newest
        .as_ref()
        .and_then(|b| b.manifest.created_at.parse::<jiff::Timestamp>().ok());
    gauges.push(Gauge {
        name: "appliance_backup_last_success_timestamp_seconds",
        help: "When the newest good backup archive was made (Unix seconds; 0: none yet).",
        samples: vec![(String::new(), last.map_or(0.0, |t| t.as_second() as f64))],
    });
    if let Some(b) = &newest {
        gauges.push(Gauge {
            name: "appliance_backup_last_duration_seconds",
            help: "How long making the newest backup archive took.",
            samples: vec![(String::new(), b.manifest.duration_ms as f64 / 1000.0)],
        });
        gauges.push(Gauge {
            name: "appliance_backup_last_size_bytes",
            help: "Size of the newest backup archive.",
            samples: vec![(String::new(), b.bytes as f64)],
        });
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&process, &gauges),
    )
        .into_response()
}
