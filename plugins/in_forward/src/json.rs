//! Finds where one JSON message ends in a stream that arrives in pieces,
//! without parsing it and without walking again what it already walked: the
//! JSON variant of the forward protocol is parsed once per message, whatever
//! the number of reads it came in (parsing the whole buffer on every read
//! cost quadratic CPU). It also bounds the nesting before serde sees it.

/// Deepest nesting accepted in a JSON message (the message's array and an
/// entry included). serde_json stops at 128 itself; this refuses earlier,
/// before the value is parsed at all.
pub const JSON_MAX_DEPTH: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonFrameError {
    NotAMessage(u8),
    TooDeep,
    Unbalanced,
}

impl std::fmt::Display for JsonFrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonFrameError::NotAMessage(b) => write!(
                f,
                "a JSON message must be an array or an object, it begins with byte 0x{b:02x}"
            ),
            JsonFrameError::TooDeep => {
                write!(f, "JSON nested deeper than {JSON_MAX_DEPTH} levels")
            }
            JsonFrameError::Unbalanced => write!(f, "a closing bracket without its opening one"),
        }
    }
}

/// Resumable: `advance` is called with the same buffer (which only grows
/// between calls, and starts at the message's first byte) until it answers
/// `Some(len)`.
#[derive(Debug, Default)]
pub struct JsonFramer {
    pos: usize,
    depth: usize,
    in_str: bool,
    escaped: bool,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl JsonFramer {
    /// Bytes of the current message walked so far.
    pub fn progress(&self) -> usize {
        self.pos
    }

    /// How many leading bytes of `buf` are whitespace between messages
    /// (only meaningful before a message has begun).
    pub fn leading_ws(buf: &[u8]) -> usize {
        buf.iter().take_while(|b| is_ws(**b)).count()
    }

    pub fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, JsonFrameError> {
        let mut i = self.pos;
        while i < buf.len() {
            let b = buf[i];
            i += 1;
            if self.in_str {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_str = false;
                }
                continue;
            }
            match b {
                b'"' if self.depth > 0 => self.in_str = true,
                b'[' | b'{' => {
                    if self.depth >= JSON_MAX_DEPTH {
                        return Err(JsonFrameError::TooDeep);
                    }
                    self.depth += 1;
                }
                b']' | b'}' => {
                    if self.depth == 0 {
                        return Err(JsonFrameError::Unbalanced);
                    }
                    self.depth -= 1;
                    if self.depth == 0 {
                        *self = JsonFramer::default();
                        return Ok(Some(i));
                    }
                }
                _ if self.depth == 0 && is_ws(b) => {}
                _ if self.depth == 0 => return Err(JsonFrameError::NotAMessage(b)),
                _ => {}
            }
        }
        self.pos = i;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(s: &[u8]) -> Result<Vec<usize>, JsonFrameError> {
        let mut f = JsonFramer::default();
        let mut out = Vec::new();
        let mut start = 0;
        while start < s.len() {
            start += JsonFramer::leading_ws(&s[start..]);
            if start >= s.len() {
                break;
            }
            match f.advance(&s[start..])? {
                Some(n) => {
                    out.push(n);
                    start += n;
                }
                None => break,
            }
        }
        Ok(out)
    }

    #[test]
    fn finds_message_ends_across_strings_and_escapes() {
        let s = br#"["a]", 1, {"k": "x\"]}"}] ["b", [[1, {}]]]"#;
        let n = frames(s).unwrap();
        assert_eq!(n.len(), 2);
        let first: serde_json::Value = serde_json::from_slice(&s[..n[0]]).unwrap();
        assert_eq!(first[2]["k"], "x\"]}");
    }

    #[test]
    fn refuses_deep_nesting_and_garbage() {
        let deep = "[".repeat(1_000_000);
        assert_eq!(
            JsonFramer::default().advance(deep.as_bytes()),
            Err(JsonFrameError::TooDeep)
        );
        assert!(matches!(
            JsonFramer::default().advance(b"42"),
            Err(JsonFrameError::NotAMessage(b'4'))
        ));
        assert_eq!(
            JsonFramer::default().advance(b"]"),
            Err(JsonFrameError::Unbalanced)
        );
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[\\PC\"\\\\\\[\\]{}]{0,30}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(8, 128, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map("[a-z\"\\]\\\\]{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_serde_in_any_pieces(vs in proptest::collection::vec(json_value(), 1..4), cuts in proptest::collection::vec(0usize..4000, 0..8)) {
            let mut s = Vec::new();
            for v in &vs {
                s.extend(serde_json::to_vec(&serde_json::Value::Array(vec![v.clone()])).unwrap());
                s.push(b'\n');
            }
            // the first message, fed in pieces
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % s.len()).collect();
            cuts.sort();
            let mut f = JsonFramer::default();
            let first_len = serde_json::to_vec(&serde_json::Value::Array(vec![vs[0].clone()])).unwrap().len();
            for c in cuts {
                if c < first_len {
                    prop_assert_eq!(f.advance(&s[..c]), Ok(None));
                }
            }
            prop_assert_eq!(f.advance(&s), Ok(Some(first_len)));
            let n = frames(&s).unwrap();
            prop_assert_eq!(n.len(), vs.len());
        }

        #[test]
        fn deep_and_long_input_never_panics(open in 0usize..300, close in 0usize..300, filler in "[\\PC]{0,50}", tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut s = "[".repeat(open).into_bytes();
            s.extend(filler.as_bytes());
            s.extend("]".repeat(close).into_bytes());
            s.extend(tail);
            let mut f = JsonFramer::default();
            match f.advance(&s) {
                Ok(Some(n)) => prop_assert!(n <= s.len()),
                Ok(None) => prop_assert!(f.progress() <= s.len()),
                Err(JsonFrameError::TooDeep) => {
                    let opening = s.iter().filter(|b| matches!(b, b'[' | b'{')).count();
                    prop_assert!(opening >= JSON_MAX_DEPTH);
                }
                Err(_) => {}
            }
        }
    }
}
