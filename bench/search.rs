//! Retrieval at scale, the way the daemon searches: synthetic 384-d unit vectors (and
//! short synthetic texts) are stored through the store's own `store_chunks` into a real
//! SQLite file, the coarse index is loaded through `index_entries`, and every query goes
//! through `documents::search::nearest` (Hamming pass over binary-quantised vectors, then
//! cosine re-scoring of the candidates read back from SQLite) with the candidate count a
//! 10-result search uses. Measured at each size, growing one database:
//!
//! - ours: p50/p99 latency and recall@10 against exact brute force (cosine over all
//!   vectors, in memory, in this process);
//! - the references: sqlite-vec's own brute-force KNN (`ORDER BY vec_distance_cosine
//!   LIMIT 10` over the same table) and the in-memory exact scan;
//! - the keyword side: FTS5/BM25 (`Store::keyword_search`) p50/p99 for two-word queries;
//! - loading the coarse index from the database (what a restart costs) and its memory.
//!
//! The vectors are clustered like sentence embeddings: 256 topics × 64 subtopics, each
//! vector `0.55·topic + 0.55·subtopic + 0.63·noise`, normalised (same subtopic ≈ 0.6
//! cosine, same topic ≈ 0.3, unrelated ≈ 0); queries are fresh samples of random
//! subtopics. Everything is seeded: two runs store the same data.
//!
//! `cargo bench --bench search -- [--sizes 10000,100000,1000000] [--queries N]
//!  [--reference-queries N] [--dir DIR] [--json PATH]`

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use appliance::documents::index::VectorIndex;
use appliance::documents::search::{keyword_terms, nearest, per_side};
use appliance::store::chunks::NewChunk;
use appliance::store::documents::NewDocument;
use appliance::store::{Store, StoreOptions};

const DIM: usize = 384;
const TOPICS: usize = 256;
const SUBTOPICS_PER_TOPIC: usize = 64;
const CHUNKS_PER_DOCUMENT: usize = 1000;
const VOCABULARY: usize = 20_000;
const WORDS_PER_CHUNK: usize = 24;
const K: usize = 10;

struct Args {
    sizes: Vec<usize>,
    queries: usize,
    reference_queries: usize,
    dir: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        sizes: vec![10_000, 100_000, 1_000_000],
        queries: 200,
        reference_queries: 10,
        dir: None,
        json: None,
    };
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--sizes: comma-separated counts")?;
            }
            "--queries" => args.queries = value()?.parse().context("--queries")?,
            "--reference-queries" => {
                args.reference_queries = value()?.parse().context("--reference-queries")?
            }
            "--dir" => args.dir = Some(value()?.into()),
            "--json" => args.json = Some(value()?.into()),
            other => {
                bail!("unknown argument {other}; see the comment at the top of bench/search.rs")
            }
        }
    }
    args.sizes.sort_unstable();
    args.sizes.dedup();
    if args.sizes.is_empty() || args.sizes[0] == 0 || args.queries == 0 {
        bail!("--sizes and --queries must be positive");
    }
    Ok(args)
}

/// splitmix64: small, seeded, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal sample (Box–Muller).
    fn gaussian(&mut self) -> f32 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    fn unit(&mut self) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIM).map(|_| self.gaussian()).collect();
        normalise(&mut v);
        v
    }
}

fn normalise(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
}

struct Corpus {
    topics: Vec<Vec<f32>>,
    subtopics: Vec<Vec<f32>>,
}

impl Corpus {
    fn new(rng: &mut Rng) -> Corpus {
        Corpus {
            topics: (0..TOPICS).map(|_| rng.unit()).collect(),
            subtopics: (0..TOPICS * SUBTOPICS_PER_TOPIC)
                .map(|_| rng.unit())
                .collect(),
        }
    }

    fn sample(&self, rng: &mut Rng) -> Vec<f32> {
        let sub = rng.below(self.subtopics.len());
        let topic = &self.topics[sub / SUBTOPICS_PER_TOPIC];
        let noise = rng.unit();
        let mut v: Vec<f32> = (0..DIM)
            .map(|i| 0.55 * topic[i] + 0.55 * self.subtopics[sub][i] + 0.63 * noise[i])
            .collect();
        normalise(&mut v);
        v
    }
}

