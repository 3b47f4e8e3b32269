//! The `user_agent` filter: parses a User-Agent field with woothee and writes
//! `{name, category, os, os_version, version, vendor}` next to the record,
//! exactly as woothee returns them (`"UNKNOWN"` included).
//!
//! ```toml
//! [[filter]]
//! match = "action_logs"
//! type = "user_agent"
//! key = "user_agent"   # source field (dot path allowed)
//! target = "ua"        # where the result goes (dot path allowed)
//! flatten = false      # true: ua_name, ua_category, ... beside each other
//! cache_size = 10000   # LRU of parsed User-Agents; 0 disables
//! ```
//!
//! A missing field, or one that is not text (a number, a map, binary that is
//! not UTF-8), leaves the record unchanged. A string that is not valid UTF-8
//! is read lossily. Parsed results are cached by the exact User-Agent string;
//! strings longer than [`MAX_CACHED_LEN`] bytes are parsed every time and
//! never cached, so the cache's memory stays bounded by
//! `cache_size × (1 KiB + the result)`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use fuwa_api::memory::size;
use fuwa_api::record::{FieldPath, Text};
use fuwa_api::{
    msgpack, BuildContext, ConfigError, ConfigSection, EventTime, Filter, FilterResult,
    MemoryBound, MemoryEnv, Record,
};
use serde::Deserialize;

pub use fuwa_api::lru::Lru;

/// User-Agents longer than this many bytes are never cached.
pub const MAX_CACHED_LEN: usize = 1024;

/// The output fields, in the order they are written.
pub const FIELDS: [&str; 6] = ["name", "category", "os", "os_version", "version", "vendor"];

const UNKNOWN: &str = "UNKNOWN";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserAgentConfig {
    #[serde(default = "default_key")]
    key: FieldPath,
    #[serde(default = "default_target")]
    target: FieldPath,
    #[serde(default)]
    flatten: bool,
    #[serde(default = "default_cache_size")]
    cache_size: usize,
}
fn default_key() -> FieldPath {
    FieldPath::of("user_agent")
}
fn default_target() -> FieldPath {
    FieldPath::of("ua")
}
fn default_cache_size() -> usize {
    10_000
}

/// What woothee said about one User-Agent, in [`FIELDS`] order, and the
/// same as one encoded msgpack map `{name: …, category: …, …}`, ready to be
/// copied into records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaInfo {
    pub fields: [Box<str>; 6],
    pub encoded: Box<[u8]>,
}

impl UaInfo {
    fn new(fields: [Box<str>; 6]) -> Self {
        let mut b = Vec::with_capacity(96);
        msgpack::write_map_len(&mut b, FIELDS.len() as u32);
        for (k, v) in FIELDS.iter().zip(fields.iter()) {
            msgpack::write_str(&mut b, k.as_bytes());
            msgpack::write_str(&mut b, v.as_bytes());
        }
        UaInfo {
            fields,
            encoded: b.into_boxed_slice(),
        }
    }

    fn unknown() -> Self {
        UaInfo::new(std::array::from_fn(|_| Box::from(UNKNOWN)))
    }

    /// Parses with woothee. `None` from woothee (nothing recognised) and a
    /// panic inside it both come out as all `"UNKNOWN"`.
    pub fn parse(parser: &woothee::parser::Parser, ua: &str) -> Self {
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            parser.parse(ua).map(|r| {
                UaInfo::new([
                    Box::from(r.name),
                    Box::from(r.category),
                    Box::from(r.os),
                    Box::from(r.os_version.as_ref()),
                    Box::from(r.version),
                    Box::from(r.vendor),
                ])
            })
        }));
        match parsed {
            Ok(Some(info)) => info,
            _ => UaInfo::unknown(),
        }
    }
}

pub struct UserAgentFilter {
    key: Vec<String>,
    target: Vec<String>,
    /// flatten: the six paths `target_<field>`
    flat_targets: Option<[Vec<String>; 6]>,
    parser: woothee::parser::Parser,
    cache: Option<Mutex<Lru<Arc<UaInfo>>>>,
}

