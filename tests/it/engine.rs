//! The engine's supervision and residency, driven through the library API with the
//! scripted `appliance worker fake` (the real binary, real processes, no weights):
//! admission, per-user shares, deadlines, crashes, cancellation, bad starts,
//! keep-alive, graceful and forced unloads, per-model loading and eviction.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance::engine::{
    BudgetConfig, Engine, EngineConfig, EngineError, FinishReason, GenEvent, GenerateRequest,
    Generation, GpuLayers, KeepAlive, KeepAliveRequest, Launch, ModelKind, ModelSpec, Prompt,
    SamplingParams,
};
use appliance::gpu::Gpu;
use appliance::telemetry::Metrics;

use crate::support::bin;

/// A model whose name tells the fake worker how to start: `hang`, `exit`, `garbage`,
/// `old`, `oom`, or `slow-<ms>` (loads for that long); anything else starts at once.
pub(crate) fn model(name: &str) -> ModelSpec {
    ModelSpec {
        name: name.to_string(),
        path: PathBuf::from("/nonexistent/fake.gguf"),
        kind: ModelKind::Chat,
    }
}

pub(crate) fn config() -> EngineConfig {
    EngineConfig {
        slots: 2,
        queue: 2,
        ctx_per_slot: 256,
        threads: 1,
        gpu_layers: GpuLayers::Exactly(0),
        request_timeout: Duration::from_secs(30),
        keep_alive: KeepAlive::For(Duration::from_secs(300)),
        load_timeout: Duration::from_secs(10),
        max_loaded_models: 3,
        max_requests_per_user: 0,
        speech: appliance::engine::SpeechEngineConfig {
            parallel: 1,
            threads: 1,
            beam_size: 1,
            realtime_factor: 2.0,
        },
        budget: BudgetConfig {
            reserve: 0,
            limit: None,
            max_queued_loads: 16,
            offload: false,
            models: Default::default(),
        },
    }
}

fn engine(config: EngineConfig) -> Engine {
    let spawner = |model: &ModelSpec, config: &EngineConfig, _: &Launch| {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.args(["worker", "fake"])
            .args(["--slots", &config.slots.to_string()])
            .args(["--ctx-per-slot", &config.ctx_per_slot.to_string()]);
        match model.name.split_once('-') {
            Some(("slow", ms)) => {
                cmd.args(["--load-ms", ms]);
            }
            _ if ["hang", "exit", "garbage", "old", "oom"].contains(&model.name.as_str()) => {
                cmd.args(["--start", &model.name]);
            }
            _ => {}
        }
        cmd
    };
    Engine::new(config, Arc::new(spawner), Metrics::new("test"), Gpu::none())
}

pub(crate) fn request(name: &str, user: i64, script: &str) -> GenerateRequest {
    GenerateRequest {
        model: model(name),
        user,
        prompt: Prompt::Text(script.to_string()),
        params: SamplingParams::default(),
        keep_alive: None,
    }
}

/// Runs a generation to its end: the text, or the error.
pub(crate) async fn finish(
    mut generation: Generation,
) -> Result<(String, FinishReason), EngineError> {
    let mut text = String::new();
    while let Some(event) = generation.next().await {
        match event? {
            GenEvent::Token(t, _) => text.push_str(&t),
            GenEvent::Done { finish_reason, .. } => return Ok((text, finish_reason)),
            GenEvent::Started { .. } => {}
        }
    }
    panic!("the generation ended without Done or an error")
}

pub(crate) async fn started(generation: &mut Generation) {
    match generation.next().await {
        Some(Ok(GenEvent::Started { .. })) => {}
        other => panic!("expected Started, got {other:?}"),
    }
}

async fn pid_of(engine: &Engine, name: &str) -> Option<u32> {
    engine
        .loaded()
        .await
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| m.pid)
}

/// Waits (bounded) until `check` holds.
pub(crate) async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn generations_stream_and_finish() {
    let engine = engine(config());
    let generation = engine.generate(request("m", 1, "tokens=4")).await.unwrap();
    let (text, reason) = finish(generation).await.unwrap();
    assert_eq!(text, "t0 t1 t2 t3 ");
    assert_eq!(reason, FinishReason::Stop);
    let mut capped = request("m", 1, "tokens=10");
    capped.params.max_tokens = Some(2);
    let (text, reason) = finish(engine.generate(capped).await.unwrap())
        .await
        .unwrap();
    assert_eq!((text.as_str(), reason), ("t0 t1 ", FinishReason::Length));
}

