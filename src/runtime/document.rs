//! The Document: what flows through executors. JSON at the gateway, MessagePack between peas.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One document. Every field is optional on the wire; empty fields are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Document {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uri: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mime_type: String,
    /// Any JSON object.
    #[serde(skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub tags: Map<String, Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub embedding: Vec<f32>,
    /// Raw bytes: base64 text in JSON, a MessagePack `bin` between peas.
    #[serde(skip_serializing_if = "Vec::is_empty", with = "blob")]
    #[schema(value_type = String, format = Byte, default = "")]
    pub blob: Vec<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub chunks: Vec<Document>,
    /// Filled by `/search`: the nearest documents, best first, each with `scores.cosine`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub matches: Vec<Document>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, f32>,
}

impl Document {
    /// Merges what `other` (the same document, seen by another branch or shard) adds to `self`:
    /// matches and chunks are appended, missing tags, scores and embedding are taken over.
    pub fn absorb(&mut self, other: Document) {
        self.matches.extend(other.matches);
        self.chunks.extend(other.chunks);
        for (key, value) in other.tags {
            self.tags.entry(key).or_insert(value);
        }
        for (key, value) in other.scores {
            self.scores.entry(key).or_insert(value);
        }
        if self.embedding.is_empty() {
            self.embedding = other.embedding;
        }
        if self.text.is_empty() {
            self.text = other.text;
        }
        if self.blob.is_empty() {
            self.blob = other.blob;
        }
    }

    /// Orders matches by `metric` (highest first; matches without it last) and keeps `top_k`.
    pub fn rank_matches(&mut self, metric: &str, top_k: Option<usize>) {
        let score = |d: &Document| d.scores.get(metric).copied().unwrap_or(f32::NEG_INFINITY);
        self.matches.sort_by(|a, b| score(b).total_cmp(&score(a)));
        if let Some(k) = top_k {
            self.matches.truncate(k);
        }
    }
}

mod blob {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("blob is not base64: {e}")))
        } else {
            Ok(serde_bytes_buf::deserialize(deserializer)?)
        }
    }

    mod serde_bytes_buf {
        use serde::de::{Deserializer, Error, SeqAccess, Visitor};
        use std::fmt;

        struct BytesVisitor;

        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            d.deserialize_byte_buf(BytesVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, score: Option<f32>) -> Document {
        let mut d = Document { id: id.into(), ..Default::default() };
        if let Some(s) = score {
            d.scores.insert("cosine".into(), s);
        }
        d
    }

    #[test]
    fn blob_is_base64_in_json_and_bytes_in_msgpack() {
        let d = Document { id: "a".into(), blob: vec![0, 1, 255], ..Default::default() };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, r#"{"id":"a","blob":"AAH/"}"#);
        assert_eq!(serde_json::from_str::<Document>(&json).unwrap(), d);
        let packed = rmp_serde::to_vec_named(&d).unwrap();
        assert!(packed.windows(3).any(|w| w == [0, 1, 255]), "raw bytes on the wire");
        assert_eq!(rmp_serde::from_slice::<Document>(&packed).unwrap(), d);
    }

    #[test]
    fn ranking_sorts_by_metric_and_cuts() {
        let mut q = doc("q", None);
        q.matches = vec![doc("a", Some(0.1)), doc("b", None), doc("c", Some(0.9)), doc("d", Some(0.5))];
        q.rank_matches("cosine", Some(3));
        let ids: Vec<_> = q.matches.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["c", "d", "a"]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<Document>(r#"{"txt":"x"}"#).is_err());
    }
}
