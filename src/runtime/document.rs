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
    /// 32-bit floats: a number outside their range is refused, not turned into infinity.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "strict::finite_vec")]
    #[schema(value_type = Vec<Float32>)]
    pub embedding: Vec<f32>,
    /// Raw bytes: base64 text in JSON, a MessagePack `bin` between peas.
    #[serde(skip_serializing_if = "Vec::is_empty", with = "blob")]
    #[schema(value_type = String, format = Byte, default = "")]
    pub blob: Vec<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "strict::objects")]
    #[schema(no_recursion)]
    pub chunks: Vec<Document>,
    /// Filled by `/search`: the nearest documents, best first, each with `scores.cosine`.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "strict::objects")]
    #[schema(no_recursion)]
    pub matches: Vec<Document>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "strict::finite_map")]
    #[schema(value_type = BTreeMap<String, Float32>)]
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

/// A 32-bit float in the OpenAPI document: a JSON number within f32's finite range.
pub struct Float32;

const F32_JSON_MAX: f64 = 3.4028235e38;

impl utoipa::PartialSchema for Float32 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Float)))
            // f32::MAX as JSON prints it (shortest form, 3.4028235e38), which is a little above
            // f32::MAX as an f64; everything up to it still reads back as a finite f32.
            .minimum(Some(-F32_JSON_MAX))
            .maximum(Some(F32_JSON_MAX))
            .into()
    }
}

impl utoipa::ToSchema for Float32 {}

/// Stricter deserialisation than serde's derive gives: structs only from maps (the derive also
/// takes an array of the fields in order, so `[]` would pass for a document or a body), and
/// f32 values only when they fit (serde_json turns 1e39 into infinity, which JSON cannot carry back).
pub mod strict {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::value::MapAccessDeserializer;
    use serde::de::{Error, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    /// `T`, from a map only.
    pub struct Object<T>(pub T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct MapOnly<T>(PhantomData<T>);
            impl<'de, T: Deserialize<'de>> Visitor<'de> for MapOnly<T> {
                type Value = T;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                    T::deserialize(MapAccessDeserializer::new(map))
                }
            }
            deserializer.deserialize_map(MapOnly(PhantomData)).map(Object)
        }
    }

    /// A list of `T`, each from a map only.
    pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
        Ok(Vec::<Object<T>>::deserialize(deserializer)?.into_iter().map(|o| o.0).collect())
    }

    fn finite<E: Error>(value: f32) -> Result<f32, E> {
        if value.is_finite() {
            Ok(value)
        } else {
            Err(E::custom("a number outside the range of a 32-bit float"))
        }
    }

    pub fn finite_vec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f32>, D::Error> {
        let values = Vec::<f32>::deserialize(deserializer)?;
        values.into_iter().map(finite).collect()
    }

    pub fn finite_map<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, f32>, D::Error> {
        let values = BTreeMap::<String, f32>::deserialize(deserializer)?;
        values.into_iter().map(|(k, v)| finite(v).map(|v| (k, v))).collect()
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

    #[test]
    fn arrays_for_documents_and_overflowing_floats_are_refused() {
        assert!(serde_json::from_str::<Document>(r#"{"chunks": [[]]}"#).is_err());
        assert!(serde_json::from_str::<Document>(r#"{"embedding": [1e39]}"#).is_err());
        assert!(serde_json::from_str::<Document>(r#"{"scores": {"cosine": -1e39}}"#).is_err());
        let ok: Document = serde_json::from_str(r#"{"embedding": [3.4028235e38, 1e-50], "scores": {"c": 0.5}, "matches": [{"id": "m"}]}"#).unwrap();
        // The schema's bound is what f32::MAX prints as: it reads back finite.
        let printed: f64 = serde_json::to_string(&f32::MAX).unwrap().parse().unwrap();
        assert_eq!(printed, F32_JSON_MAX);
        assert_eq!(ok.embedding[0], f32::MAX);
        assert_eq!(ok.matches[0].id, "m");
        assert!(serde_json::from_str::<strict::Object<Document>>("[]").is_err());
        // Between peas (MessagePack, field names) the same rules hold.
        let packed = rmp_serde::to_vec_named(&ok).unwrap();
        assert_eq!(rmp_serde::from_slice::<Document>(&packed).unwrap(), ok);
    }
}
