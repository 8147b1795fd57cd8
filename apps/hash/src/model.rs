//! The messages on `hash_requests` / `hash_responses`, as in the seed, and the hash itself.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A request on `hash_requests` (key: the id). Borrowed when the gateway writes it, so the data
/// is not copied; owned when the processor reads it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HashRequest<'a> {
    pub id: Cow<'a, str>,
    pub data: Cow<'a, str>,
}

/// A reply on `hash_responses`, and the gateway's 200 body.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct HashReply {
    /// The request's id (a UUID).
    pub id: String,
    /// SHA-256 of `data`'s UTF-8 bytes, lower-case hex.
    pub hash: String,
}

/// SHA-256 of `data`, lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    s
}

/// The `data` of a `POST /hash` body, or what is wrong with it.
pub fn parse_data(body: &serde_json::Value) -> Result<&str, String> {
    let Some(obj) = body.as_object() else {
        return Err("the body must be a JSON object like {\"data\": \"…\"}".into());
    };
    match obj.get("data") {
        None => Err("missing field `data`".into()),
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(other) => Err(format!("`data` must be a string, not {}", kind(other))),
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_hex(b"hello world"),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn data_must_be_a_string() {
        assert_eq!(parse_data(&json!({"data": "x"})), Ok("x"));
        assert_eq!(parse_data(&json!({"data": ""})), Ok(""));
        assert_eq!(parse_data(&json!({})), Err("missing field `data`".into()));
        assert!(parse_data(&json!({"data": 5})).unwrap_err().contains("a number"));
        assert!(parse_data(&json!({"data": null})).unwrap_err().contains("null"));
        assert!(parse_data(&json!(["data"])).unwrap_err().contains("JSON object"));
    }
}
