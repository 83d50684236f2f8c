//! Collections, documents, chunks and their vectors.
//!
//! Access is decided here, in the queries, by a `viewer`: `None` sees everything (an
//! administrator), `Some(user)` sees that user's collections and the shared ones, and
//! may change only their own. A document's chunks and vectors are replaced in one
//! transaction together with its state, so a crash leaves either the old index or the
//! new one, never a mix or a duplicate.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::json;

use super::conversations::now;
use super::jobs::insert_job;
use super::{Store, StoreError, immediate};

/// The job kind that indexes a document.
pub const INGEST_JOB: &str = "document.ingest";

/// A collection as a viewer sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Collection {
    /// Id.
    pub id: i64,
    /// Name (unique per owner).
    pub name: String,
    /// Free text.
    pub description: String,
    /// Readable by every user.
    pub shared: bool,
    /// Owner's user name (`None`: created without authentication).
    pub owner: Option<String>,
    /// Owner's id.
    #[serde(skip)]
    pub user_id: Option<i64>,
    /// Documents in it.
    pub documents: i64,
    /// Chunks indexed.
    pub chunks: i64,
    /// Created.
    pub created_at: String,
    /// Whether the viewer may change it.
    pub writable: bool,
}

/// A document as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    /// Id.
    pub id: i64,
    /// Its collection.
    pub collection_id: i64,
    /// sha256 of the file.
    #[serde(skip)]
    pub sha256: String,
    /// File name or page title.
    pub name: String,
    /// Media kind (`text`, `markdown`, `html`, `pdf`, `docx`, `xlsx`, `csv`, `json`).
    pub media_type: String,
    /// Bytes.
    pub size: i64,
    /// `queued`, `indexing`, `ready` or `failed`.
    pub state: String,
    /// Why indexing failed.
    pub error: Option<String>,
    /// Pages (PDF).
    pub pages: Option<i64>,
    /// Chunks indexed.
    pub chunks: i64,
    /// The job that indexes it.
    pub job_id: Option<i64>,
    /// Where it was fetched from.
    pub source_url: Option<String>,
    /// Added.
    pub created_at: String,
    /// Last indexed.
    pub indexed_at: Option<String>,
}

/// A new document's file, already stored by content.
#[derive(Debug, Clone)]
pub struct NewDocument {
    /// sha256 (hex).
    pub sha256: String,
    /// Name to show.
    pub name: String,
    /// Media kind.
    pub media_type: String,
    /// Bytes.
    pub size: i64,
    /// Where it came from.
    pub source_url: Option<String>,
}

/// One chunk to store, with its vector.
#[derive(Debug, Clone)]
pub struct NewChunk {
    /// Text.
    pub text: String,
    /// Page (1-based).
    pub page: Option<i64>,
    /// Heading path.
    pub heading: String,
    /// Offsets in the extracted text.
    pub char_start: i64,
    /// End offset.
    pub char_end: i64,
    /// Tokens of the embedding model.
    pub tokens: i64,
    /// Unit vector.
    pub embedding: Vec<f32>,
}

/// A chunk as a viewer reads it.
#[derive(Debug, Clone, Serialize)]
pub struct Chunk {
    /// Id.
    pub id: i64,
    /// Position in the document.
    pub seq: i64,
    /// Page.
    pub page: Option<i64>,
    /// Heading path.
    pub heading: String,
    /// Text.
    pub text: String,
    /// Offsets.
    pub char_start: i64,
    /// End offset.
    pub char_end: i64,
}

/// A chunk with the data a citation needs.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkHit {
    /// Chunk id.
    pub chunk_id: i64,
    /// Document.
    pub document_id: i64,
    /// Document name.
    pub document_name: String,
    /// Document media kind.
    pub media_type: String,
    /// Collection.
    pub collection_id: i64,
    /// Page.
    pub page: Option<i64>,
    /// Heading path.
    pub heading: String,
    /// Text.
    pub text: String,
    /// Offsets.
    pub char_start: i64,
    /// End offset.
    pub char_end: i64,
}