#[tokio::test]
async fn admission_is_bounded_by_slots_plus_queue_then_busy() {
    let mut config = config();
    config.max_requests_per_user = 100;
    let engine = engine(config);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            engine
                .generate(request("m", 1, "tokens=1000 delay_ms=50"))
                .await
                .unwrap(),
        );
    }
    match engine.generate(request("m", 2, "tokens=1")).await {
        Err(EngineError::Busy {
            in_flight, limit, ..
        }) => assert_eq!((in_flight, limit), (4, 4)),
        other => panic!("expected Busy, got {:?}", other.err()),
    }
    let loaded = engine.loaded().await;
    assert_eq!(loaded[0].running + loaded[0].waiting, 4);
    drop(held);
    // Dropping them cancelled them: the places come back.
    let (text, _) = finish(engine.generate(request("m", 2, "tokens=1")).await.unwrap())
        .await
        .unwrap();
    assert_eq!(text, "t0 ");
}

#[tokio::test]
async fn one_user_cannot_take_every_place() {
    // slots 2 + queue 2: one user may hold half (2).
    let engine = engine(config());
    let _a = engine
        .generate(request("m", 7, "tokens=1000 delay_ms=50"))
        .await
        .unwrap();
    let _b = engine
        .generate(request("m", 7, "tokens=1000 delay_ms=50"))
        .await
        .unwrap();
    match engine.generate(request("m", 7, "tokens=1")).await {
        Err(EngineError::UserBusy { limit, .. }) => assert_eq!(limit, 2),
        other => panic!("expected UserBusy, got {:?}", other.err()),
    }
    // Another user is still admitted (not refused) and runs as soon as a slot frees.
    let other = engine.generate(request("m", 8, "tokens=1")).await.unwrap();
    drop(_a);
    let (text, _) = tokio::time::timeout(Duration::from_secs(5), finish(other))
        .await
        .expect("the other user's request ran once a slot freed")
        .unwrap();
    assert_eq!(text, "t0 ");
}

