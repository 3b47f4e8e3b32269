//! Settings of the tail input (`[[input]] type = "tail"`).

use fuwa_api::{ByteSize, HumanDuration};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum LongLines {
    /// keep the first max_line_size bytes
    Truncate,
    /// drop the whole line
    Skip,
}

// the shared parser keys (format, time_key, ...) follow the tail's own,
// declared once in fuwa-parsers (the body is left unindented so that this
// wrapper stays a two-line change)
fuwa_parsers::with_parser_keys! {
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {
    /// globs (`*`, `?`, `[..]`, `**`)
    pub path: OneOrMany,
    #[serde(default)]
    pub exclude_path: Vec<String>,
    /// `${filename}`, `${path}` (slashes become dots), or `*` as in Fluentd
    pub tag: String,
    /// for files seen for the first time at start-up (files appearing later
    /// are always read from their start)
    #[serde(default)]
    pub read_from_head: bool,
    #[serde(default = "one_mib")]
    pub max_line_size: ByteSize,
    #[serde(default = "truncate")]
    pub max_line_action: LongLines,
    #[serde(default = "five_s")]
    pub flush_partial_after: HumanDuration,
    pub multiline_start: Option<String>,
    #[serde(default = "five_s")]
    pub multiline_flush_interval: HumanDuration,
    #[serde(default)]
    pub skip_header_lines: usize,
    pub read_bytes_limit_per_second: Option<ByteSize>,
    /// after a file is rotated away or deleted, keep reading it until it
    /// has not grown for this long (writers often append a few more lines
    /// before they reopen their log)
    #[serde(default = "five_s")]
    pub rotate_wait: HumanDuration,
    /// how often globs are re-expanded when no inotify event arrives
    #[serde(default = "five_s")]
    pub refresh_interval: HumanDuration,
    /// lines that do not parse go to this tag (default: their own tag),
    /// kept as `{"message": line, "_parse_error": why}`
    pub parse_error_tag: Option<String>,
    /// put the file's path into each record under this key
    pub path_key: Option<String>,
    /// a file whose derived tag is longer is not read (warned once)
    #[serde(default = "tag_limit")]
    pub tag_length_limit: ByteSize,
    /// kinesis-agent's `dataProcessingOptions` (its JSON), applied to each
    /// line instead of a parser (`fuwa import kinesis-agent` writes it)
    pub kinesis_agent_processing: Option<String>,
    /// a line matching this regex (trimmed) ends the file: it and the lines
    /// after it are not sent until the file is replaced or truncated
    pub file_footer_pattern: Option<String>,
    /// keep a line's `\r` before its newline (CRLF files), as kinesis-agent
    /// sends it; by default it is removed
    #[serde(default)]
    pub keep_carriage_return: bool,

}
}

fn one_mib() -> ByteSize {
    ByteSize(1 << 20)
}
fn truncate() -> LongLines {
    LongLines::Truncate
}
fn five_s() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}

fn tag_limit() -> ByteSize {
    ByteSize(fuwa_api::tag::DEFAULT_TAG_LENGTH_LIMIT as u64)
}
