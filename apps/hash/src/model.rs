//! The messages on `hash_requests` / `hash_responses`, as in the seed, and the hash itself.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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

/// The `data` of a `POST /hash` body, or what is wrong with it. One reading, borrowing `data`
/// from the body where it has no escapes. A field given twice is refused, as in every app.
pub fn parse_body(body: &[u8]) -> Result<Cow<'_, str>, String> {
    #[derive(Deserialize)]
    struct Body<'a> {
        // `None` only when absent: a `null` is a value here, and not a string.
        #[serde(borrow, default, deserialize_with = "present")]
        data: Option<&'a RawValue>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
        <&RawValue>::deserialize(d).map(Some)
    }
    let object = "the body must be a JSON object like {\"data\": \"…\"}";
    // A derived struct also reads an array (`["x"]` as its fields in order): objects only.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => object.into(),
            Err(e) => format!("invalid JSON: {e}"),
        });
    }
    let data = match serde_json::from_slice::<Body>(body) {
        Ok(Body { data: Some(data) }) => data,
        Ok(Body { data: None }) => return Err("missing field `data`".into()),
        Err(e) if e.is_syntax() || e.is_eof() => return Err(format!("invalid JSON: {e}")),
        Err(e) if e.to_string().starts_with("duplicate field") => return Err(format!("{e}: give it once")),
        Err(_) => return Err(object.into()),
    };
    let raw = data.get();
    // A string without escapes is borrowed as it is; one with escapes is unescaped into a copy.
    if let Ok(s) = serde_json::from_str::<&str>(raw) {
        return Ok(Cow::Borrowed(s));
    }
    serde_json::from_str::<String>(raw)
        .map(Cow::Owned)
        .map_err(|_| format!("`data` must be a string, not {}", kind(raw)))
}

/// What a JSON value that is not a string is, from its first character.
fn kind(raw: &str) -> &'static str {
    match raw.bytes().next() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let ok = |b: &str| parse_body(b.as_bytes()).map(Cow::into_owned);
        let err = |b: &str| parse_body(b.as_bytes()).unwrap_err();
        assert_eq!(ok(r#"{"data": "x"}"#), Ok("x".into()));
        assert_eq!(ok(r#"{"data": ""}"#), Ok("".into()));
        assert_eq!(ok(r#"{"data": "a\"b\u00e9", "other": 1}"#), Ok("a\"b\u{e9}".into()));
        assert!(matches!(
            parse_body(br#"{"data": "plain"}"#),
            Ok(Cow::Borrowed("plain"))
        ));
        assert_eq!(err("{}"), "missing field `data`");
        assert!(err(r#"{"data": 5}"#).contains("a number"));
        assert!(err(r#"{"data": null}"#).contains("null"));
        assert!(err(r#"{"data": {"a": 1}}"#).contains("an object"));
        assert!(err(r#"["data"]"#).contains("JSON object"));
        assert!(err("{not json").contains("invalid JSON"));
        assert!(err(r#"{"data": "a", "data": "b"}"#).contains("duplicate field `data`"));
    }
}
