//! The documents API: collections, uploads (multipart, streamed to disk), URLs,
//! documents, their chunks and files, and hybrid search.
//!
//! Who may read or change what is decided by the store's queries with the caller's
//! owner filter; a collection another user shared is readable, never writable.

use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Principal;
use crate::documents::files::{FileError, Incoming, Stored};
use crate::documents::{MediaType, fetch, files, search};
use crate::store::documents::{Document, NewDocument};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{Json, Path, Query};

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_field(
            "name",
            "`name` must be 1-100 characters without control characters",
        ));
    }
    Ok(name.to_string())
}

fn check_description(d: &str) -> Result<String, ApiError> {
    if d.chars().count() > 2000 || d.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::bad_field(
            "description",
            "`description` must be at most 2000 characters without control characters",
        ));
    }
    Ok(d.to_string())
}

/// `POST /api/v1/collections` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    name: String,
    #[serde(default)]
    description: String,
}

/// `GET /api/v1/collections`.
pub async fn list_collections(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<axum::Json<Value>, ApiError> {
    let list = state.store.list_collections(caller.owner_filter()).await?;
    Ok(axum::Json(json!({ "collections": list })))
}

/// `POST /api/v1/collections`.
pub async fn create_collection(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(req): Json<CreateCollection>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let name = check_name(&req.name)?;
    let description = check_description(&req.description)?;
    let collection = state
        .store
        .create_collection(caller.owner_id(), name, description)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(json!(collection))))
}

/// `GET /api/v1/collections/{id}`.
pub async fn get_collection(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<Value>, ApiError> {
    let c = state.store.collection(id, caller.owner_filter()).await?;
    Ok(axum::Json(json!(c)))
}

/// `PATCH /api/v1/collections/{id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCollection {
    name: Option<String>,
    description: Option<String>,
    shared: Option<bool>,
}

/// `PATCH /api/v1/collections/{id}`.
pub async fn update_collection(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
    Json(req): Json<UpdateCollection>,
) -> Result<axum::Json<Value>, ApiError> {
    if req.shared.is_some() && !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "only administrators can share a collection with every user".into(),
        ));
    }
    let name = req.name.as_deref().map(check_name).transpose()?;
    let description = req
        .description
        .as_deref()
        .map(check_description)
        .transpose()?;
    let c = state
        .store
        .update_collection(id, caller.owner_filter(), name, description, req.shared)
        .await?;
    Ok(axum::Json(json!(c)))
}

/// `DELETE /api/v1/collections/{id}`.
pub async fn delete_collection(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let orphans = state
        .store
        .delete_collection(id, caller.owner_filter())
        .await?;
    state.documents.index.remove_collection(id);
    remove_files(&state, orphans).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_files(state: &AppState, shas: Vec<String>) {
    let dir = state.documents.config().files_dir.clone();
    let _ = tokio::task::spawn_blocking(move || files::remove(&dir, &shas)).await;
}

/// `GET /api/v1/collections/{id}/documents`.
pub async fn list_documents(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<Value>, ApiError> {
    let docs = state.store.documents(id, caller.owner_filter()).await?;
    Ok(axum::Json(json!({ "documents": docs })))
}

fn file_error(e: FileError) -> ApiError {
    match e {
        FileError::TooLarge { limit } => ApiError::PayloadTooLarge {
            limit: limit as usize,
        },
        FileError::Empty => ApiError::bad_field("file", "the file is empty"),
        FileError::Io(e) => ApiError::from_io("storing an upload", &e),
    }
}

/// A file name as shown: the last path component, no control characters, bounded.
fn display_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|c| !c.is_control()).take(200).collect();
    if clean.trim().is_empty() {
        "upload".into()
    } else {
        clean.trim().to_string()
    }
}

/// Streams one multipart field to the file store through a blocking writer.
async fn receive(
    state: &AppState,
    field: &mut axum::extract::multipart::Field<'_>,
) -> Result<Stored, ApiError> {
    let limit = state.documents.config().max_file_bytes;
    let dir = state.documents.config().files_dir.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(8);
    let writer = tokio::task::spawn_blocking(move || {
        let mut incoming = Incoming::start(&dir, limit)?;
        while let Some(bytes) = rx.blocking_recv() {
            incoming.write(&bytes)?;
        }
        incoming.finish()
    });
    let read_error = super::audio::form::forward(field, tx, limit).await;
    let written = writer
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(e) = read_error {
        return Err(e);
    }
    written.map_err(file_error)
}

