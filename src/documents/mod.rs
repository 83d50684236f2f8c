//! Documents and retrieval: storing uploaded files once by content, reading them
//! ([`extract`], in a limited child process, [`worker`]), cutting them into chunks
//! ([`chunk`]), embedding the chunks through the engine, and hybrid search over them
//! ([`search`]: sqlite-vec vectors with a binary first pass, FTS5 keywords, fused by
//! reciprocal rank).
//!
//! [`Documents`] is the handle the HTTP layer, the chat domain and the job runner use.
//! It never sees HTTP types.

pub mod chunk;
pub mod extract;
pub mod fetch;
pub mod files;
pub mod index;
mod ingest;
pub mod search;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, ModelSpec};
use crate::store::Store;

pub use ingest::IngestError;

/// The formats the appliance reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum MediaType {
    /// Plain text.
    Text,
    /// Markdown.
    Markdown,
    /// HTML.
    Html,
    /// PDF.
    Pdf,
    /// Word (OOXML).
    Docx,
    /// Excel (OOXML).
    Xlsx,
    /// Comma-separated values.
    Csv,
    /// JSON.
    Json,
}

impl MediaType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Text => "text",
            MediaType::Markdown => "markdown",
            MediaType::Html => "html",
            MediaType::Pdf => "pdf",
            MediaType::Docx => "docx",
            MediaType::Xlsx => "xlsx",
            MediaType::Csv => "csv",
            MediaType::Json => "json",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<MediaType> {
        Some(match s {
            "text" => MediaType::Text,
            "markdown" => MediaType::Markdown,
            "html" => MediaType::Html,
            "pdf" => MediaType::Pdf,
            "docx" => MediaType::Docx,
            "xlsx" => MediaType::Xlsx,
            "csv" => MediaType::Csv,
            "json" => MediaType::Json,
            _ => return None,
        })
    }

    /// Decides a file's format from its first bytes, its name and (for downloads) the
    /// server's content type. The content wins where it is unambiguous (a PDF named
    /// `.txt` is a PDF); an unknown binary is refused.
    pub fn detect(name: &str, head: &[u8], content_type: Option<&str>) -> Option<MediaType> {
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        if head.starts_with(b"%PDF-") {
            return Some(MediaType::Pdf);
        }
        if head.starts_with(b"PK\x03\x04") {
            return match ext.as_str() {
                "docx" => Some(MediaType::Docx),
                "xlsx" => Some(MediaType::Xlsx),
                _ => match content_type.unwrap_or("") {
                    t if t.contains("wordprocessingml") => Some(MediaType::Docx),
                    t if t.contains("spreadsheetml") => Some(MediaType::Xlsx),
                    _ => None,
                },
            };
        }
        let mime = content_type
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let by_ext = match ext.as_str() {
            "md" | "markdown" => Some(MediaType::Markdown),
            "html" | "htm" | "xhtml" => Some(MediaType::Html),
            "csv" => Some(MediaType::Csv),
            "json" => Some(MediaType::Json),
            "txt" | "text" | "log" | "rst" | "org" => Some(MediaType::Text),
            "pdf" | "docx" | "xlsx" => None, // the content said otherwise
            _ => None,
        };
        let by_mime = match mime.as_str() {
            "text/html" | "application/xhtml+xml" => Some(MediaType::Html),
            "text/markdown" | "text/x-markdown" => Some(MediaType::Markdown),
            "text/csv" => Some(MediaType::Csv),
            "application/json" => Some(MediaType::Json),
            "text/plain" => Some(MediaType::Text),
            _ => None,
        };
        let sniffed_html = {
            let start = String::from_utf8_lossy(&head[..head.len().min(512)]).to_ascii_lowercase();
            let start = start.trim_start();
            start.starts_with("<!doctype html") || start.starts_with("<html")
        };
        by_ext
            .or(by_mime)
            .or(sniffed_html.then_some(MediaType::Html))
            .or_else(|| {
                // Unknown name: text if it looks like text.
                (!head.contains(&0) && std::str::from_utf8(&head[..head.len().min(1024)]).is_ok()
                    || head.len() > 1024 && !head[..1024].contains(&0))
                .then_some(MediaType::Text)
            })
    }
}

