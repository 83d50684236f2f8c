//! The in-memory coarse vector index: one bit per dimension of every chunk's vector
//! (the sign, as sqlite-vec's `vec_quantize_binary` stores it), grouped by collection.
//!
//! A search scans the bits of the collections it may read by Hamming distance (384
//! dimensions are 6 machine words: a million chunks scan in milliseconds) and keeps the
//! best candidates, which [`super::search`] re-scores with the full-precision vectors
//! from SQLite. The index is rebuilt from the database at start and updated as
//! documents are indexed or deleted; the database stays the truth.

use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::store::chunks::IndexEntry;

#[derive(Default)]
struct Group {
    chunk_ids: Vec<i64>,
    document_ids: Vec<i64>,
    /// `words` u64 per entry, entries back to back.
    bits: Vec<u64>,
}

#[derive(Default)]
struct Inner {
    words: usize,
    groups: HashMap<i64, Group>,
    loaded: bool,
}

/// The coarse index. Cheap to clone.
#[derive(Clone, Default)]
pub struct VectorIndex {
    inner: Arc<RwLock<Inner>>,
}

fn to_words(bits: &[u8], words: usize) -> impl Iterator<Item = u64> + '_ {
    (0..words).map(move |w| {
        let mut word = [0u8; 8];
        let from = (w * 8).min(bits.len());
        let to = (w * 8 + 8).min(bits.len());
        word[..to - from].copy_from_slice(&bits[from..to]);
        u64::from_le_bytes(word)
    })
}

/// Quantises a vector the way sqlite-vec does: bit i (LSB first within each byte) is
/// set when component i is positive.
pub fn quantize(vector: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; vector.len().div_ceil(8)];
    for (i, x) in vector.iter().enumerate() {
        if *x > 0.0 {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

impl VectorIndex {
    /// Whether the index has been loaded from the database.
    pub fn is_loaded(&self) -> bool {
        self.inner.read().loaded
    }

    /// Replaces the whole index (start-up).
    pub fn load(&self, entries: Vec<IndexEntry>) {
        let mut inner = self.inner.write();
        inner.groups.clear();
        inner.words = entries.first().map_or(0, |e| e.bits.len().div_ceil(8));
        drop(inner);
        self.add(entries);
        self.inner.write().loaded = true;
    }

    /// Adds entries (a document just indexed), replacing that document's old ones.
    pub fn add(&self, entries: Vec<IndexEntry>) {
        let mut inner = self.inner.write();
        if inner.words == 0 {
            inner.words = entries.first().map_or(0, |e| e.bits.len().div_ceil(8));
        }
        let words = inner.words;
        if let Some(first) = entries.first() {
            let (doc, collection) = (first.document_id, first.collection_id);
            drop(inner);
            self.remove_document(collection, doc);
            inner = self.inner.write();
        }
        for entry in entries {
            if entry.bits.len().div_ceil(8) != words {
                continue; // another model's width: not searchable with this one
            }
            let group = inner.groups.entry(entry.collection_id).or_default();
            group.chunk_ids.push(entry.chunk_id);
            group.document_ids.push(entry.document_id);
            group.bits.extend(to_words(&entry.bits, words));
        }
    }

    /// Drops a document's entries.
    pub fn remove_document(&self, collection_id: i64, document_id: i64) {
        let mut inner = self.inner.write();
        let words = inner.words;
        let Some(group) = inner.groups.get_mut(&collection_id) else {
            return;
        };
        if !group.document_ids.contains(&document_id) {
            return;
        }
        let mut kept = Group::default();
        for i in 0..group.chunk_ids.len() {
            if group.document_ids[i] != document_id {
                kept.chunk_ids.push(group.chunk_ids[i]);
                kept.document_ids.push(group.document_ids[i]);
                kept.bits
                    .extend_from_slice(&group.bits[i * words..(i + 1) * words]);
            }
        }
        *group = kept;
    }

    /// Drops a collection's entries.
    pub fn remove_collection(&self, collection_id: i64) {
        self.inner.write().groups.remove(&collection_id);
    }

    /// Entries in all.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .groups
            .values()
            .map(|g| g.chunk_ids.len())
            .sum()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `limit` chunks nearest to `query` by Hamming distance, within `collections`
    /// (and `documents`, when not empty).
    pub fn candidates(
        &self,
        query: &[f32],
        collections: &[i64],
        documents: &[i64],
        limit: usize,
    ) -> Vec<i64> {
        let inner = self.inner.read();
        let words = inner.words;
        if words == 0 || limit == 0 || query.len().div_ceil(64) != words {
            return Vec::new();
        }
        let q: Vec<u64> = to_words(&quantize(query), words).collect();
        // Max-heap of (distance, chunk id): the worst kept candidate on top.
        let mut heap: BinaryHeap<(u32, i64)> = BinaryHeap::with_capacity(limit + 1);
        for collection in collections {
            let Some(group) = inner.groups.get(collection) else {
                continue;
            };
            for (i, bits) in group.bits.chunks_exact(words).enumerate() {
                if !documents.is_empty() && !documents.contains(&group.document_ids[i]) {
                    continue;
                }
                let distance: u32 = bits.iter().zip(&q).map(|(a, b)| (a ^ b).count_ones()).sum();
                if heap.len() < limit {
                    heap.push((distance, group.chunk_ids[i]));
                } else if let Some(&(worst, _)) = heap.peek()
                    && distance < worst
                {
                    heap.pop();
                    heap.push((distance, group.chunk_ids[i]));
                }
            }
        }
        let mut out = heap.into_vec();
        out.sort_unstable();
        out.into_iter().map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(chunk: i64, doc: i64, collection: i64, v: &[f32]) -> IndexEntry {
        IndexEntry {
            chunk_id: chunk,
            document_id: doc,
            collection_id: collection,
            bits: quantize(v),
        }
    }

    #[test]
    fn nearest_by_hamming_within_the_allowed_collections() {
        let index = VectorIndex::default();
        let mut a = vec![1.0f32; 70];
        let mut b = vec![-1.0f32; 70];
        b[0] = 1.0;
        a[69] = -1.0;
        index.load(vec![
            entry(1, 10, 100, &a),
            entry(2, 20, 100, &b),
            entry(3, 30, 200, &a),
        ]);
        let q = vec![1.0f32; 70];
        assert_eq!(index.candidates(&q, &[100], &[], 2), vec![1, 2]);
        assert_eq!(index.candidates(&q, &[100, 200], &[], 2).len(), 2);
        assert_eq!(index.candidates(&q, &[100], &[20], 5), vec![2]);
        assert_eq!(index.candidates(&q, &[300], &[], 5), Vec::<i64>::new());
        index.remove_document(100, 10);
        assert_eq!(index.candidates(&q, &[100], &[], 5), vec![2]);
        index.add(vec![entry(4, 20, 100, &a)]);
        assert_eq!(
            index.candidates(&q, &[100], &[], 5),
            vec![4],
            "re-indexing replaces a document's entries"
        );
    }
}
