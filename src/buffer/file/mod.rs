//! The file storage: `store` is the writer thread that owns the open chunk
//! files (group commit: every append written, each touched file fsynced
//! once, then the inputs answered) and the recovery of what an earlier run
//! left on disk; `chunkfile` is the chunk file format (also the dead
//! letters' format).

pub mod chunkfile;
pub mod store;