/// Settings of the documents subsystem (from `[documents]`).
#[derive(Debug, Clone)]
pub struct DocumentsConfig {
    /// Where files are stored (`<data_dir>/files`).
    pub files_dir: PathBuf,
    /// Largest file accepted.
    pub max_file_bytes: u64,
    /// Tokens per chunk.
    pub chunk_tokens: u32,
    /// Tokens of overlap between neighbouring chunks.
    pub chunk_overlap: u32,
    /// Memory the extraction process may use.
    pub extract_memory_bytes: u64,
    /// Time the extraction process may take.
    pub extract_timeout: Duration,
    /// Fetch URLs that resolve to private, loopback or link-local addresses.
    pub allow_private_urls: bool,
    /// Largest page a URL may return.
    pub max_url_bytes: u64,
    /// How long fetching a URL may take.
    pub url_timeout: Duration,
    /// The appliance binary (runs `worker extract`).
    pub exe: PathBuf,
}

/// The documents subsystem: cheap to clone.
#[derive(Clone)]
pub struct Documents {
    pub(crate) store: Store,
    pub(crate) engine: Engine,
    pub(crate) config: Arc<DocumentsConfig>,
    pub(crate) index: index::VectorIndex,
    pub(crate) index_loading: Arc<tokio::sync::Mutex<()>>,
    /// The embedding model documents are indexed with.
    pub(crate) embedder: Arc<parking_lot::Mutex<Option<ModelSpec>>>,
    pub(crate) embedder_name: String,
    pub(crate) models_dir: PathBuf,
}

impl Documents {
    /// The subsystem over `store`, embedding through `engine` with the model named
    /// `embedder` in `models_dir`.
    pub fn new(
        store: Store,
        engine: Engine,
        config: DocumentsConfig,
        models_dir: PathBuf,
        embedder: String,
    ) -> Documents {
        Documents {
            store,
            engine,
            config: Arc::new(config),
            index: index::VectorIndex::default(),
            index_loading: Arc::default(),
            embedder: Arc::default(),
            embedder_name: embedder,
            models_dir,
        }
    }

    /// The settings.
    pub fn config(&self) -> &DocumentsConfig {
        &self.config
    }

    /// The embedding model documents use (looked up once, then remembered).
    pub(crate) fn embedding_model(&self) -> Result<ModelSpec, IngestError> {
        if let Some(spec) = self.embedder.lock().clone() {
            return Ok(spec);
        }
        let registry = crate::models::registry::Registry::new(self.models_dir.clone());
        let info = registry.find_embedder(&self.embedder_name).map_err(|_| {
            IngestError::Fatal(format!(
                "the embedding model `{}` is not installed (engine.default_embedding_model)",
                self.embedder_name
            ))
        })?;
        let spec = ModelSpec {
            name: info.name,
            path: info.path,
            kind: crate::engine::ModelKind::Embedding,
        };
        *self.embedder.lock() = Some(spec.clone());
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::MediaType;

    #[test]
    fn content_beats_the_name_and_unknown_binaries_are_refused() {
        assert_eq!(
            MediaType::detect("a.txt", b"%PDF-1.7 ...", None),
            Some(MediaType::Pdf)
        );
        assert_eq!(
            MediaType::detect("a.docx", b"PK\x03\x04....", None),
            Some(MediaType::Docx)
        );
        assert_eq!(MediaType::detect("a.zip", b"PK\x03\x04....", None), None);
        assert_eq!(
            MediaType::detect("notes", b"plain words", None),
            Some(MediaType::Text)
        );
        assert_eq!(MediaType::detect("x.bin", b"\x00\x01\x02", None), None);
        assert_eq!(
            MediaType::detect(
                "page",
                b"<!DOCTYPE html><p>x",
                Some("text/html; charset=utf-8")
            ),
            Some(MediaType::Html)
        );
        assert_eq!(
            MediaType::detect("r.md", b"# T", None),
            Some(MediaType::Markdown)
        );
    }
}