pub fn build(
    section: &ConfigSection<'_>,
    _ctx: &BuildContext,
) -> Result<Box<dyn Filter>, Vec<ConfigError>> {
    let cfg: UserAgentConfig = section.parse_all()?;
    Ok(Box::new(UserAgentFilter::new(
        cfg.key.0,
        cfg.target.0,
        cfg.flatten,
        cfg.cache_size,
    )))
}

impl UserAgentFilter {
    pub fn new(key: Vec<String>, target: Vec<String>, flatten: bool, cache_size: usize) -> Self {
        let flat_targets = flatten.then(|| {
            FIELDS.map(|f| {
                let mut p = target.clone();
                if let Some(last) = p.last_mut() {
                    *last = format!("{last}_{f}");
                }
                p
            })
        });
        UserAgentFilter {
            key,
            target,
            flat_targets,
            parser: woothee::parser::Parser::new(),
            cache: (cache_size > 0).then(|| Mutex::new(Lru::new(cache_size))),
        }
    }

    /// The parsed User-Agent, from the cache when it is there.
    pub fn lookup(&self, ua: &str) -> Arc<UaInfo> {
        self.lookup_bytes(ua.as_bytes())
    }

    /// The parsed User-Agent for the bytes of a str (read lossily when they
    /// are not UTF-8). The cache is keyed by the bytes, so a hit checks
    /// nothing but them.
    fn lookup_bytes(&self, ua: &[u8]) -> Arc<UaInfo> {
        let cacheable = ua.len() <= MAX_CACHED_LEN;
        if let (Some(cache), true) = (&self.cache, cacheable) {
            let hit = cache.lock().unwrap_or_else(|e| e.into_inner()).get(ua);
            if let Some(info) = hit {
                return info;
            }
        }
        // parse outside the lock: other threads' hits are not held up
        let info = Arc::new(UaInfo::parse(&self.parser, &String::from_utf8_lossy(ua)));
        if let (Some(cache), true) = (&self.cache, cacheable) {
            cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(ua, info.clone());
        }
        info
    }

    /// Entries in the cache (for tests and metrics).
    pub fn cached(&self) -> usize {
        self.cache
            .as_ref()
            .map_or(0, |c| c.lock().unwrap_or_else(|e| e.into_inner()).len())
    }
}

/// One cache entry beyond its key: the parsed result (six short strings
/// in an `Arc`), the map's and the recency list's slots (grown ×2).
const ENTRY_OVERHEAD: u64 = 512;

impl Filter for UserAgentFilter {
    fn memory_bound(&self, _env: &MemoryEnv) -> MemoryBound {
        let n = self.cache.as_ref().map_or(0, |c| {
            c.lock().unwrap_or_else(|e| e.into_inner()).capacity() as u64
        });
        let entry = MAX_CACHED_LEN as u64 + ENTRY_OVERHEAD;
        MemoryBound::new().with(
            format!(
                "cache_size {n} × (a User-Agent of at most {} + its result)",
                size(MAX_CACHED_LEN as u64)
            ),
            n.saturating_mul(entry),
        )
    }

    fn filter(&self, _tag: &str, _time: &mut EventTime, rec: &mut Record) -> FilterResult {
        // only maps are records; anything else passes untouched
        if !rec.is_map() {
            return FilterResult::Keep;
        }
        let info = match rec.text(&self.key) {
            Some(Text::Str(b)) => self.lookup_bytes(b),
            Some(Text::Bin(b)) => match std::str::from_utf8(b) {
                Ok(s) => self.lookup(s),
                Err(_) => return FilterResult::Keep,
            },
            None => return FilterResult::Keep,
        };
        match &self.flat_targets {
            Some(paths) => {
                for (p, v) in paths.iter().zip(info.fields.iter()) {
                    rec.set_str(p, v);
                }
            }
            None => rec.set_encoded(&self.target, &info.encoded),
        }
        FilterResult::Keep
    }
}
