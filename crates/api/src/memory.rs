//! What a plugin may hold in memory, from its config: the parts of the
//! agent's memory bound (`fuwa check` prints their sum, `fuwa run` logs it
//! at start; docs/limits.md has the table). Every plugin states its own
//! parts ([`crate::Input::memory_bound`], [`crate::Filter::memory_bound`],
//! [`crate::Output::memory_bound`]); the engine adds the process at rest,
//! the runtime's threads and each output's buffer.

use std::fmt;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

/// msgpack rendered as JSON Lines takes at most about this many times its
/// size for log records (quotes, `:` and `,`, numbers as text, the time as
/// RFC 3339); records of tiny integers or control characters (escaped as
/// `\u00XX`) can take more, a chunk of them is rare.
pub const JSON_OF_MSGPACK: u64 = 2;

/// The largest record the parts that render records one run at a time
/// count (tail's default max_line_size); a larger record adds up to
/// `JSON_OF_MSGPACK` × its size while it is rendered.
pub const MAX_RECORD: u64 = MIB;

/// A `Vec` grown by pushing to `n` bytes may hold up to twice that
/// (capacity doubles); bounds of such buffers count it.
pub const fn grown(n: u64) -> u64 {
    n.saturating_mul(2)
}

/// What a zstd compressor at `level` holds: its window (2^windowLog of
/// zstd's parameter table for inputs over 256 KiB), the input buffer and
/// the match tables, taken as 3 × the window.
pub fn zstd_state(level: i32) -> u64 {
    let wlog = match level {
        i32::MIN..=2 => 19,
        3..=8 => 21,
        9..=18 => 22,
        19 => 23,
        20 => 25,
        21 => 26,
        _ => 27,
    };
    3u64 << wlog
}

/// What a gzip (deflate) compressor holds: window, hash chains, buffers.
pub const GZIP_STATE: u64 = 320 * KIB;

/// What the parts depend on besides the plugin's own config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEnv {
    /// the runtime's worker threads (a decode that never awaits is one per
    /// thread at most)
    pub worker_threads: u64,
    /// outputs: the `chunk_limit_size` of the output's buffer (a write
    /// holds what it renders of one chunk); 0 for inputs and filters
    pub chunk_limit_size: u64,
}

/// One thing held and its most bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPart {
    /// e.g. `2 × pending_bytes_limit`
    pub what: String,
    pub bytes: u64,
}

/// The parts a plugin (or the engine) may hold at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryBound {
    pub parts: Vec<MemoryPart>,
}

impl MemoryBound {
    pub fn new() -> Self {
        MemoryBound::default()
    }

    /// Adds a part (builder style).
    pub fn with(mut self, what: impl Into<String>, bytes: u64) -> Self {
        self.add(what, bytes);
        self
    }

    pub fn add(&mut self, what: impl Into<String>, bytes: u64) {
        self.parts.push(MemoryPart {
            what: what.into(),
            bytes,
        });
    }

    /// The sum of the parts (saturating: a config of PiB limits stays
    /// printable).
    pub fn total(&self) -> u64 {
        self.parts
            .iter()
            .fold(0u64, |a, p| a.saturating_add(p.bytes))
    }
}

/// Bytes as MiB with one decimal: `87.3`.
pub struct Mib(pub u64);

impl fmt::Display for Mib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}", self.0 as f64 / MIB as f64)
    }
}

/// A size for a part's description: `512 KiB`, `8 MiB`, `1.25 MiB`, `300 B`.
pub fn size(bytes: u64) -> String {
    fn trim(v: f64, unit: &str) -> String {
        let t = format!("{v:.2}");
        let t = t.trim_end_matches('0').trim_end_matches('.');
        format!("{t} {unit}")
    }
    if bytes >= MIB {
        trim(bytes as f64 / MIB as f64, "MiB")
    } else if bytes >= KIB {
        trim(bytes as f64 / KIB as f64, "KiB")
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_and_print() {
        let b = MemoryBound::new()
            .with("a", 3 * MIB)
            .with("b", MIB / 2)
            .with("huge", u64::MAX);
        assert_eq!(b.total(), u64::MAX);
        let b = MemoryBound::new().with("a", 3 * MIB).with("b", MIB / 2);
        assert_eq!(b.total(), 3 * MIB + MIB / 2);
        assert_eq!(Mib(b.total()).to_string(), "3.5");
        assert_eq!(size(512 * KIB), "512 KiB");
        assert_eq!(size(8 * MIB), "8 MiB");
        assert_eq!(size(MIB + MIB / 4), "1.25 MiB");
        assert_eq!(size(300), "300 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(1500), "1.46 KiB");
        assert_eq!(grown(5), 10);
    }
}
