//! Keeps documents with their embeddings; `/search` answers with cosine top-k matches.
//!
//! Storage, in the pea's own workspace directory (one per shard):
//! - `index.snapshot`: MessagePack of every document, written by `close()` (temp file + rename).
//! - `index.log`: records appended by every `/index` and `/delete` since the snapshot, each a
//!   little-endian `u32` length then MessagePack; replayed on start, so even a killed pea keeps
//!   what it acknowledged. A torn last record (a crash mid-write) is cut off at start, before
//!   anything new is appended. When the log outgrows
//!   both [`COMPACT_AT`] and twice the snapshot, it is folded into a new snapshot.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Executor, ExecutorContext};
use crate::runtime::document::Document;

/// Log size from which the log is folded into the snapshot.
pub const COMPACT_AT: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Matches per query when the request has no `top_k` parameter.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
}

fn default_top_k() -> usize {
    10
}

#[derive(Serialize, Deserialize)]
enum LogRecord {
    Upsert(Vec<Document>),
    Delete(Vec<String>),
}

pub struct VectorIndexer {
    config: Config,
    dir: PathBuf,
    docs: Vec<Document>,
    /// L2-normalised embeddings, parallel to `docs`.
    unit: Vec<Vec<f32>>,
    by_id: HashMap<String, usize>,
    log: Option<BufWriter<File>>,
    log_bytes: u64,
    snapshot_bytes: u64,
    compact_at: u64,
}

impl VectorIndexer {
    pub fn open(config: Config, ctx: &ExecutorContext) -> Result<Self, String> {
        let dir = ctx.workspace.clone();
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut indexer = VectorIndexer {
            config,
            dir,
            docs: Vec::new(),
            unit: Vec::new(),
            by_id: HashMap::new(),
            log: None,
            log_bytes: 0,
            snapshot_bytes: 0,
            compact_at: COMPACT_AT,
        };
        indexer.load()?;
        Ok(indexer)
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join("index.snapshot")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("index.log")
    }

