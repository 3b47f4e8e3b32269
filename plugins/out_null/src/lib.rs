//! The null output: accepts every chunk and discards it (benchmarks, tests,
//! and dropping a tag on purpose).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use fuwa_api::{
    BuildContext, Chunk, ConfigError, ConfigSection, MemoryBound, MemoryEnv, Output, OutputError,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NullConfig {}

#[derive(Default)]
pub struct NullOutput {
    pub records: AtomicU64,
}

pub fn build(
    section: &ConfigSection<'_>,
    _ctx: &BuildContext,
) -> Result<Arc<dyn Output>, Vec<ConfigError>> {
    let _: NullConfig = section.parse_all()?;
    Ok(Arc::new(NullOutput::default()))
}

#[async_trait]
impl Output for NullOutput {
    /// A write only counts the chunk: nothing beyond it.
    fn memory_bound(&self, _env: &MemoryEnv) -> MemoryBound {
        MemoryBound::new()
    }

    async fn write(&self, chunk: &Chunk) -> Result<(), OutputError> {
        self.records
            .fetch_add(chunk.records as u64, Ordering::Relaxed);
        Ok(())
    }
}
