//! What every input checks of a tag before it accepts (and acks) an event:
//! not empty, not longer than the input's `tag_length_limit`, and no control
//! characters. A tag becomes part of file paths, S3 keys and log lines; one
//! that cannot be any of those is refused at the door with a clear reason,
//! not acked and then stuck in an output.

/// The default `tag_length_limit` of every input, in bytes.
pub const DEFAULT_TAG_LENGTH_LIMIT: usize = 1024;

/// Why a tag was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagError {
    Empty,
    TooLong { len: usize, limit: usize },
    Control { offset: usize, byte: u8 },
}

impl std::fmt::Display for TagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TagError::Empty => write!(f, "the tag is empty"),
            TagError::TooLong { len, limit } => write!(
                f,
                "the tag is {len} bytes long, over tag_length_limit ({limit} bytes)"
            ),
            TagError::Control { offset, byte } => write!(
                f,
                "the tag has a control character (0x{byte:02x}) at byte {offset}"
            ),
        }
    }
}

impl std::error::Error for TagError {}

/// Checks a tag against `limit` bytes.
pub fn check(tag: &str, limit: usize) -> Result<(), TagError> {
    if tag.is_empty() {
        return Err(TagError::Empty);
    }
    if tag.len() > limit {
        return Err(TagError::TooLong {
            len: tag.len(),
            limit,
        });
    }
    if let Some((offset, &byte)) = tag
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, b)| b.is_ascii_control())
    {
        return Err(TagError::Control { offset, byte });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked() {
        assert_eq!(check("app.access", 1024), Ok(()));
        assert_eq!(check("ログ.アクセス", 1024), Ok(()));
        assert_eq!(check("", 1024), Err(TagError::Empty));
        assert_eq!(
            check(&"a".repeat(1025), 1024),
            Err(TagError::TooLong {
                len: 1025,
                limit: 1024
            })
        );
        assert_eq!(
            check("a\nb", 1024),
            Err(TagError::Control {
                offset: 1,
                byte: b'\n'
            })
        );
        assert!(check("a\u{7f}", 1024).is_err());
        assert!(check("a\tb", 1024)
            .unwrap_err()
            .to_string()
            .contains("0x09"));
    }
}