    fn load(&mut self) -> Result<(), String> {
        let snapshot = self.snapshot_path();
        if snapshot.exists() {
            let bytes = fs::read(&snapshot).map_err(|e| format!("cannot read {}: {e}", snapshot.display()))?;
            self.snapshot_bytes = bytes.len() as u64;
            let docs: Vec<Document> =
                rmp_serde::from_slice(&bytes).map_err(|e| format!("{} is corrupt: {e}", snapshot.display()))?;
            self.upsert(docs);
        }
        let log = self.log_path();
        if log.exists() {
            let mut bytes = Vec::new();
            File::open(&log)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|e| format!("cannot read {}: {e}", log.display()))?;
            let mut good = 0usize;
            let mut rest = &bytes[..];
            while rest.len() >= 4 {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let Some(body) = rest.get(4..4 + len) else { break };
                match rmp_serde::from_slice::<LogRecord>(body) {
                    Ok(LogRecord::Upsert(docs)) => self.upsert(docs),
                    Ok(LogRecord::Delete(ids)) => self.delete(&ids),
                    Err(_) => break,
                }
                rest = &rest[4 + len..];
                good += 4 + len;
            }
            // A torn tail (a crash mid-write) is cut off before anything is appended: a record
            // written after it would otherwise be unreadable, and lost at the next start.
            if good < bytes.len() {
                tracing::warn!("{}: cutting a torn tail of {} bytes", log.display(), bytes.len() - good);
                let file = OpenOptions::new().write(true).open(&log).map_err(|e| format!("cannot open {}: {e}", log.display()))?;
                file.set_len(good as u64)
                    .and_then(|_| file.sync_all())
                    .map_err(|e| format!("cannot truncate {}: {e}", log.display()))?;
            }
            self.log_bytes = good as u64;
        }
        Ok(())
    }

    fn append(&mut self, record: &LogRecord) -> Result<(), String> {
        if self.log.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .map_err(|e| format!("cannot open the index log: {e}"))?;
            self.log = Some(BufWriter::new(file));
        }
        let body = rmp_serde::to_vec_named(record).map_err(|e| e.to_string())?;
        let len = u32::try_from(body.len()).map_err(|_| "request too large for the index log".to_string())?;
        if let Some(log) = self.log.as_mut() {
            log.write_all(&len.to_le_bytes())
                .and_then(|_| log.write_all(&body))
                .and_then(|_| log.flush())
                .map_err(|e| format!("cannot write the index log: {e}"))?;
        }
        self.log_bytes += 4 + u64::from(len);
        Ok(())
    }

    /// Folds a long log into the snapshot; called after a logged change is applied in memory.
    fn maybe_compact(&mut self) -> Result<(), String> {
        if self.log_bytes > self.compact_at && self.log_bytes > 2 * self.snapshot_bytes {
            self.persist()?;
        }
        Ok(())
    }

    fn upsert(&mut self, docs: Vec<Document>) {
        for mut doc in docs {
            doc.matches.clear();
            let unit = normalised(&doc.embedding);
            match self.by_id.get(&doc.id) {
                Some(&i) => {
                    self.docs[i] = doc;
                    self.unit[i] = unit;
                }
                None => {
                    self.by_id.insert(doc.id.clone(), self.docs.len());
                    self.docs.push(doc);
                    self.unit.push(unit);
                }
            }
        }
    }

    fn delete(&mut self, ids: &[String]) {
        let gone: std::collections::HashSet<&String> = ids.iter().collect();
        let mut kept_docs = Vec::with_capacity(self.docs.len());
        let mut kept_unit = Vec::with_capacity(self.unit.len());
        for (doc, unit) in self.docs.drain(..).zip(self.unit.drain(..)) {
            if !gone.contains(&doc.id) {
                kept_docs.push(doc);
                kept_unit.push(unit);
            }
        }
        self.docs = kept_docs;
        self.unit = kept_unit;
        self.by_id = self.docs.iter().enumerate().map(|(i, d)| (d.id.clone(), i)).collect();
    }

    fn index(&mut self, docs: &[Document]) -> Result<(), String> {
        if let Some(doc) = docs.iter().find(|d| d.embedding.is_empty()) {
            return Err(format!("document `{}` has no embedding: put an encoder before the indexer", doc.id));
        }
        if let Some(doc) = docs.iter().find(|d| d.id.is_empty()) {
            return Err(format!("a document with text `{}` has no id", doc.text));
        }
        let record = LogRecord::Upsert(docs.to_vec());
        self.append(&record)?;
        if let LogRecord::Upsert(docs) = record {
            self.upsert(docs);
        }
        self.maybe_compact()
    }

    fn search(&self, queries: &mut [Document], top_k: usize) -> Result<(), String> {
        for query in queries.iter_mut() {
            if query.embedding.is_empty() {
                return Err(format!("query `{}` has no embedding: put an encoder before the indexer", query.id));
            }
            let q = normalised(&query.embedding);
            let mut scored: Vec<(f32, usize)> = Vec::with_capacity(self.docs.len());
            for (i, unit) in self.unit.iter().enumerate() {
                if unit.len() != q.len() {
                    return Err(format!(
                        "query `{}` has dimension {} but `{}` was indexed with {}",
                        query.id,
                        q.len(),
                        self.docs[i].id,
                        unit.len()
                    ));
                }
                scored.push((q.iter().zip(unit).map(|(a, b)| a * b).sum(), i));
            }
            let k = top_k.min(scored.len());
            if k < scored.len() {
                scored.select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0));
                scored.truncate(k);
            }
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (score, i) in scored {
                let mut m = self.docs[i].clone();
                m.embedding.clear();
                m.scores.insert("cosine".into(), score);
                query.matches.push(m);
            }
        }
        Ok(())
    }
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| x / norm).collect()
}

impl Executor for VectorIndexer {
    fn handle(&mut self, endpoint: &str, docs: &mut Vec<Document>, parameters: &Map<String, Value>) -> Result<(), String> {
        match endpoint {
            "/index" | "/update" => self.index(docs),
            "/search" => {
                let top_k = parameters.get("top_k").and_then(Value::as_u64).map_or(self.config.top_k, |k| k as usize);
                self.search(docs, top_k)
            }
            "/delete" => {
                let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
                self.append(&LogRecord::Delete(ids.clone()))?;
                self.delete(&ids);
                self.maybe_compact()
            }
            _ => Ok(()),
        }
    }

    fn close(&mut self) -> Result<(), String> {
        self.persist()
    }
}

