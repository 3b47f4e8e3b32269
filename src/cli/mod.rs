//! The commands that are tools rather than the engine: they read a config
//! and the data directory, print, and exit (`fuwa import`, `fuwa
//! dead-letter`, `fuwa athena-ddl`). They take no lock and work beside a
//! running agent. `bound` is the memory bound `fuwa check` prints.

pub mod athena;
pub mod bound;
pub mod deadletter;
pub mod import;
