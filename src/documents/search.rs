//! Hybrid retrieval: vectors and keywords, fused by reciprocal rank.
//!
//! 1. The query is embedded with the documents' embedding model.
//! 2. Vector side: the coarse index ([`super::index`]) returns the best candidates by
//!    Hamming distance over binary-quantised vectors (`oversample` × the limit), which
//!    are re-scored by cosine similarity with their full-precision vectors (stored as
//!    sqlite-vec float32 blobs). Candidates under `min_score` are dropped.
//! 3. Keyword side: FTS5 with BM25 over chunk text and headings, the query reduced to
//!    plain words joined by OR (a client cannot inject FTS syntax), very common words
//!    left out at scale (`Store::keyword_search`).
//! 4. Reciprocal rank fusion: score = Σ 1 / (60 + rank) over both lists.
//!
//! Access is decided by the caller: it passes only collections the viewer may read.

use std::collections::HashMap;

use serde::Serialize;

use super::Documents;
use super::index::VectorIndex;
use super::ingest::IngestError;
use crate::store::Store;
use crate::store::chunks::ChunkHit;

/// The RRF constant (as in the original paper and most engines).
const RRF_K: f64 = 60.0;

/// A search request, already authorised.
#[derive(Debug, Clone)]
pub struct Query {
    /// The text.
    pub text: String,
    /// Collections to search (readable by the viewer).
    pub collections: Vec<i64>,
    /// Only these documents, when not empty.
    pub documents: Vec<i64>,
    /// Results wanted.
    pub limit: usize,
    /// Least cosine similarity for a vector match to count.
    pub min_score: f32,
    /// Who asks (for admission in the embedding worker).
    pub user: i64,
}

/// One result.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// The chunk and its citation data.
    #[serde(flatten)]
    pub chunk: ChunkHit,
    /// The fused score (higher is better).
    pub score: f64,
    /// Cosine similarity to the query, when the chunk matched by vector.
    pub similarity: Option<f32>,
    /// Rank among keyword matches (1-based), when it matched by keyword.
    pub keyword_rank: Option<usize>,
}

/// Candidates fetched per wanted result in the coarse pass.
pub const OVERSAMPLE: usize = 20;
/// Candidates per side for fusion, at least.
const MIN_CANDIDATES: usize = 50;

/// The words of free text a keyword search looks for: letters and digits only,
/// lower-cased, each once, at most 32 (so a client cannot pass FTS5 syntax).
pub fn keyword_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect();
    terms.sort();
    terms.dedup();
    terms.truncate(32);
    terms
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fuses ranked lists of ids by reciprocal rank.
pub fn fuse(lists: &[&[i64]]) -> Vec<(i64, f64)> {
    let mut scores: HashMap<i64, f64> = HashMap::new();
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            *scores.entry(*id).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
    }
    let mut out: Vec<(i64, f64)> = scores.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Vector-side results wanted per side of the fusion when a search wants `limit`.
pub fn per_side(limit: usize) -> usize {
    (limit * 3).max(MIN_CANDIDATES)
}

/// The vector side of a search over a loaded index: the coarse pass, then exact
/// cosine re-scoring of its candidates with their stored full-precision vectors; best
/// first, only those at or above `min_score`. Blocking work runs off the runtime.
pub async fn nearest(
    index: &VectorIndex,
    store: &Store,
    vector: &[f32],
    collections: &[i64],
    documents: &[i64],
    limit: usize,
    min_score: f32,
) -> Result<Vec<(i64, f32)>, IngestError> {
    let index = index.clone();
    let (v, c, d) = (vector.to_vec(), collections.to_vec(), documents.to_vec());
    let wanted = (limit * OVERSAMPLE).max(MIN_CANDIDATES * 4);
    let candidates = tokio::task::spawn_blocking(move || index.candidates(&v, &c, &d, wanted))
        .await
        .map_err(|e| IngestError::Fatal(e.to_string()))?;
    let vectors = store.chunk_vectors(candidates).await?;
    let mut scored: Vec<(i64, f32)> = vectors
        .iter()
        .map(|(id, v)| (*id, cosine(vector, v)))
        .filter(|(_, s)| *s >= min_score)
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(limit);
    Ok(scored)
}

impl Documents {
    /// Hybrid search.
    pub async fn search(&self, query: Query) -> Result<Vec<Hit>, IngestError> {
        let limit = query.limit.clamp(1, 100);
        if query.collections.is_empty() {
            return Ok(Vec::new());
        }
        let spec = self.embedding_model()?;
        let embedded = self
            .engine
            .embed(&spec, query.user, vec![query.text.clone()], true, None)
            .await?;
        let vector = embedded.vectors.into_iter().next().unwrap_or_default();
        let each_side = per_side(limit);
        self.ensure_index().await?;
        let by_vector = nearest(
            &self.index,
            &self.store,
            &vector,
            &query.collections,
            &query.documents,
            each_side,
            query.min_score,
        )
        .await?;
        let by_keyword = self
            .store
            .keyword_search(
                keyword_terms(&query.text),
                query.collections.clone(),
                query.documents.clone(),
                each_side as u32,
            )
            .await?;
        let vector_ids: Vec<i64> = by_vector.iter().map(|(id, _)| *id).collect();
        let fused = fuse(&[&vector_ids, &by_keyword]);
        let top: Vec<(i64, f64)> = fused.into_iter().take(limit).collect();
        let hits = self
            .store
            .chunk_hits(top.iter().map(|(id, _)| *id).collect())
            .await?;
        let similarity: HashMap<i64, f32> = by_vector.into_iter().collect();
        let scores: HashMap<i64, f64> = top.into_iter().collect();
        Ok(hits
            .into_iter()
            .map(|chunk| Hit {
                score: scores.get(&chunk.chunk_id).copied().unwrap_or(0.0),
                similarity: similarity.get(&chunk.chunk_id).copied(),
                keyword_rank: by_keyword
                    .iter()
                    .position(|&id| id == chunk.chunk_id)
                    .map(|r| r + 1),
                chunk,
            })
            .collect())
    }

    /// Loads the coarse index from the database once.
    pub async fn ensure_index(&self) -> Result<(), IngestError> {
        if self.index.is_loaded() {
            return Ok(());
        }
        let _guard = self.index_loading.lock().await;
        if !self.index.is_loaded() {
            let entries = self.store.index_entries().await?;
            let index = self.index.clone();
            tokio::task::spawn_blocking(move || index.load(entries))
                .await
                .map_err(|e| IngestError::Fatal(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_terms_cannot_carry_syntax() {
        assert_eq!(
            keyword_terms("cat AND \"dog\" NEAR(x)* Cat"),
            ["and", "cat", "dog", "near", "x"]
        );
        assert!(keyword_terms("  -- ** ").is_empty());
    }

    #[test]
    fn fusion_rewards_agreement() {
        let fused = fuse(&[&[1, 2, 3], &[3, 4]]);
        assert_eq!(fused[0].0, 3, "in both lists beats first in one");
        assert_eq!(fused.len(), 4);
    }
}