async fn add(
    state: &AppState,
    caller: &Principal,
    collection: i64,
    stored: Stored,
    media: MediaType,
    name: String,
    url: Option<String>,
) -> Result<(Document, bool), ApiError> {
    let new = NewDocument {
        sha256: stored.sha256,
        name,
        media_type: media.as_str().into(),
        size: stored.size as i64,
        source_url: url,
    };
    Ok(state
        .store
        .add_document(collection, caller.owner_filter(), caller.owner_id(), new)
        .await?)
}

/// `POST /api/v1/collections/{id}/documents` (multipart, one or more `file` parts).
pub async fn upload(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::UnsupportedMediaType(format!(
            "upload files as multipart/form-data with parts named `file` ({})",
            e.body_text()
        ))
    })?;
    // Refuse before reading a byte when the caller may not add to this collection.
    let collection = state.store.collection(id, caller.owner_filter()).await?;
    if !collection.writable {
        return Err(crate::store::StoreError::ReadOnly("collection").into());
    }
    let limit = state.documents.config().max_file_bytes;
    let mut documents = Vec::new();
    let mut duplicates = Vec::new();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| super::audio::form::multipart_error(e, limit))?
    {
        if field.name() != Some("file") {
            return Err(ApiError::bad_field(
                field.name().unwrap_or("(unnamed part)"),
                "only parts named `file` are accepted",
            ));
        }
        let name = display_name(field.file_name().unwrap_or("upload"));
        let content_type = field.content_type().map(str::to_string);
        let stored = receive(&state, &mut field).await?;
        let Some(media) = MediaType::detect(&name, &stored.head, content_type.as_deref()) else {
            let sha = stored.sha256.clone();
            if !state.store.file_in_use(sha.clone()).await? {
                remove_files(&state, vec![sha]).await;
            }
            return Err(ApiError::UnsupportedMediaType(format!(
                "`{name}` is not a supported document (text, Markdown, HTML, PDF, DOCX, XLSX, CSV, JSON)"
            )));
        };
        let (doc, duplicate) = add(&state, &caller, id, stored, media, name, None).await?;
        if duplicate {
            duplicates.push(doc.id);
        }
        documents.push(doc);
    }
    if documents.is_empty() {
        return Err(ApiError::bad_field("file", "no `file` part was sent"));
    }
    state.jobs.wake();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "documents": documents, "duplicates": duplicates })),
    ))
}

/// `POST /api/v1/collections/{id}/urls` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddUrl {
    url: String,
}

/// `POST /api/v1/collections/{id}/urls`: fetches the page now (bounded), indexes it
/// as a job.
pub async fn add_url(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
    Json(req): Json<AddUrl>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    fetch::parse(&req.url).map_err(fetch_error)?;
    let collection = state.store.collection(id, caller.owner_filter()).await?;
    if !collection.writable {
        return Err(crate::store::StoreError::ReadOnly("collection").into());
    }
    let fetched = fetch::fetch(state.documents.config(), &req.url)
        .await
        .map_err(fetch_error)?;
    let name: String = fetched.url.chars().take(200).collect();
    let (doc, duplicate) = add(
        &state,
        &caller,
        id,
        fetched.stored,
        fetched.media,
        name,
        Some(fetched.url),
    )
    .await?;
    state.jobs.wake();
    let duplicates: Vec<i64> = if duplicate { vec![doc.id] } else { Vec::new() };
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "documents": [doc], "duplicates": duplicates })),
    ))
}

fn fetch_error(e: fetch::FetchError) -> ApiError {
    match e {
        fetch::FetchError::File(e) => file_error(e),
        other => ApiError::bad_field("url", other.to_string()),
    }
}

/// `GET /api/v1/documents/{id}`.
pub async fn get_document(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(json!(
        state.store.document(id, caller.owner_filter()).await?
    )))
}