/// One entry of the in-memory coarse index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// Chunk.
    pub chunk_id: i64,
    /// Its document.
    pub document_id: i64,
    /// Its collection.
    pub collection_id: i64,
    /// One bit per dimension (sqlite-vec's `vec_quantize_binary` layout).
    pub bits: Vec<u8>,
}

const READABLE: &str = "(?1 IS NULL OR c.user_id = ?1 OR c.shared = 1)";

fn collection_from_row(row: &Row<'_>, viewer: Option<i64>) -> rusqlite::Result<Collection> {
    let user_id: Option<i64> = row.get(5)?;
    Ok(Collection {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        shared: row.get::<_, i64>(3)? == 1,
        owner: row.get(4)?,
        user_id,
        documents: row.get(6)?,
        chunks: row.get(7)?,
        created_at: row.get(8)?,
        writable: viewer.is_none() || viewer == user_id,
    })
}

const COLLECTION_SELECT: &str = "SELECT c.id, c.name, c.description, c.shared, u.name, c.user_id, \
     (SELECT count(*) FROM documents d WHERE d.collection_id = c.id), \
     (SELECT ifnull(sum(d.chunks), 0) FROM documents d WHERE d.collection_id = c.id), c.created_at \
     FROM collections c LEFT JOIN users u ON u.id = c.user_id";

const DOCUMENT_COLUMNS: &str = "d.id, d.collection_id, d.sha256, d.name, d.media_type, d.size, d.state, \
     d.error, d.pages, d.chunks, d.job_id, d.source_url, d.created_at, d.indexed_at";

fn document_from_row(row: &Row<'_>) -> rusqlite::Result<Document> {
    Ok(Document {
        id: row.get(0)?,
        collection_id: row.get(1)?,
        sha256: row.get(2)?,
        name: row.get(3)?,
        media_type: row.get(4)?,
        size: row.get(5)?,
        state: row.get(6)?,
        error: row.get(7)?,
        pages: row.get(8)?,
        chunks: row.get(9)?,
        job_id: row.get(10)?,
        source_url: row.get(11)?,
        created_at: row.get(12)?,
        indexed_at: row.get(13)?,
    })
}

fn get_collection(
    conn: &Connection,
    id: i64,
    viewer: Option<i64>,
) -> rusqlite::Result<Option<Collection>> {
    conn.prepare_cached(&format!(
        "{COLLECTION_SELECT} WHERE c.id = ?2 AND {READABLE}"
    ))?
    .query_row(params![viewer, id], |r| collection_from_row(r, viewer))
    .optional()
}

/// The collection, if the viewer may change it; `NotFound` when they may not even see
/// it, `Forbidden`-like `Conflict` is never used: a read-only viewer gets `ReadOnly`.
fn writable_collection(
    conn: &Connection,
    id: i64,
    viewer: Option<i64>,
) -> Result<Collection, StoreError> {
    let c = get_collection(conn, id, viewer)?.ok_or(StoreError::NotFound("collection"))?;
    if !c.writable {
        return Err(StoreError::ReadOnly("collection"));
    }
    Ok(c)
}

fn get_document(
    conn: &Connection,
    id: i64,
    viewer: Option<i64>,
) -> rusqlite::Result<Option<Document>> {
    conn.prepare_cached(&format!(
        "SELECT {DOCUMENT_COLUMNS} FROM documents d JOIN collections c ON c.id = d.collection_id \
         WHERE d.id = ?2 AND {READABLE}"
    ))?
    .query_row(params![viewer, id], document_from_row)
    .optional()
}

/// Queues (re)indexing of a document: a new job, the document `queued`.
fn queue_ingest(conn: &Connection, document_id: i64, user: Option<i64>) -> rusqlite::Result<i64> {
    let job = insert_job(
        conn,
        INGEST_JOB,
        user,
        &json!({ "document_id": document_id }),
        3,
    )?;
    conn.execute(
        "UPDATE documents SET state = 'queued', error = NULL, job_id = ?2 WHERE id = ?1",
        params![document_id, job],
    )?;
    Ok(job)
}