/// A word of the synthetic vocabulary; low indices are common (roughly Zipf).
fn word(rng: &mut Rng) -> String {
    let r = rng.uniform();
    format!("w{}", (VOCABULARY as f64).powf(r) as usize - 1)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Exact top-k by cosine over the first `n` stored vectors: chunk ids, best first.
fn exact(query: &[f32], vectors: &[f32], ids: &[i64], n: usize) -> Vec<i64> {
    let mut best: Vec<(f32, i64)> = Vec::with_capacity(K + 1);
    for (i, v) in vectors.chunks_exact(DIM).take(n).enumerate() {
        let s = dot(query, v);
        if best.len() < K || s > best[K - 1].0 {
            let at = best.partition_point(|(b, _)| *b >= s);
            best.insert(at, (s, ids[i]));
            best.truncate(K);
        }
    }
    best.into_iter().map(|(_, id)| id).collect()
}

fn recall(found: &[i64], truth: &[i64]) -> f64 {
    let truth: HashSet<i64> = truth.iter().copied().collect();
    found.iter().take(K).filter(|id| truth.contains(id)).count() as f64 / truth.len().max(1) as f64
}

fn percentile(samples: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    if ms.is_empty() {
        return f64::NAN;
    }
    ms[((ms.len() - 1) as f64 * p).round() as usize]
}

#[derive(serde::Serialize)]
struct Row {
    chunks: usize,
    insert_s: f64,
    db_mib: f64,
    index_load_ms: f64,
    index_mib: f64,
    ours_p50_ms: f64,
    ours_p99_ms: f64,
    ours_recall_at_10: f64,
    exact_scan_p50_ms: f64,
    sqlite_vec_p50_ms: f64,
    sqlite_vec_recall_at_10: f64,
    keyword_p50_ms: f64,
    keyword_p99_ms: f64,
}

struct Bench {
    store: Store,
    db: PathBuf,
    collection: i64,
    corpus: Corpus,
    data: Rng,
    vectors: Vec<f32>,
    ids: Vec<i64>,
    documents: usize,
}

impl Bench {
    /// Stores chunks until there are `n`, a document of `CHUNKS_PER_DOCUMENT` at a time,
    /// through the same call the ingestion jobs use.
    async fn grow(&mut self, n: usize) -> anyhow::Result<()> {
        while self.ids.len() < n {
            let count = CHUNKS_PER_DOCUMENT.min(n - self.ids.len());
            self.documents += 1;
            let (doc, _) = self
                .store
                .add_document(
                    self.collection,
                    None,
                    None,
                    NewDocument {
                        sha256: format!("{:064x}", self.documents),
                        name: format!("synthetic-{}.txt", self.documents),
                        media_type: "text".into(),
                        size: 0,
                        source_url: None,
                    },
                )
                .await?;
            let job = doc.job_id.context("a new document has its indexing job")?;
            let mut chunks = Vec::with_capacity(count);
            for seq in 0..count {
                let embedding = self.corpus.sample(&mut self.data);
                self.vectors.extend_from_slice(&embedding);
                let text: Vec<String> =
                    (0..WORDS_PER_CHUNK).map(|_| word(&mut self.data)).collect();
                let text = text.join(" ");
                chunks.push(NewChunk {
                    char_start: (seq * 200) as i64,
                    char_end: (seq * 200 + text.len()) as i64,
                    tokens: WORDS_PER_CHUNK as i64,
                    text,
                    page: None,
                    heading: String::new(),
                    embedding,
                });
            }
            let entries = self
                .store
                .store_chunks(doc.id, job, "synthetic-384".into(), None, chunks)
                .await?;
            self.ids.extend(entries.iter().map(|e| e.chunk_id));
        }
        Ok(())
    }

    async fn measure(&mut self, n: usize, insert_s: f64, args: &Args) -> anyhow::Result<Row> {
        // What a restart does: read every coarse entry and build the index.
        let started = Instant::now();
        let entries = self.store.index_entries().await?;
        let index = VectorIndex::default();
        let loading = index.clone();
        tokio::task::spawn_blocking(move || loading.load(entries)).await?;
        let index_load_ms = started.elapsed().as_secs_f64() * 1000.0;
        let index_mib = (index.len() * (DIM / 8 + 16)) as f64 / (1 << 20) as f64;

        let mut rng = Rng(0x5EED_0000 + n as u64);
        let queries: Vec<Vec<f32>> = (0..args.queries)
            .map(|_| self.corpus.sample(&mut rng))
            .collect();
        let truths: Vec<Vec<i64>> = queries
            .iter()
            .map(|q| exact(q, &self.vectors, &self.ids, n))
            .collect();

        let collections = [self.collection];
        for q in queries.iter().take(10) {
            nearest(&index, &self.store, q, &collections, &[], per_side(K), -1.0).await?;
        }
        let (mut times, mut recalls) = (Vec::new(), Vec::new());
        for (q, truth) in queries.iter().zip(&truths) {
            let t = Instant::now();
            let found =
                nearest(&index, &self.store, q, &collections, &[], per_side(K), -1.0).await?;
            times.push(t.elapsed());
            let ids: Vec<i64> = found.iter().map(|(id, _)| *id).collect();
            recalls.push(recall(&ids, truth));
        }

        let reference = args.reference_queries.min(queries.len());
        let mut exact_times = Vec::new();
        for q in queries.iter().take(reference) {
            let t = Instant::now();
            std::hint::black_box(exact(q, &self.vectors, &self.ids, n));
            exact_times.push(t.elapsed());
        }
        let (sqlite_times, sqlite_recalls) = self.sqlite_vec_knn(&queries[..reference], &truths)?;

        let mut words = Rng(0xF75 + n as u64);
        let mut keyword_times = Vec::new();
        for _ in 0..args.queries {
            let text = format!("{} {}", word(&mut words), word(&mut words));
            let t = Instant::now();
            self.store
                .keyword_search(
                    keyword_terms(&text),
                    collections.to_vec(),
                    Vec::new(),
                    per_side(K) as u32,
                )
                .await?;
            keyword_times.push(t.elapsed());
        }

        Ok(Row {
            chunks: n,
            insert_s,
            db_mib: fs_err::metadata(&self.db)?.len() as f64 / (1 << 20) as f64,
            index_load_ms,
            index_mib,
            ours_p50_ms: percentile(&times, 0.5),
            ours_p99_ms: percentile(&times, 0.99),
            ours_recall_at_10: recalls.iter().sum::<f64>() / recalls.len() as f64,
            exact_scan_p50_ms: percentile(&exact_times, 0.5),
            sqlite_vec_p50_ms: percentile(&sqlite_times, 0.5),
            sqlite_vec_recall_at_10: sqlite_recalls,
            keyword_p50_ms: percentile(&keyword_times, 0.5),
            keyword_p99_ms: percentile(&keyword_times, 0.99),
        })
    }

    /// sqlite-vec's brute-force KNN over the same table, on its own connection.
    fn sqlite_vec_knn(
        &self,
        queries: &[Vec<f32>],
        truths: &[Vec<i64>],
    ) -> anyhow::Result<(Vec<Duration>, f64)> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let mut stmt = conn.prepare(
            "SELECT chunk_id FROM chunk_vectors ORDER BY vec_distance_cosine(embedding, vec_f32(?1)) LIMIT 10",
        )?;
        let (mut times, mut recalls) = (Vec::new(), 0.0);
        for (q, truth) in queries.iter().zip(truths) {
            let blob: Vec<u8> = q.iter().flat_map(|x| x.to_le_bytes()).collect();
            let t = Instant::now();
            let ids = stmt
                .query_map([blob], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            times.push(t.elapsed());
            recalls += recall(&ids, truth);
        }
        Ok((times, recalls / queries.len().max(1) as f64))
    }
}

async fn run(args: Args) -> anyhow::Result<Vec<Row>> {
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let db = dir.join("search-bench.db");
    if db.exists() {
        bail!("{} exists: pass an empty --dir", db.display());
    }
    let path = db.clone();
    let store = tokio::task::spawn_blocking(move || {
        Store::open(&path, StoreOptions::new(Duration::from_secs(30), 2))
    })
    .await??;
    let collection = store
        .create_collection(None, "bench".into(), String::new())
        .await?
        .id;
    let mut seed = Rng(42);
    let corpus = Corpus::new(&mut seed);
    let mut bench = Bench {
        store,
        db,
        collection,
        corpus,
        data: Rng(7),
        vectors: Vec::new(),
        ids: Vec::new(),
        documents: 0,
    };
    let mut rows = Vec::new();
    let mut inserted = Duration::ZERO;
    for &n in &args.sizes {
        eprintln!("search bench: storing {n} chunks…");
        let t = Instant::now();
        bench.grow(n).await?;
        inserted += t.elapsed();
        eprintln!("search bench: measuring at {n} chunks…");
        let row = bench.measure(n, inserted.as_secs_f64(), &args).await?;
        eprintln!("{}", serde_json::to_string(&row)?);
        rows.push(row);
    }
    Ok(rows)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let json = args.json.clone();
    let queries = args.queries;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rows = runtime.block_on(run(args))?;

    println!(
        "| chunks | ours p50 / p99 ms | recall@10 | exact scan p50 ms | sqlite-vec KNN p50 ms (recall) | \
         speed-up vs sqlite-vec | keyword p50 / p99 ms | index load ms / MiB | DB MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.2} / {:.2} | {:.3} | {:.1} | {:.1} ({:.2}) | {:.0}× | {:.2} / {:.2} | {:.0} / {:.0} | {:.0} |",
            r.chunks,
            r.ours_p50_ms,
            r.ours_p99_ms,
            r.ours_recall_at_10,
            r.exact_scan_p50_ms,
            r.sqlite_vec_p50_ms,
            r.sqlite_vec_recall_at_10,
            r.sqlite_vec_p50_ms / r.ours_p50_ms,
            r.keyword_p50_ms,
            r.keyword_p99_ms,
            r.index_load_ms,
            r.index_mib,
            r.db_mib,
        );
    }
    println!("({queries} queries per size; references over the first --reference-queries of them)");
    if let Some(path) = json {
        fs_err::write(&path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