/// `DELETE /api/v1/documents/{id}`.
pub async fn delete_document(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let doc = state.store.document(id, caller.owner_filter()).await?;
    if let Some(job) = doc.job_id {
        let _ = state.jobs.cancel(job, None).await;
    }
    let orphans = state
        .store
        .delete_document(id, caller.owner_filter())
        .await?;
    state.documents.index.remove_document(doc.collection_id, id);
    remove_files(&state, orphans).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/documents/{id}/reindex`.
pub async fn reindex_document(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let doc = state
        .store
        .reindex_document(id, caller.owner_filter(), caller.owner_id())
        .await?;
    state.jobs.wake();
    Ok((StatusCode::ACCEPTED, axum::Json(json!(doc))))
}

/// `?offset&limit` of chunk listings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkPage {
    offset: Option<u32>,
    limit: Option<u32>,
}

/// `GET /api/v1/documents/{id}/chunks`.
pub async fn chunks(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
    Query(page): Query<ChunkPage>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = page.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_field(
            "limit",
            "`limit` must be from 1 to 500",
        ));
    }
    let offset = page.offset.unwrap_or(0);
    let (chunks, total) = state
        .store
        .chunks(id, caller.owner_filter(), offset, limit)
        .await?;
    Ok(axum::Json(json!({ "chunks": chunks, "total": total })))
}

/// `GET /api/v1/documents/{id}/file`: the original file. Only PDFs are shown inline
/// (browsers open them at `#page=N`); everything else is served as plain text or as a
/// download, never as HTML the browser would run.
pub async fn file(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let doc = state.store.document(id, caller.owner_filter()).await?;
    let path = files::path(&state.documents.config().files_dir, &doc.sha256);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::Internal(format!("opening a stored file: {e}")))?;
    let (content_type, disposition) = match doc.media_type.as_str() {
        "pdf" => ("application/pdf", "inline"),
        "text" | "markdown" | "csv" | "json" | "html" => ("text/plain; charset=utf-8", "inline"),
        _ => ("application/octet-stream", "attachment"),
    };
    let ascii: String = doc
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename=\"{ascii}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// `POST /api/v1/search` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    query: String,
    #[serde(default)]
    collections: Option<Vec<i64>>,
    #[serde(default)]
    documents: Option<Vec<i64>>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    min_score: Option<f32>,
}

/// The collections a caller may search: the ones named (each must be readable), or
/// their own and the shared ones.
pub async fn searchable(
    state: &AppState,
    caller: &Principal,
    named: Option<&[i64]>,
) -> Result<Vec<i64>, ApiError> {
    let readable = state.store.list_collections(caller.owner_filter()).await?;
    match named {
        Some(ids) => {
            if ids.len() > 100 {
                return Err(ApiError::bad_field(
                    "collections",
                    "at most 100 collections",
                ));
            }
            for id in ids {
                if !readable.iter().any(|c| c.id == *id) {
                    return Err(ApiError::NotFound(format!("collection {id} not found")));
                }
            }
            Ok(ids.to_vec())
        }
        None => Ok(readable
            .iter()
            .filter(|c| c.shared || c.user_id == caller.owner_id())
            .map(|c| c.id)
            .collect()),
    }
}

/// `POST /api/v1/search`.
pub async fn search(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Json(req): Json<SearchRequest>,
) -> Result<axum::Json<Value>, ApiError> {
    let text = req.query.trim().to_string();
    if text.is_empty() || text.len() > 8192 {
        return Err(ApiError::bad_field(
            "query",
            "`query` must be 1-8192 bytes of text",
        ));
    }
    let limit = req.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_field(
            "limit",
            "`limit` must be from 1 to 100",
        ));
    }
    let min_score = req.min_score.unwrap_or(state.config.documents.min_score);
    if !(-1.0..=1.0).contains(&min_score) {
        return Err(ApiError::bad_field(
            "min_score",
            "`min_score` must be from -1 to 1",
        ));
    }
    let documents = req.documents.unwrap_or_default();
    if documents.len() > 1000 {
        return Err(ApiError::bad_field("documents", "at most 1000 documents"));
    }
    let collections = searchable(&state, &caller, req.collections.as_deref()).await?;
    let hits = state
        .documents
        .search(search::Query {
            text,
            collections,
            documents,
            limit: limit as usize,
            min_score,
            user: caller.user_id,
        })
        .await?;
    Ok(axum::Json(json!({ "results": hits })))
}