#[tokio::test]
async fn the_deadline_cancels_and_frees_the_slot() {
    let mut config = config();
    config.request_timeout = Duration::from_millis(300);
    let engine = engine(config);
    let started_at = Instant::now();
    let result = finish(
        engine
            .generate(request("m", 1, "tokens=1000 delay_ms=20"))
            .await
            .unwrap(),
    )
    .await;
    assert!(
        matches!(result, Err(EngineError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started_at.elapsed() < Duration::from_secs(5));
    both_slots_answer(&engine).await;
}

/// Both slots of model `m` serve a short request promptly: nothing still occupies them
/// inside the worker.
async fn both_slots_answer(engine: &Engine) {
    let a = engine.generate(request("m", 5, "tokens=1")).await.unwrap();
    let b = engine.generate(request("m", 6, "tokens=1")).await.unwrap();
    let both = async { tokio::join!(finish(a), finish(b)) };
    let (a, b) = tokio::time::timeout(Duration::from_secs(5), both)
        .await
        .expect("a slot is still busy inside the worker");
    a.unwrap();
    b.unwrap();
}

#[tokio::test]
async fn dropping_a_generation_cancels_it_in_the_worker() {
    let engine = engine(config());
    let mut generation = engine
        .generate(request("m", 1, "tokens=100000 delay_ms=5"))
        .await
        .unwrap();
    started(&mut generation).await;
    assert!(matches!(
        generation.next().await,
        Some(Ok(GenEvent::Token(..)))
    ));
    drop(generation);
    both_slots_answer(&engine).await;
}

#[tokio::test]
async fn a_crash_fails_only_that_workers_requests_without_leaking_its_stderr() {
    let engine = engine(config());
    let other = engine
        .generate(request("other", 1, "tokens=30 delay_ms=10"))
        .await
        .unwrap();
    let first_pid = {
        let g = engine.generate(request("m", 1, "tokens=1")).await.unwrap();
        finish(g).await.unwrap();
        pid_of(&engine, "m").await.unwrap()
    };
    let crashing = engine
        .generate(request(
            "m",
            1,
            "tokens=50 delay_ms=5 crash_at=3 stderr=another-tenants-secret",
        ))
        .await
        .unwrap();
    let error = finish(crashing).await.unwrap_err();
    assert!(
        matches!(error, EngineError::EngineCrashed { .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("secret"), "{error}");
    // The other model's worker was not touched.
    let (text, _) = finish(other).await.unwrap();
    assert_eq!(text.split_whitespace().count(), 30);
    // The next request starts a new worker.
    finish(engine.generate(request("m", 1, "tokens=1")).await.unwrap())
        .await
        .unwrap();
    assert_ne!(pid_of(&engine, "m").await.unwrap(), first_pid);
}

#[tokio::test]
async fn workers_that_do_not_start_cleanly_fail_the_load_within_its_deadline() {
    let mut config = config();
    config.load_timeout = Duration::from_millis(800);
    let engine = engine(config);
    for name in ["exit", "hang", "garbage", "old"] {
        let began = Instant::now();
        let error = engine
            .generate(request(name, 1, "tokens=1"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{name} loaded"));
        assert!(
            matches!(error, EngineError::LoadFailed { .. }),
            "{name}: {error:?}"
        );
        assert!(!error.to_string().contains("private-detail"), "{error}");
        assert!(
            began.elapsed() < Duration::from_secs(8),
            "{name} took {:?}",
            began.elapsed()
        );
    }
    // A model that failed to load is not listed, and a good one still loads.
    assert!(engine.loaded().await.is_empty());
    finish(engine.generate(request("m", 1, "tokens=1")).await.unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_slow_load_blocks_neither_other_models_nor_the_listing() {
    let engine = engine(config());
    finish(engine.generate(request("m", 1, "tokens=1")).await.unwrap())
        .await
        .unwrap();
    let slow = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .generate(request("slow-3000", 1, "tokens=1"))
                .await
                .map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let began = Instant::now();
    assert_eq!(engine.loaded().await.len(), 1);
    finish(engine.generate(request("m", 2, "tokens=1")).await.unwrap())
        .await
        .unwrap();
    assert!(
        began.elapsed() < Duration::from_millis(1500),
        "the listing and the other model waited for the load: {:?}",
        began.elapsed()
    );
    slow.await.unwrap().unwrap();
    // Concurrent first requests share one load.
    let engine2 = engine.clone();
    let (a, b) = tokio::join!(
        engine.generate(request("slow-500", 1, "tokens=1")),
        engine2.generate(request("slow-500", 2, "tokens=1"))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    drop((a, b));
    let pids: Vec<_> = engine
        .loaded()
        .await
        .into_iter()
        .filter(|m| m.name == "slow-500")
        .collect();
    assert_eq!(pids.len(), 1);
}

#[tokio::test]
async fn idle_models_unload_after_their_keep_alive_and_users_only_extend_it() {
    let engine = engine(config());
    let mut short = request("m", 1, "tokens=1");
    short.keep_alive = Some(KeepAliveRequest::set(KeepAlive::For(
        Duration::from_millis(200),
    )));
    finish(engine.generate(short).await.unwrap()).await.unwrap();
    eventually("the model is unloaded", async || {
        engine.loaded().await.is_empty()
    })
    .await;

    // An administrator pins it; a user's keep_alive 0 cannot shorten that.
    let mut pin = request("m", 1, "tokens=1");
    pin.keep_alive = Some(KeepAliveRequest::set(KeepAlive::Forever));
    finish(engine.generate(pin).await.unwrap()).await.unwrap();
    let mut user = request("m", 2, "tokens=1");
    user.keep_alive = Some(KeepAliveRequest::extend(KeepAlive::For(Duration::ZERO)));
    finish(engine.generate(user).await.unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let loaded = engine.loaded().await;
    assert_eq!(loaded.len(), 1);
    assert!(loaded[0].pinned && loaded[0].expires_at.is_none());
}

#[tokio::test]
async fn an_unload_waits_for_requests_in_flight_and_a_forced_one_does_not() {
    let engine = engine(config());
    let mut running = engine
        .generate(request("m", 1, "tokens=20 delay_ms=25"))
        .await
        .unwrap();
    started(&mut running).await;
    let unloading = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.unload("m", false).await })
    };
    // The request in flight finishes whole.
    let (text, reason) = finish(running).await.unwrap();
    assert_eq!(
        (text.split_whitespace().count(), reason),
        (20, FinishReason::Stop)
    );
    assert!(unloading.await.unwrap().unwrap(), "it was loaded");
    assert!(engine.loaded().await.is_empty());

    // New requests during a drain wait for it and get a fresh worker.
    let mut busy = engine
        .generate(request("m", 1, "tokens=10 delay_ms=30"))
        .await
        .unwrap();
    started(&mut busy).await;
    let old = pid_of(&engine, "m").await.unwrap();
    let drain = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.unload("m", false).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let g = engine.generate(request("m", 2, "tokens=1")).await?;
            finish(g).await
        })
    };
    finish(busy).await.unwrap();
    drain.await.unwrap().unwrap();
    late.await.unwrap().unwrap();
    assert_ne!(pid_of(&engine, "m").await.unwrap(), old);

    // Forced: the request in flight fails at once.
    let mut doomed = engine
        .generate(request("m", 1, "tokens=1000 delay_ms=20"))
        .await
        .unwrap();
    started(&mut doomed).await;
    assert!(engine.unload("m", true).await.unwrap());
    assert!(finish(doomed).await.is_err());
}

#[tokio::test]
async fn loading_beyond_max_loaded_models_unloads_the_least_recently_used_idle_one() {
    let mut config = config();
    config.max_loaded_models = 2;
    let engine = engine(config);
    for name in ["a", "b"] {
        finish(engine.generate(request(name, 1, "tokens=1")).await.unwrap())
            .await
            .unwrap();
    }
    // Use `a` again so `b` is the least recently used.
    finish(engine.generate(request("a", 1, "tokens=1")).await.unwrap())
        .await
        .unwrap();
    finish(engine.generate(request("c", 1, "tokens=1")).await.unwrap())
        .await
        .unwrap();
    let names: Vec<String> = engine.loaded().await.into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["a", "c"]);

    // With every loaded model busy, a third waits until one is idle.
    let busy_a = engine
        .generate(request("a", 1, "tokens=8 delay_ms=50"))
        .await
        .unwrap();
    let busy_c = engine
        .generate(request("c", 1, "tokens=8 delay_ms=50"))
        .await
        .unwrap();
    let waiting = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let g = engine.generate(request("d", 1, "tokens=1")).await?;
            finish(g).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "d loaded while both models were busy"
    );
    finish(busy_a).await.unwrap();
    finish(busy_c).await.unwrap();
    waiting.await.unwrap().unwrap();
    assert!(engine.loaded().await.iter().any(|m| m.name == "d"));
}

#[tokio::test]
async fn counting_tokens_is_admitted_and_deadlined() {
    let mut config = config();
    config.request_timeout = Duration::from_millis(300);
    let engine = engine(config);
    assert_eq!(
        engine
            .count_tokens(&model("m"), 1, Prompt::Text("one two three".into()))
            .await
            .unwrap(),
        3
    );
    let slow = engine
        .count_tokens(&model("m"), 1, Prompt::Text("count_ms=5000 x".into()))
        .await;
    assert!(matches!(slow, Err(EngineError::Timeout { .. })), "{slow:?}");
    // Counting takes a place like a generation: with every place held, it is refused.
    let mut held = Vec::new();
    for user in 1..=4 {
        held.push(
            engine
                .generate(request("m", user, "tokens=1000 delay_ms=50"))
                .await
                .unwrap(),
        );
    }
    let refused = engine
        .count_tokens(&model("m"), 9, Prompt::Text("x".into()))
        .await;
    assert!(
        matches!(refused, Err(EngineError::Busy { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_model_kept_forever_is_still_unloaded_for_room_as_in_ollama() {
    let mut config = config();
    config.max_loaded_models = 1;
    let engine = engine(config);
    let mut forever = request("kept", 1, "tokens=1");
    forever.keep_alive = Some(KeepAliveRequest::set(KeepAlive::Forever));
    finish(engine.generate(forever).await.unwrap())
        .await
        .unwrap();
    assert!(engine.loaded().await[0].pinned);
    finish(
        engine
            .generate(request("next", 1, "tokens=1"))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let names: Vec<String> = engine.loaded().await.into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["next"]);
}

#[tokio::test]
async fn running_out_of_memory_on_the_cpu_is_a_plain_load_failure() {
    // Without GPU layers, fewer layers cannot help: no out-of-memory retry.
    let engine = engine(config());
    match engine.generate(request("oom", 1, "tokens=1")).await {
        Err(EngineError::LoadFailed { .. }) => {}
        Err(other) => panic!("expected a load failure, got {other:?}"),
        Ok(_) => panic!("expected a load failure, got a generation"),
    }
}
