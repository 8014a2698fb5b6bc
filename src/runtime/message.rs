//! Requests, control messages and their wire format.
//!
//! Every ZeroMQ message jinad sends is ONE frame: a 3-byte header then a MessagePack body
//! (maps with field names, `rmp_serde::to_vec_named`, so fields can be added without breaking
//! older peers). ZeroMQ frames carry their own length, so no further length prefix is needed.
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | magic `0x4A` (`J`) |
//! | 1 | wire version, `1` |
//! | 2 | kind: `1` data request, `2` control request, `3` control reply |
//! | 3.. | MessagePack of [`DataRequest`], [`ControlRequest`] or [`ControlReply`] |
//!
//! See docs/wire-format.md for the field tables.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value};

use super::document::Document;

pub const MAGIC: u8 = 0x4A;
pub const WIRE_VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Data = 1,
    Control = 2,
    ControlReply = 3,
}

/// A request on its way through the Flow, and (on its way back) the response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataRequest {
    pub request_id: String,
    pub endpoint: String,
    pub parameters: Map<String, Value>,
    pub docs: Vec<Document>,
    /// Set by the first pea whose executor failed; later peas pass the request on untouched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<PeaError>,
    /// Names of the peas that handled the request, in order.
    pub routes: Vec<String>,
    /// Where any node may send the request when it cannot go on (the gateway's return socket).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reply_to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeaError {
    /// The pea (or head/tail) that raised it.
    pub pea: String,
    /// Stable machine-readable code: `executor_error`, `executor_panic`, `unreachable`.
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Answer with a [`ControlReply`].
    Status,
    /// Stop taking requests, `close()` the executor (it persists), reply, exit.
    Terminate,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlReply {
    pub name: String,
    pub role: String,
    pub ready: bool,
    /// Requests handled so far.
    pub processed: u64,
    /// Requests the node holds now, waiting for their other parts (a tail collecting shards, a
    /// pea joining several `needs`): what is in flight inside it between two polls.
    pub waiting: u64,
    /// For `terminate`: empty, or why `close()` failed.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame too short ({0} bytes)")]
    Short(usize),
    #[error("not a jinad frame (magic {0:#04x})")]
    Magic(u8),
    #[error("wire version {0} is not supported (this build speaks {WIRE_VERSION})")]
    Version(u8),
    #[error("expected a {expected:?} frame, got kind {got}")]
    Kind { expected: Kind, got: u8 },
    #[error("bad MessagePack body: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("cannot encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

pub fn encode<T: Serialize>(kind: Kind, body: &T) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[MAGIC, WIRE_VERSION, kind as u8]);
    rmp_serde::encode::write_named(&mut out, body)?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(expected: Kind, frame: &[u8]) -> Result<T, WireError> {
    if frame.len() < 3 {
        return Err(WireError::Short(frame.len()));
    }
    if frame[0] != MAGIC {
        return Err(WireError::Magic(frame[0]));
    }
    if frame[1] != WIRE_VERSION {
        return Err(WireError::Version(frame[1]));
    }
    if frame[2] != expected as u8 {
        return Err(WireError::Kind { expected, got: frame[2] });
    }
    Ok(rmp_serde::from_slice(&frame[3..])?)
}

impl DataRequest {
    pub fn to_frame(&self) -> Result<Vec<u8>, WireError> {
        encode(Kind::Data, self)
    }

    pub fn from_frame(frame: &[u8]) -> Result<Self, WireError> {
        decode(Kind::Data, frame)
    }

    /// `parameters` as one executor sees them: the keys under `parameters[<pod name>]`
    /// override the top-level ones (Jina's convention).
    pub fn parameters_for(&self, pod: &str) -> Map<String, Value> {
        let mut params = self.parameters.clone();
        if let Some(Value::Object(own)) = self.parameters.get(pod) {
            for (k, v) in own {
                params.insert(k.clone(), v.clone());
            }
        }
        params
    }

    /// `parameters.top_k` when it is a positive integer.
    pub fn top_k(&self) -> Option<usize> {
        self.parameters.get("top_k").and_then(Value::as_u64).map(|k| k as usize)
    }

    /// The score that orders merged matches: `parameters.metric`, default `cosine`.
    pub fn metric(&self) -> &str {
        self.parameters.get("metric").and_then(Value::as_str).unwrap_or("cosine")
    }

    pub fn fail(&mut self, pea: &str, code: &str, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(PeaError { pea: pea.to_string(), code: code.to_string(), message: message.into() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trip_and_header() {
        let mut req = DataRequest { request_id: "r1".into(), endpoint: "/index".into(), ..Default::default() };
        req.docs.push(Document { id: "d".into(), text: "hello".into(), embedding: vec![0.5, -1.0], ..Default::default() });
        req.parameters.insert("top_k".into(), 3.into());
        let frame = req.to_frame().unwrap();
        assert_eq!(&frame[..3], &[0x4A, 1, 1]);
        assert_eq!(DataRequest::from_frame(&frame).unwrap(), req);
    }

    #[test]
    fn wrong_header_is_a_clear_error() {
        let frame = encode(Kind::Control, &ControlRequest::Status).unwrap();
        assert!(matches!(DataRequest::from_frame(&frame), Err(WireError::Kind { .. })));
        assert!(matches!(DataRequest::from_frame(&[0x4A, 9, 1, 0]), Err(WireError::Version(9))));
        assert!(matches!(DataRequest::from_frame(b"GET / HTTP/1.1"), Err(WireError::Magic(_))));
        assert!(matches!(DataRequest::from_frame(&[0x4A]), Err(WireError::Short(1))));
    }

    #[test]
    fn pod_parameters_override_top_level() {
        let req = DataRequest { parameters: serde_json::from_str(r#"{"top_k": 5, "idx": {"top_k": 2}}"#).unwrap(), ..Default::default() };
        assert_eq!(req.parameters_for("idx")["top_k"], 2);
        assert_eq!(req.parameters_for("enc")["top_k"], 5);
    }
}
