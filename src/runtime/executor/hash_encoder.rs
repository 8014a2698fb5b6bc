//! A deterministic text encoder: feature hashing of lower-cased word tokens into `dim` buckets
//! (signed, so collisions cancel rather than pile up), L2-normalised. Same text → same vector on
//! every machine and run, so search works with no model.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::Executor;
use crate::runtime::document::Document;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_dim")]
    pub dim: usize,
}

fn default_dim() -> usize {
    128
}

impl Config {
    pub fn validated(self) -> Result<Self, String> {
        if self.dim == 0 || self.dim > 65_536 {
            return Err(format!("dim must be between 1 and 65536 (got {})", self.dim));
        }
        Ok(self)
    }
}

pub struct HashEncoder {
    config: Config,
}

impl HashEncoder {
    pub fn new(config: Config) -> Self {
        HashEncoder { config }
    }

    pub fn encode(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.config.dim];
        for token in text.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()) {
            let h = fnv1a(token.chars().flat_map(char::to_lowercase));
            let bucket = (h % self.config.dim as u64) as usize;
            v[bucket] += if h >> 63 == 0 { 1.0 } else { -1.0 };
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

/// FNV-1a over the UTF-8 bytes: stable across platforms and Rust versions (unlike std's hasher).
fn fnv1a(chars: impl Iterator<Item = char>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = [0u8; 4];
    for c in chars {
        for b in c.encode_utf8(&mut buf).bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Executor for HashEncoder {
    /// Encodes on every endpoint: documents with text get an embedding.
    fn handle(&mut self, _: &str, docs: &mut Vec<Document>, _: &Map<String, Value>) -> Result<(), String> {
        for doc in docs.iter_mut().filter(|d| !d.text.is_empty()) {
            doc.embedding = self.encode(&doc.text);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_normalised_and_similar_for_similar_text() {
        let enc = HashEncoder::new(Config { dim: 64 });
        let a = enc.encode("The quick brown fox");
        assert_eq!(a, enc.encode("the QUICK brown fox!"));
        assert!((a.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
        assert!(dot(&a, &enc.encode("quick brown fox jumps")) > dot(&a, &enc.encode("lazy dog sleeps")));
        assert!(enc.encode("").iter().all(|x| *x == 0.0));
    }
}
