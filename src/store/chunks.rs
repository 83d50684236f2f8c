//! A document's chunks and their vectors, and the queries retrieval runs on them.
//!
//! A document's chunks and vectors are replaced in one transaction together with its
//! state, so a crash leaves either the old index or the new one, never a mix or a
//! duplicate. Access to a document is checked through [`super::documents`]; search
//! queries are given only collections the caller may read.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::conversations::now;
use super::documents::get_document;
use super::{Store, StoreError, immediate};

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

/// Matches a keyword search ranks at most, summed over its terms (see
/// [`Store::keyword_search`]).
pub const KEYWORD_POSTINGS: i64 = 20_000;

/// The FTS5 expression for the terms worth ranking (`"a" OR "b"`) within `budget`
/// matches, `None` when none is.
pub(super) fn selective_terms(
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