/// Matches a keyword search ranks at most, summed over its terms (see
/// [`Store::keyword_search`]).
pub const KEYWORD_POSTINGS: i64 = 20_000;

/// The FTS5 expression for the terms worth ranking (`"a" OR "b"`) within `budget`
/// matches, `None` when none is.
fn selective_terms(
    conn: &Connection,
    terms: Vec<String>,
    budget: i64,
) -> Result<Option<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT doc FROM chunks_vocab WHERE term = ?1")?;
    let mut counted = Vec::with_capacity(terms.len());
    for term in terms {
        // A term the vocabulary lacks may still match once FTS5 folds it (diacritics):
        // count it as rare.
        let count: i64 = stmt
            .query_row([&term], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        counted.push((count, term));
    }
    counted.sort();
    let Some((rarest, _)) = counted.first() else {
        return Ok(None);
    };
    let chunks: i64 = conn.query_row("SELECT ifnull(max(id), 0) FROM chunks", [], |r| r.get(0))?;
    if *rarest > budget && rarest * 10 > chunks {
        return Ok(None);
    }
    let mut total = 0;
    let mut kept = Vec::new();
    for (count, term) in counted {
        if !kept.is_empty() && total + count > budget {
            break;
        }
        total += count;
        kept.push(format!("\"{term}\""));
    }
    Ok(Some(kept.join(" OR ")))
}

