//! The multipart form of an audio upload, shared by OpenAI's audio API and the native
//! transcripts API: the `file` part streamed to a new private file (never whole in
//! memory, bounded), every other part a bounded UTF-8 text field that may appear once,
//! names outside the endpoint's list refused by name, and the values both APIs share
//! (language, temperature, prompt) checked the same way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::extract::multipart::{Field, Multipart, MultipartError};
use axum::http::StatusCode;

use super::formats;
use crate::http::error::ApiError;

/// Longest text form field (model, language, format …) and longest prompt, in bytes.
const MAX_FIELD_BYTES: usize = 256;
const MAX_PROMPT_BYTES: usize = 4096;

/// Fields no endpoint here implements, refused with a reason rather than as unknown.
const UNSUPPORTED: &[&str] = &[
    "chunking_strategy",
    "include[]",
    "include",
    "known_speaker_names[]",
    "known_speaker_references[]",
];

/// An uploaded audio file on disk, deleted when dropped unless kept.
pub struct Upload {
    /// Where it is.
    pub path: PathBuf,
    /// The client's name for it.
    pub name: Option<String>,
    keep: bool,
}

impl Upload {
    /// Moves the file to `target` and keeps it there (it is no longer deleted on drop).
    pub async fn keep_at(mut self, target: PathBuf) -> Result<(), ApiError> {
        let from = self.path.clone();
        let to = target.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = to.parent() {
                fs_err::create_dir_all(parent)?;
            }
            fs_err::rename(&from, &to)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::from_io("keeping an audio upload", &e))?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let path = self.path.clone();
        // Unlinking is quick, but it is file system work: off the async threads.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn_blocking(move || {
                let _ = fs_err::remove_file(&path);
            });
        } else {
            let _ = fs_err::remove_file(&path);
        }
    }
}

/// A form as sent: the file, and each text field by name.
pub struct Form {
    /// The `file` part.
    pub upload: Upload,
    fields: HashMap<String, String>,
    /// `timestamp_granularities[]` values, in order.
    pub granularities: Vec<String>,
}

impl Form {
    /// A text field, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// `language`: a code or English name whisper knows, or `None` (detect).
    pub fn language(&self) -> Result<Option<String>, ApiError> {
        match self.get("language") {
            None | Some("auto") => Ok(None),
            Some(value) => formats::language_code(value)
                .map(|c| Some(c.to_string()))
                .ok_or_else(|| {
                    ApiError::bad_field(
                        "language",
                        "not a language whisper knows; give an ISO-639-1 code such as `en` or `de`",
                    )
                }),
        }
    }

    /// `temperature`, 0 to 1 (default 0).
    pub fn temperature(&self) -> Result<f32, ApiError> {
        match self.get("temperature") {
            None => Ok(0.0),
            Some(value) => value
                .parse::<f32>()
                .ok()
                .filter(|t| (0.0..=1.0).contains(t))
                .ok_or_else(|| ApiError::bad_field("temperature", "a number from 0 to 1")),
        }
    }

    /// A `true`/`false` field (default false).
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(ApiError::bad_field(name, "`true` or `false`")),
        }
    }
}

