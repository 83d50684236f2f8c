//! Embeddings on the wire: OpenAI's `POST /v1/embeddings`, Ollama's `POST /api/embed`
//! and its legacy `POST /api/embeddings`. All three resolve an embedding model, bound
//! the input, and call [`crate::engine::Engine::embed`].
//!
//! OpenAI's route never truncates (a text over the model's limit is a 400 naming it);
//! Ollama's `truncate` (default true) cuts over-long texts, as Ollama does.

use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Principal;
use crate::engine::{Embeddings, KeepAliveRequest, ModelKind, ModelSpec};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::LenientJson as Json;
use super::inference;
use super::ollama::OllamaError;

/// Texts one request may embed (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// Looks up an embedding model ("" and "default": `engine.default_embedding_model`) and
/// checks the vector length a client asked for (the model's own only: it cannot shorten).
pub async fn resolve(
    state: &AppState,
    name: &str,
    dimensions: Option<u32>,
) -> Result<ModelSpec, ApiError> {
    let wanted = inference::requested_model(name, &state.config.engine.default_embedding_model)?;
    let registry = state.registry.clone();
    let info = tokio::task::spawn_blocking(move || registry.find_embedder(&wanted))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    if let Some(wanted) = dimensions
        && wanted != info.dimensions
    {
        let have = info.dimensions;
        return Err(ApiError::bad_field(
            "dimensions",
            format!(
                "model `{}` makes {have}-dimensional vectors and cannot shorten them; omit `dimensions` or ask for {have}",
                info.name
            ),
        ));
    }
    Ok(ModelSpec {
        name: info.name,
        path: info.path,
        kind: ModelKind::Embedding,
    })
}

/// The input as OpenAI and Ollama send it: one text or several. Token-id arrays are
/// refused by name rather than misread.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One text.
    One(String),
    /// Several texts, or (refused) token ids.
    Many(Vec<Value>),
}

impl Input {
    fn into_texts(self) -> Result<Vec<String>, ApiError> {
        let texts = match self {
            Input::One(text) => vec![text],
            Input::Many(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text),
                    _ => Err(ApiError::bad_field(
                        "input",
                        "`input` must be a string or an array of strings; token-id inputs are not supported (with LangChain's OpenAIEmbeddings, set check_embedding_ctx_length=False)",
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        if texts.is_empty() {
            return Err(ApiError::bad_field("input", "`input` must not be empty"));
        }
        if texts.len() > MAX_INPUTS {
            return Err(ApiError::bad_field(
                "input",
                format!(
                    "at most {MAX_INPUTS} inputs per request ({} sent)",
                    texts.len()
                ),
            ));
        }
        for (i, text) in texts.iter().enumerate() {
            if text.is_empty() {
                return Err(ApiError::bad_field(
                    "input",
                    format!("input {i} is empty; every input must have text"),
                ));
            }
            if text.contains('\0') {
                return Err(ApiError::bad_field(
                    "input",
                    format!("input {i} contains a NUL character"),
                ));
            }
        }
        Ok(texts)
    }
}

async fn embed(
    state: &AppState,
    caller: &Principal,
    spec: &ModelSpec,
    texts: Vec<String>,
    truncate: bool,
    keep_alive: Option<KeepAliveRequest>,
) -> Result<Embeddings, ApiError> {
    let bytes: usize = texts.iter().map(String::len).sum();
    let max = state.config.engine.max_prompt_bytes;
    if bytes > max {
        return Err(ApiError::bad_field(
            "input",
            format!(
                "the input is {bytes} bytes; at most {max} bytes of text are accepted per request"
            ),
        ));
    }
    let out = state
        .engine
        .embed(spec, caller.user_id, texts, truncate, keep_alive)
        .await?;
    state.limits.record_tokens(caller.user_id, out.tokens, 0);
    Ok(out)
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct OpenAiRequest {
    #[serde(default)]
    model: String,
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

/// `POST /v1/embeddings`.
pub async fn openai(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(req): Json<OpenAiRequest>,
) -> Result<Response, ApiError> {
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(ApiError::bad_field(
                "encoding_format",
                "`encoding_format` must be \"float\" or \"base64\"",
            ));
        }
    };
    let texts = req.input.into_texts()?;
    let spec = resolve(&state, &req.model, req.dimensions).await?;
    let out = embed(&state, &caller, &spec, texts, false, None).await?;
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "model": spec.name,
        "usage": {"prompt_tokens": out.tokens, "total_tokens": out.tokens},
    }))
    .into_response())
}

/// `POST /api/embed`.
#[derive(Debug, Deserialize)]
pub struct OllamaEmbedRequest {
    #[serde(default)]
    model: String,
    input: Input,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    dimensions: Option<u32>,
    #[serde(default)]
    #[allow(dead_code)]
    options: Option<Value>,
}

/// `POST /api/embed`.
pub async fn ollama_embed(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(req): Json<OllamaEmbedRequest>,
) -> Result<Response, OllamaError> {
    let started = Instant::now();
    let keep_alive = inference::keep_alive(&state, &caller, req.keep_alive.as_ref())?;
    let texts = req.input.into_texts()?;
    let spec = resolve(&state, &req.model, req.dimensions).await?;
    let truncate = req.truncate.unwrap_or(true);
    let out = embed(&state, &caller, &spec, texts, truncate, keep_alive).await?;
    Ok(axum::Json(json!({
        "model": spec.name,
        "embeddings": out.vectors,
        "total_duration": started.elapsed().as_nanos() as u64,
        "load_duration": out.load_time.as_nanos() as u64,
        "prompt_eval_count": out.tokens,
    }))
    .into_response())
}

/// `POST /api/embeddings` (Ollama's older single-text form).
#[derive(Debug, Deserialize)]
pub struct OllamaLegacyRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    options: Option<Value>,
}

/// `POST /api/embeddings`.
pub async fn ollama_legacy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(req): Json<OllamaLegacyRequest>,
) -> Result<Response, OllamaError> {
    let keep_alive = inference::keep_alive(&state, &caller, req.keep_alive.as_ref())?;
    let spec = resolve(&state, &req.model, None).await?;
    if req.prompt.is_empty() {
        // Ollama answers an empty prompt with an empty vector (after loading the model).
        state
            .engine
            .load(
                &spec,
                keep_alive.unwrap_or_else(|| state.engine.default_keep_alive(&spec)),
            )
            .await
            .map_err(ApiError::from)?;
        return Ok(axum::Json(json!({"embedding": []})).into_response());
    }
    let texts = Input::One(req.prompt).into_texts()?;
    let out = embed(&state, &caller, &spec, texts, true, keep_alive).await?;
    let vector = out.vectors.into_iter().next().unwrap_or_default();
    Ok(axum::Json(json!({ "embedding": vector })).into_response())
}