impl VectorIndexer {
    /// Writes a snapshot of everything and empties the log.
    fn persist(&mut self) -> Result<(), String> {
        let tmp = self.dir.join("index.snapshot.tmp");
        let bytes = rmp_serde::to_vec_named(&self.docs).map_err(|e| e.to_string())?;
        self.log = None;
        let (snapshot, log) = (self.snapshot_path(), self.log_path());
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &snapshot)?;
            File::create(&log)?.sync_all()
        };
        write().map_err(|e| format!("cannot persist the index in {}: {e}", self.dir.display()))?;
        self.snapshot_bytes = bytes.len() as u64;
        self.log_bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, e: &[f32]) -> Document {
        Document { id: id.into(), embedding: e.to_vec(), ..Default::default() }
    }

    fn open(dir: &std::path::Path) -> VectorIndexer {
        let ctx = ExecutorContext { workspace: dir.to_path_buf(), ..Default::default() };
        VectorIndexer::open(Config { top_k: 2 }, &ctx).unwrap()
    }

    fn search(ix: &mut VectorIndexer, e: &[f32]) -> Vec<String> {
        let mut q = vec![doc("q", e)];
        ix.handle("/search", &mut q, &Map::new()).unwrap();
        q[0].matches.iter().map(|m| m.id.clone()).collect()
    }

    #[test]
    fn top_k_by_cosine_and_survives_close_and_crash() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = open(dir.path());
        let mut docs = vec![doc("x", &[1.0, 0.0]), doc("y", &[0.0, 1.0]), doc("xy", &[1.0, 1.0])];
        ix.handle("/index", &mut docs, &Map::new()).unwrap();
        assert_eq!(search(&mut ix, &[1.0, 0.1]), ["x", "xy"]);
        ix.close().unwrap();
        drop(ix);
        let mut ix = open(dir.path());
        assert_eq!(search(&mut ix, &[0.0, 1.0]), ["y", "xy"]);
        // No close: the log alone must bring the document back.
        ix.handle("/index", &mut vec![doc("z", &[0.0, -1.0])], &Map::new()).unwrap();
        drop(ix);
        let mut ix = open(dir.path());
        assert_eq!(search(&mut ix, &[0.0, -1.0])[0], "z");
    }

    /// A crash mid-write leaves a torn record; a crash after the next acknowledged write must not
    /// lose that write (it would if it were appended after the torn bytes).
    #[test]
    fn two_crashes_in_a_row_lose_nothing_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("index.log");
        let mut ix = open(dir.path());
        ix.handle("/index", &mut vec![doc("a", &[1.0, 0.0])], &Map::new()).unwrap();
        drop(ix);
        // Crash 1: half a record at the end.
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&200u32.to_le_bytes()).unwrap();
        f.write_all(&[0x92, 0xa6]).unwrap();
        drop(f);
        let mut ix = open(dir.path());
        assert_eq!(ix.docs.len(), 1);
        ix.handle("/index", &mut vec![doc("b", &[0.0, 1.0])], &Map::new()).unwrap();
        // Crash 2: no close, and again a torn tail.
        drop(ix);
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[7, 0]).unwrap();
        drop(f);
        let mut ix = open(dir.path());
        assert_eq!(search(&mut ix, &[0.0, 1.0])[0], "b", "acknowledged after the first crash");
        assert_eq!(ix.docs.len(), 2);
    }

    #[test]
    fn a_long_log_is_folded_into_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = open(dir.path());
        ix.compact_at = 1000;
        for i in 0..50 {
            ix.handle("/index", &mut vec![doc(&format!("d{i}"), &[1.0, i as f32])], &Map::new()).unwrap();
        }
        let log = fs::metadata(dir.path().join("index.log")).unwrap().len();
        assert!(log <= 1000 + 200, "the log was compacted: {log} bytes");
        assert!(dir.path().join("index.snapshot").exists());
        drop(ix);
        let ix = open(dir.path());
        assert_eq!(ix.docs.len(), 50, "snapshot + log hold everything");
    }

    #[test]
    fn documents_without_embedding_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut ix = open(dir.path());
        let err = ix.handle("/index", &mut vec![doc("a", &[])], &Map::new()).unwrap_err();
        assert!(err.contains("encoder"), "{err}");
    }
}
