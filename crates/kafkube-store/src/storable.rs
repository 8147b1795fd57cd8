//! What every backend can store, checked before a value reaches the database.
//!
//! SQLite stores any text and any JSON text; PostgreSQL does not: its `text` refuses the NUL
//! character, and its `jsonb` refuses `\u0000`, unpaired UTF-16 surrogates (`\ud800`) and, past
//! its stack depth, deeply nested values. Sent as they are, such values fail inside PostgreSQL
//! (a 5xx for what is the client's bad data) and pass on SQLite. Apps check their fields here
//! instead, so the answer is the same 400 on every backend, and the Kafka ingest paths
//! dead-letter the same records.

/// The deepest nesting of objects and arrays accepted in a stored JSON value. `serde_json` reads
/// at most 128 levels back, so deeper values could be stored but never shown again.
pub const MAX_JSON_DEPTH: usize = 100;

/// Why `s` cannot be stored as text on every backend, if it cannot.
pub fn text(s: &str) -> Result<(), &'static str> {
    if s.contains('\0') {
        Err("must not contain the NUL character (\\u0000)")
    } else {
        Ok(())
    }
}

/// Why `raw`, a valid JSON text, cannot be stored as JSON on every backend, if it cannot: a
/// `\u0000` escape, an unpaired surrogate escape, nesting deeper than [`MAX_JSON_DEPTH`], or a
/// key given twice in one object (PostgreSQL's `jsonb` keeps the last, SQLite keeps both: the
/// same value would read back differently). One pass over the bytes; no tree is built. Keys are
/// compared as written (`"a"` and `"\u0061"` are not seen as the same).
pub fn json(raw: &str) -> Result<(), String> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let Scratch { open, keys } = &mut *scratch;
        open.clear();
        keys.clear();
        scan(raw.as_bytes(), open, keys)
    })
}

/// Reused by every [`json`] call of a thread, so a check allocates nothing once warm.
struct Scratch {
    /// Per open object or array: where its keys start in `keys` (`NOT_AN_OBJECT` for an array).
    open: Vec<usize>,
    /// The keys of the open objects, innermost last, as byte ranges of the text.
    keys: Vec<(usize, usize)>,
}

const NOT_AN_OBJECT: usize = usize::MAX;

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> =
        const { std::cell::RefCell::new(Scratch { open: Vec::new(), keys: Vec::new() }) };
}

fn scan(b: &[u8], open: &mut Vec<usize>, keys: &mut Vec<(usize, usize)>) -> Result<(), String> {
    // Whether the next string is a key: after `{`, and after `,` in an object.
    let mut key_next = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c @ (b'{' | b'[') => {
                if open.len() == MAX_JSON_DEPTH {
                    return Err(format!("is nested deeper than {MAX_JSON_DEPTH} levels"));
                }
                open.push(if c == b'{' { keys.len() } else { NOT_AN_OBJECT });
                key_next = c == b'{';
            }
            b'}' | b']' => {
                if let Some(start) = open.pop()
                    && start != NOT_AN_OBJECT
                {
                    keys.truncate(start);
                }
                key_next = false;
            }
            b',' => key_next = open.last().is_some_and(|&start| start != NOT_AN_OBJECT),
            b'"' => {
                let end = string_end(b, i + 1)?;
                if key_next {
                    key_next = false;
                    let key = &b[i + 1..end];
                    let start = open.last().copied().unwrap_or(0);
                    if keys[start..].iter().any(|&(s, e)| &b[s..e] == key) {
                        return Err(format!(
                            "has the key \"{}\" twice in one object",
                            String::from_utf8_lossy(key)
                        ));
                    }
                    keys.push((i + 1, end));
                }
                i = end;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The index of the quote that ends the string starting at `i`; checks its `\u` escapes.
fn string_end(b: &[u8], mut i: usize) -> Result<usize, String> {
    // A high surrogate waiting for its low half.
    let mut high = false;
    while i < b.len() {
        match b[i] {
            b'"' if !high => return Ok(i),
            b'\\' if b.get(i + 1) == Some(&b'u') => {
                let unit = hex4(b, i + 2).ok_or("has a malformed \\u escape")?;
                match unit {
                    0 => return Err("must not contain the NUL character (\\u0000)".into()),
                    0xD800..=0xDBFF if !high => high = true,
                    0xDC00..=0xDFFF if high => high = false,
                    _ if high || (0xD800..=0xDFFF).contains(&unit) => {
                        return Err(format!("has an unpaired surrogate escape (\\u{unit:04x})"));
                    }
                    _ => {}
                }
                i += 6;
                continue;
            }
            _ if high => return Err("has an unpaired surrogate escape".into()),
            b'\\' => i += 1,
            _ => {}
        }
        i += 1;
    }
    Err("is not valid JSON (an unterminated string)".into())
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_refuses_only_nul() {
        assert!(text("Ani Ña 😀 \u{1}").is_ok());
        assert!(text("a\0b").is_err());
    }

    #[test]
    fn json_passes_what_postgres_stores() {
        for ok in [
            r#"{}"#,
            r#"{"a": [1, {"b": "x\"y\\"}], "c": "\u00e9 \ud83d\ude00 \u0001"}"#,
            r#"{"brackets in a string": "[[[[{{{{"}"#,
            r#"{"escaped quote then brace": "\"}"}"#,
            r#"{"an escaped backslash, then text": "\\u0000"}"#,
        ] {
            assert_eq!(json(ok), Ok(()), "{ok}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
        assert_eq!(json(&deep), Ok(()));
        // The same key in different objects, and a key's text as a value, are no repeat.
        for ok in [
            r#"{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}"#,
            r#"{"a": "a", "b": ["a", "a"]}"#,
            r#"{"a": {"x": 1}, "b": {"x": 1}}"#,
        ] {
            assert_eq!(json(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn json_refuses_a_key_given_twice_in_one_object() {
        for bad in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": 1, "b": {"c": [], "c": 0}}"#,
            r#"[{"x": 1}, {"y": {"z": 1}, "y": 2}]"#,
        ] {
            let e = json(bad).unwrap_err();
            assert!(e.contains("twice"), "{bad}: {e}");
        }
    }

    #[test]
    fn json_refuses_what_postgres_refuses() {
        for (bad, why) in [
            (r#"{"a": "\u0000"}"#, "NUL"),
            (r#"{"a\u0000": 1}"#, "NUL"),
            (r#"{"a": "\ud800"}"#, "unpaired"),
            (r#"{"a": "\ud800x"}"#, "unpaired"),
            (r#"{"a": "\ud800\u0041"}"#, "unpaired"),
            (r#"{"a": "\udc00\ud800"}"#, "unpaired"),
            (r#"{"a": "x\uDFFF"}"#, "unpaired"),
        ] {
            let e = json(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let deep = format!("{}{}", "[".repeat(MAX_JSON_DEPTH + 1), "]".repeat(MAX_JSON_DEPTH + 1));
        assert!(json(&deep).unwrap_err().contains("nested deeper"));
        let very_deep = format!("{{\"p\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(json(&very_deep).is_err());
    }
}