/// Reads the whole form: the file goes to a new file in `dir` (at most `limit`
/// bytes); text fields must be named in `fields`.
pub async fn read(
    mut multipart: Multipart,
    dir: &Path,
    limit: u64,
    fields: &[&str],
) -> Result<Form, ApiError> {
    let mut upload = None;
    let mut values: HashMap<String, String> = HashMap::new();
    let mut granularities = Vec::new();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            if upload.is_some() {
                return Err(ApiError::bad_field("file", "send one `file` part only"));
            }
            upload = Some(receive(&mut field, dir, limit).await?);
        } else if (name == "timestamp_granularities[]" || name == "timestamp_granularities")
            && fields.contains(&"timestamp_granularities[]")
        {
            if granularities.len() >= 2 {
                return Err(ApiError::bad_field(&name, "give `segment`, `word` or both"));
            }
            granularities.push(text(field, MAX_FIELD_BYTES).await?);
        } else if fields.contains(&name.as_str()) {
            let max = if name == "prompt" {
                MAX_PROMPT_BYTES
            } else {
                MAX_FIELD_BYTES
            };
            let value = text(field, max).await?;
            if values.insert(name.clone(), value).is_some() {
                return Err(ApiError::bad_field(
                    &name,
                    format!("`{name}` was sent twice"),
                ));
            }
        } else if UNSUPPORTED.contains(&name.as_str()) {
            return Err(ApiError::bad_field(
                &name,
                format!("`{name}` is not supported by this server's whisper models"),
            ));
        } else {
            let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
            return Err(ApiError::bad_field(
                &shown,
                format!("unknown field `{shown}`"),
            ));
        }
    }
    let Some(upload) = upload else {
        return Err(ApiError::bad_field("file", "no `file` part was sent"));
    };
    Ok(Form {
        upload,
        fields: values,
        granularities,
    })
}

/// A text form field, bounded.
async fn text(mut field: Field<'_>, max: usize) -> Result<String, ApiError> {
    let name = field.name().unwrap_or("").to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(e, max as u64))?
    {
        if bytes.len() + chunk.len() > max {
            return Err(ApiError::bad_field(
                &name,
                format!("`{name}` is longer than {max} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let value = String::from_utf8(bytes)
        .map_err(|_| ApiError::bad_field(&name, format!("`{name}` is not UTF-8 text")))?;
    if value.contains('\0') {
        return Err(ApiError::bad_field(
            &name,
            format!("`{name}` contains a NUL character"),
        ));
    }
    Ok(value)
}

/// Sends a file part's chunks to a blocking writer until the part ends, the writer stops
/// (its own error says why) or the body fails (returned).
pub(in crate::http) async fn forward(
    field: &mut Field<'_>,
    tx: tokio::sync::mpsc::Sender<axum::body::Bytes>,
    limit: u64,
) -> Option<ApiError> {
    loop {
        match field.chunk().await {
            Ok(Some(bytes)) => {
                if tx.send(bytes).await.is_err() {
                    return None;
                }
            }
            Ok(None) => return None,
            Err(e) => return Some(multipart_error(e, limit)),
        }
    }
}

/// A multipart failure as the client's error: 413 over the limit, else 400.
pub(in crate::http) fn multipart_error(e: MultipartError, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge {
            limit: limit as usize,
        }
    } else {
        ApiError::BadRequest {
            message: format!("the multipart body is malformed: {}", e.body_text()),
            param: None,
        }
    }
}

/// Streams the `file` part to a new private file in `dir`, at most `limit` bytes.
async fn receive(field: &mut Field<'_>, dir: &Path, limit: u64) -> Result<Upload, ApiError> {
    let name = field.file_name().map(|raw| {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
        last.chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect::<String>()
    });
    let dir = dir.to_path_buf();
    let path = dir.join(format!("{}.upload", uuid::Uuid::new_v4().simple()));
    let upload = Upload {
        path: path.clone(),
        name,
        keep: false,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(8);
    let writer = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        use std::io::Write;
        fs_err::create_dir_all(&dir)?;
        let mut file = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut written = 0u64;
        while let Some(bytes) = rx.blocking_recv() {
            written += bytes.len() as u64;
            if written > limit {
                return Ok(written);
            }
            file.write_all(&bytes)?;
        }
        Ok(written)
    });
    let read_error = forward(field, tx, limit).await;
    let written = writer
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::from_io("storing an audio upload", &e))?;
    if let Some(e) = read_error {
        return Err(e);
    }
    if written > limit {
        return Err(ApiError::PayloadTooLarge {
            limit: limit as usize,
        });
    }
    if written == 0 {
        return Err(ApiError::bad_field("file", "the file is empty"));
    }
    Ok(upload)
}
