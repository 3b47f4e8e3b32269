//! The plugin API of fuwa: the event model, the three plugin traits
//! (`Input`, `Filter`, `Output`) and the small helpers every plugin needs
//! (msgpack walking, config sections with source spans, tag patterns).
//!
//! Dependency direction is one way: the engine depends on plugins, plugins
//! depend on this crate, and this crate depends on no plugin.

pub mod config;
pub mod event;
pub mod fdlimit;
pub mod lru;
pub mod memory;
pub mod msgpack;
pub mod pattern;
pub mod plugin;
pub mod ratelimit;
pub mod rawmap;
pub mod record;
pub mod tag;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{
    Address, ByteSize, ConfigError, ConfigSection, HumanDuration, NonZeroDuration, SizeLimit,
};
pub use event::{Batch, Chunk, Entry, EventTime};
pub use memory::{MemoryBound, MemoryEnv};
pub use pattern::TagPattern;
pub use plugin::{
    BuildContext, EmitError, Emitter, Filter, FilterResult, Input, InputContext, Metric,
    MetricKind, Output, OutputError, Partitioner, PluginError, Shutdown,
};
pub use record::Record;
