//! Collections and documents (their chunks and vectors: [`super::chunks`]).
//!
//! Access is decided here, in the queries, by a `viewer`: `None` sees everything (an
//! administrator), `Some(user)` sees that user's collections and the shared ones, and
//! may change only their own.

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

pub(super) fn get_document(
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