impl Store {
    /// Creates a collection owned by `user`.
    pub async fn create_collection(
        &self,
        user: Option<i64>,
        name: String,
        description: String,
    ) -> Result<Collection, StoreError> {
        self.write("create_collection", move |conn| {
            let tx = immediate(conn)?;
            let inserted = tx.execute(
                "INSERT INTO collections (user_id, name, description, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![user, name, description, now()],
            );
            match inserted {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    return Err(StoreError::Conflict("a collection with this name"));
                }
                other => other?,
            };
            let id = tx.last_insert_rowid();
            let c = get_collection(&tx, id, None)?.ok_or(StoreError::NotFound("collection"))?;
            tx.commit()?;
            Ok(Collection {
                writable: true,
                ..c
            })
        })
        .await
    }

    /// Collections the viewer can read: their own and shared ones (everything for
    /// `None`).
    pub async fn list_collections(
        &self,
        viewer: Option<i64>,
    ) -> Result<Vec<Collection>, StoreError> {
        self.read("list_collections", move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{COLLECTION_SELECT} WHERE {READABLE} ORDER BY c.name, c.id"
            ))?;
            let list = stmt
                .query_map(params![viewer], |r| collection_from_row(r, viewer))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(list)
        })
        .await
    }

    /// One collection the viewer can read.
    pub async fn collection(&self, id: i64, viewer: Option<i64>) -> Result<Collection, StoreError> {
        self.read("collection", move |conn| {
            get_collection(conn, id, viewer)?.ok_or(StoreError::NotFound("collection"))
        })
        .await
    }

    /// Renames, describes or (administrators) shares a collection.
    pub async fn update_collection(
        &self,
        id: i64,
        viewer: Option<i64>,
        name: Option<String>,
        description: Option<String>,
        shared: Option<bool>,
    ) -> Result<Collection, StoreError> {
        self.write("update_collection", move |conn| {
            let tx = immediate(conn)?;
            writable_collection(&tx, id, viewer)?;
            let updated = tx.execute(
                "UPDATE collections SET name = ifnull(?2, name), description = ifnull(?3, description), \
                 shared = ifnull(?4, shared) WHERE id = ?1",
                params![id, name, description, shared.map(i64::from)],
            );
            match updated {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    return Err(StoreError::Conflict("a collection with this name"));
                }
                other => other?,
            };
            let c = get_collection(&tx, id, viewer)?.ok_or(StoreError::NotFound("collection"))?;
            tx.commit()?;
            Ok(c)
        })
        .await
    }

    /// Deletes a collection with its documents; returns the file digests no document
    /// refers to any more (the caller deletes those files).
    pub async fn delete_collection(
        &self,
        id: i64,
        viewer: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        self.write("delete_collection", move |conn| {
            let tx = immediate(conn)?;
            writable_collection(&tx, id, viewer)?;
            let shas: Vec<String> = tx
                .prepare("SELECT DISTINCT sha256 FROM documents WHERE collection_id = ?1")?
                .query_map([id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            tx.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE state = 'queued' AND id IN \
                 (SELECT job_id FROM documents WHERE collection_id = ?1)",
                params![id, now()],
            )?;
            tx.execute("DELETE FROM collections WHERE id = ?1", [id])?;
            let orphans = unreferenced(&tx, shas)?;
            tx.commit()?;
            Ok(orphans)
        })
        .await
    }

    /// Adds a stored file to a collection and queues its indexing. The same content
    /// twice in one collection is one document: the existing one is returned with
    /// `true`.
    pub async fn add_document(
        &self,
        collection_id: i64,
        viewer: Option<i64>,
        user: Option<i64>,
        new: NewDocument,
    ) -> Result<(Document, bool), StoreError> {
        self.write("add_document", move |conn| {
            let tx = immediate(conn)?;
            writable_collection(&tx, collection_id, viewer)?;
            let existing: Option<i64> = tx
                .query_row(
                    "SELECT id FROM documents WHERE collection_id = ?1 AND sha256 = ?2",
                    params![collection_id, new.sha256],
                    |r| r.get(0),
                )
                .optional()?;
            let (id, duplicate) = match existing {
                Some(id) => (id, true),
                None => {
                    tx.execute(
                        "INSERT INTO documents (collection_id, sha256, name, source_url, media_type, size, state, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7)",
                        params![collection_id, new.sha256, new.name, new.source_url, new.media_type, new.size, now()],
                    )?;
                    let id = tx.last_insert_rowid();
                    queue_ingest(&tx, id, user)?;
                    (id, false)
                }
            };
            let doc = get_document(&tx, id, None)?.ok_or(StoreError::NotFound("document"))?;
            tx.commit()?;
            Ok((doc, duplicate))
        })
        .await
    }

    /// Documents of a collection the viewer can read.
    pub async fn documents(
        &self,
        collection_id: i64,
        viewer: Option<i64>,
    ) -> Result<Vec<Document>, StoreError> {
        self.read("documents", move |conn| {
            get_collection(conn, collection_id, viewer)?.ok_or(StoreError::NotFound("collection"))?;
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DOCUMENT_COLUMNS} FROM documents d WHERE d.collection_id = ?1 ORDER BY d.id DESC"
            ))?;
            let docs = stmt
                .query_map([collection_id], document_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(docs)
        })
        .await
    }

    /// One document the viewer can read.
    pub async fn document(&self, id: i64, viewer: Option<i64>) -> Result<Document, StoreError> {
        self.read("document", move |conn| {
            get_document(conn, id, viewer)?.ok_or(StoreError::NotFound("document"))
        })
        .await
    }

    /// Deletes a document; returns its file digest when no document refers to it any
    /// more.
    pub async fn delete_document(
        &self,
        id: i64,
        viewer: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        self.write("delete_document", move |conn| {
            let tx = immediate(conn)?;
            let doc = get_document(&tx, id, viewer)?.ok_or(StoreError::NotFound("document"))?;
            writable_collection(&tx, doc.collection_id, viewer)?;
            if let Some(job) = doc.job_id {
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1 AND state = 'queued'",
                    params![job, now()],
                )?;
            }
            tx.execute("DELETE FROM documents WHERE id = ?1", [id])?;
            let orphans = unreferenced(&tx, vec![doc.sha256])?;
            tx.commit()?;
            Ok(orphans)
        })
        .await
    }

    /// Queues a document's indexing again (a new job).
    pub async fn reindex_document(
        &self,
        id: i64,
        viewer: Option<i64>,
        user: Option<i64>,
    ) -> Result<Document, StoreError> {
        self.write("reindex_document", move |conn| {
            let tx = immediate(conn)?;
            let doc = get_document(&tx, id, viewer)?.ok_or(StoreError::NotFound("document"))?;
            writable_collection(&tx, doc.collection_id, viewer)?;
            if matches!(doc.state.as_str(), "queued" | "indexing") {
                return Err(StoreError::Conflict("an indexing job for this document"));
            }
            queue_ingest(&tx, id, user)?;
            let doc = get_document(&tx, id, None)?.ok_or(StoreError::NotFound("document"))?;
            tx.commit()?;
            Ok(doc)
        })
        .await
    }

    /// Sets a document's state (`indexing`, or `failed` with the reason) if `job` is
    /// still the job that indexes it.
    pub async fn set_document_state(
        &self,
        id: i64,
        job: i64,
        state: &'static str,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.write("set_document_state", move |conn| {
            conn.execute(
                "UPDATE documents SET state = ?3, error = ?4 WHERE id = ?1 AND job_id = ?2",
                params![id, job, state, error],
            )?;
            Ok(())
        })
        .await
    }

    /// A document by id for its indexing job (no viewer: the job acts for the owner).
    pub async fn document_for_job(&self, id: i64) -> Result<Option<Document>, StoreError> {
        self.read("document_for_job", move |conn| {
            Ok(get_document(conn, id, None)?)
        })
        .await
    }

    /// Replaces a document's chunks and vectors and marks it ready, in one transaction,
    /// if `job` is still the job that indexes it. Returns the new index entries.
    pub async fn store_chunks(
        &self,
        document_id: i64,
        job: i64,
        model: String,
        pages: Option<i64>,
        chunks: Vec<NewChunk>,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.write("store_chunks", move |conn| {
            let tx = immediate(conn)?;
            let collection_id: i64 = tx
                .query_row(
                    "SELECT collection_id FROM documents WHERE id = ?1 AND job_id = ?2",
                    params![document_id, job],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or(StoreError::NotFound("document"))?;
            tx.execute("DELETE FROM chunks WHERE document_id = ?1", [document_id])?;
            let mut entries = Vec::with_capacity(chunks.len());
            {
                let mut insert_chunk = tx.prepare_cached(
                    "INSERT INTO chunks (document_id, seq, text, page, heading, char_start, char_end, tokens) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                let mut insert_vector = tx.prepare_cached(
                    "INSERT INTO chunk_vectors (chunk_id, model, embedding, bits) \
                     VALUES (?1, ?2, vec_f32(?3), vec_quantize_binary(vec_f32(?3))) RETURNING bits",
                )?;
                for (seq, chunk) in chunks.iter().enumerate() {
                    insert_chunk.execute(params![
                        document_id,
                        seq as i64,
                        chunk.text,
                        chunk.page,
                        chunk.heading,
                        chunk.char_start,
                        chunk.char_end,
                        chunk.tokens
                    ])?;
                    let chunk_id = tx.last_insert_rowid();
                    let blob: Vec<u8> = chunk.embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
                    let bits: Vec<u8> =
                        insert_vector.query_row(params![chunk_id, model, blob], |r| r.get(0))?;
                    entries.push(IndexEntry {
                        chunk_id,
                        document_id,
                        collection_id,
                        bits,
                    });
                }
            }
            tx.execute(
                "UPDATE documents SET state = 'ready', error = NULL, chunks = ?2, pages = ?3, indexed_at = ?4 WHERE id = ?1",
                params![document_id, chunks.len() as i64, pages, now()],
            )?;
            tx.commit()?;
            Ok(entries)
        })
        .await
    }

    /// Whether any document refers to the stored file with this digest.
    pub async fn file_in_use(&self, sha256: String) -> Result<bool, StoreError> {
        self.read("file_in_use", move |conn| {
            Ok(conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM documents WHERE sha256 = ?1)",
                [sha256],
                |r| r.get::<_, bool>(0),
            )?)
        })
        .await
    }

    /// Chunks of a document the viewer can read, in order.
    pub async fn chunks(
        &self,
        document_id: i64,
        viewer: Option<i64>,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<Chunk>, i64), StoreError> {
        self.read("chunks", move |conn| {
            get_document(conn, document_id, viewer)?.ok_or(StoreError::NotFound("document"))?;
            let total: i64 = conn.query_row(
                "SELECT count(*) FROM chunks WHERE document_id = ?1",
                [document_id],
                |r| r.get(0),
            )?;
            let mut stmt = conn.prepare_cached(
                "SELECT id, seq, page, heading, text, char_start, char_end FROM chunks \
                 WHERE document_id = ?1 ORDER BY seq LIMIT ?2 OFFSET ?3",
            )?;
            let chunks = stmt
                .query_map(params![document_id, limit, offset], |r| {
                    Ok(Chunk {
                        id: r.get(0)?,
                        seq: r.get(1)?,
                        page: r.get(2)?,
                        heading: r.get(3)?,
                        text: r.get(4)?,
                        char_start: r.get(5)?,
                        char_end: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((chunks, total))
        })
        .await
    }

    /// Every vector's coarse entry (to build the in-memory index at start).
    pub async fn index_entries(&self) -> Result<Vec<IndexEntry>, StoreError> {
        self.read("index_entries", |conn| {
            let mut stmt = conn.prepare(
                "SELECT v.chunk_id, c.document_id, d.collection_id, v.bits FROM chunk_vectors v \
                 JOIN chunks c ON c.id = v.chunk_id JOIN documents d ON d.id = c.document_id",
            )?;
            let entries = stmt
                .query_map([], |r| {
                    Ok(IndexEntry {
                        chunk_id: r.get(0)?,
                        document_id: r.get(1)?,
                        collection_id: r.get(2)?,
                        bits: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(entries)
        })
        .await
    }

    /// Full-precision vectors of some chunks.
    pub async fn chunk_vectors(&self, ids: Vec<i64>) -> Result<Vec<(i64, Vec<f32>)>, StoreError> {
        self.read("chunk_vectors", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT chunk_id, embedding FROM chunk_vectors WHERE chunk_id IN (SELECT value FROM json_each(?1))",
            )?;
            let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
            let out = stmt
                .query_map([ids], |r| {
                    let blob: Vec<u8> = r.get(1)?;
                    let vector = blob
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    Ok((r.get(0)?, vector))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(out)
        })
        .await
    }

    /// Keyword search (FTS5, BM25) within collections: chunk ids, best first. `terms`
    /// are plain words (letters and digits only; anything else is dropped), any of
    /// which may match.
    ///
    /// Ranking every match of a very common word ("the", "is") would cost seconds at a
    /// million chunks and tell little, so terms are taken rarest first while their
    /// matches together stay within [`KEYWORD_POSTINGS`]; the rarest is always taken,
    /// unless it is itself that common and in over a tenth of all chunks, when the
    /// query has no keyword signal and the answer is empty. Under that many chunks,
    /// nothing is left out.
    pub async fn keyword_search(
        &self,
        terms: Vec<String>,
        collections: Vec<i64>,
        documents: Vec<i64>,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        self.read("keyword_search", move |conn| {
            let terms: Vec<String> = terms
                .into_iter()
                .filter(|t| !t.is_empty() && t.chars().all(char::is_alphanumeric))
                .collect();
            let Some(query) = selective_terms(conn, terms, KEYWORD_POSTINGS)? else {
                return Ok(Vec::new());
            };
            let mut stmt = conn.prepare_cached(
                "SELECT f.rowid FROM chunks_fts f JOIN chunks c ON c.id = f.rowid \
                 JOIN documents d ON d.id = c.document_id \
                 WHERE chunks_fts MATCH ?1 AND d.collection_id IN (SELECT value FROM json_each(?2)) \
                 AND (json_array_length(?3) = 0 OR d.id IN (SELECT value FROM json_each(?3))) \
                 ORDER BY bm25(chunks_fts, 1.0, 0.5) LIMIT ?4",
            )?;
            let collections = serde_json::to_string(&collections).unwrap_or_else(|_| "[]".into());
            let documents = serde_json::to_string(&documents).unwrap_or_else(|_| "[]".into());
            let ids = stmt
                .query_map(params![query, collections, documents, limit], |r| r.get(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ids)
        })
        .await
    }

    /// Citation data of chunks, in the order of `ids`.
    pub async fn chunk_hits(&self, ids: Vec<i64>) -> Result<Vec<ChunkHit>, StoreError> {
        self.read("chunk_hits", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT c.id, d.id, d.name, d.media_type, d.collection_id, c.page, c.heading, c.text, \
                 c.char_start, c.char_end FROM chunks c JOIN documents d ON d.id = c.document_id \
                 WHERE c.id IN (SELECT value FROM json_each(?1))",
            )?;
            let json_ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
            let mut hits: Vec<ChunkHit> = stmt
                .query_map([json_ids], |r| {
                    Ok(ChunkHit {
                        chunk_id: r.get(0)?,
                        document_id: r.get(1)?,
                        document_name: r.get(2)?,
                        media_type: r.get(3)?,
                        collection_id: r.get(4)?,
                        page: r.get(5)?,
                        heading: r.get(6)?,
                        text: r.get(7)?,
                        char_start: r.get(8)?,
                        char_end: r.get(9)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            hits.sort_by_key(|h| ids.iter().position(|&i| i == h.chunk_id));
            Ok(hits)
        })
        .await
    }
}

/// Of `shas`, those no document refers to.
fn unreferenced(conn: &Connection, shas: Vec<String>) -> rusqlite::Result<Vec<String>> {
    let mut out = Vec::new();
    for sha in shas {
        let used: i64 = conn.query_row(
            "SELECT count(*) FROM documents WHERE sha256 = ?1",
            [&sha],
            |r| r.get(0),
        )?;
        if used == 0 {
            out.push(sha);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOptions};

    #[tokio::test]
    async fn common_terms_are_left_out_rarest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let store = Store::open(
            &path,
            StoreOptions::new(std::time::Duration::from_secs(5), 1),
        )
        .unwrap();
        let c = store
            .create_collection(None, "c".into(), String::new())
            .await
            .unwrap();
        let new = NewDocument {
            sha256: "cd".repeat(32),
            name: "k.txt".into(),
            media_type: "text".into(),
            size: 1,
            source_url: None,
        };
        let (doc, _) = store.add_document(c.id, None, None, new).await.unwrap();
        let chunks = (0..30)
            .map(|i| NewChunk {
                text: format!(
                    "common words {} {}",
                    if i == 7 { "rare" } else { "" },
                    if i < 4 { "middling" } else { "" }
                ),
                page: None,
                heading: String::new(),
                char_start: 0,
                char_end: 1,
                tokens: 3,
                embedding: vec![0.5; 8],
            })
            .collect();
        store
            .store_chunks(doc.id, doc.job_id.unwrap(), "m".into(), None, chunks)
            .await
            .unwrap();
        let conn = Connection::open(&path).unwrap();
        let pick = |terms: &[&str], budget| {
            selective_terms(&conn, terms.iter().map(|t| t.to_string()).collect(), budget).unwrap()
        };
        assert_eq!(
            pick(&["common", "rare", "middling"], 5).as_deref(),
            Some("\"rare\" OR \"middling\"")
        );
        assert_eq!(
            pick(&["common", "rare"], 100).as_deref(),
            Some("\"rare\" OR \"common\""),
            "small: nothing left out"
        );
        assert_eq!(
            pick(&["common", "words"], 5),
            None,
            "only words in every chunk: no keyword signal"
        );
        assert_eq!(
            pick(&["caf\u{e9}", "common"], 5).as_deref(),
            Some("\"caf\u{e9}\""),
            "unknown to the vocabulary: kept"
        );
        assert_eq!(pick(&[], 5), None);
        // Through the store: only the rare chunk matches once "common" is left out.
        let found = store
            .keyword_search(vec!["rare".into(), "x-y".into()], vec![c.id], vec![], 10)
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
    }
}
