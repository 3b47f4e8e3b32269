//! The memory bound of a config: what each plugin states it may hold
//! (`memory_bound` of the plugin traits), each output's buffer, and the
//! process at rest with its threads. `fuwa check` prints it, `fuwa run`
//! logs it at start; docs/limits.md has the table these numbers follow.

use std::fmt::Write as _;

use fuwa_api::memory::{size, Mib, KIB, MIB};
use fuwa_api::{MemoryBound, MemoryEnv};

use crate::buffer::config::BufferType;
use crate::config::Config;

/// The process at rest: the binary's and libc's pages (file-backed, about
/// 10.5 MiB), the heap and the main thread. Measured: VmHWM of `fuwa run`
/// with a forward input and the null output, idle, on the 2-core test
/// machine (bench/README.md, docs/limits.md).
pub const AT_REST: u64 = 12 * MIB;

/// One thread more: its stack as touched (of the 2 MiB reserved) and its
/// share of malloc's arenas and thread caches. Measured from the at-rest
/// VmHWM with TOKIO_WORKER_THREADS=1 and =16 (docs/limits.md).
pub const PER_THREAD: u64 = 256 * KIB;

/// What each queued or open chunk costs the buffer besides its data: its
/// tag, key, id and path, and the queue's slot.
pub const PER_CHUNK: u64 = 256;

/// The parts of the bound, by who holds them.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    /// (who, what they hold): `at rest`, `input forward "in"`, ...
    pub owners: Vec<(String, MemoryBound)>,
}

impl Bound {
    pub fn total(&self) -> u64 {
        self.owners
            .iter()
            .fold(0u64, |a, (_, b)| a.saturating_add(b.total()))
    }

    /// `memory bound: 87.3 MiB (at rest 12.0, threads 1.5, forward "in" 64.0, ...)`
    pub fn line(&self) -> String {
        let mut s = format!("memory bound: {} MiB (", Mib(self.total()));
        for (i, (who, b)) in self.owners.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "{who} {}", Mib(b.total()));
        }
        s.push(')');
        s
    }

    /// One line per part, exact bytes first: `  268435456  input forward "in": 2 × ...`
    pub fn breakdown(&self) -> String {
        let mut s = String::new();
        for (who, b) in &self.owners {
            for p in &b.parts {
                let _ = writeln!(s, "  {:>12}  {who}: {}", p.bytes, p.what);
            }
        }
        s
    }
}

/// The runtime's worker threads as `fuwa run` starts them: the
/// `TOKIO_WORKER_THREADS` environment variable, else one per core.
pub fn worker_threads() -> u64 {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1)
        })
}

/// The bound of a loaded config (call after the open-file limit was
/// raised: the default connection and open-chunk limits derive from it).
pub fn of_config(cfg: &Config) -> Bound {
    let workers = worker_threads();
    let mut owners = Vec::new();
    owners.push((
        "at rest".to_string(),
        MemoryBound::new().with(
            "the binary, libc, heap and main thread, idle (measured)",
            AT_REST,
        ),
    ));
    // threads: the workers, each file buffer's writer, the blocking
    // threads that read chunks and run the outputs' encoders and writes
    // (one per flush thread), and one for the inputs' file work
    let mut threads = workers + 1;
    for o in &cfg.outputs {
        threads += o.buffer.flush_thread_count as u64;
        if o.buffer.kind == BufferType::File {
            threads += 1;
        }
    }
    owners.push((
        "threads".to_string(),
        MemoryBound::new().with(
            format!(
                "{threads} threads ({workers} runtime workers, writers, blocking) × {}",
                size(PER_THREAD)
            ),
            threads.saturating_mul(PER_THREAD),
        ),
    ));
    let plain = MemoryEnv {
        worker_threads: workers,
        chunk_limit_size: 0,
    };
    for i in &cfg.inputs {
        owners.push((
            format!("{} \"{}\"", i.kind, i.id),
            i.plugin.memory_bound(&plain),
        ));
    }
    for f in &cfg.filters {
        let b = f.plugin.memory_bound(&plain);
        if !b.parts.is_empty() {
            owners.push((format!("filter \"{}\"", f.id), b));
        }
    }
    for o in &cfg.outputs {
        let chunk = o.buffer.chunk_limit_size.0;
        let env = MemoryEnv {
            worker_threads: workers,
            chunk_limit_size: chunk,
        };
        let per_write = o.plugin.memory_bound(&env);
        let writes = o.buffer.flush_thread_count as u64;
        let mut b = MemoryBound::new();
        for p in per_write.parts {
            if writes == 1 {
                b.add(p.what, p.bytes);
            } else {
                b.add(
                    format!("{writes} flush threads × {}", p.what),
                    p.bytes.saturating_mul(writes),
                );
            }
        }
        b.parts.extend(buffer_bound(&o.buffer).parts);
        owners.push((format!("{} \"{}\"", o.kind, o.id), b));
    }
    Bound { owners }
}

/// What an output's buffer holds in memory.
fn buffer_bound(buf: &crate::buffer::config::BufferConfig) -> MemoryBound {
    let chunk = buf.chunk_limit_size.0;
    let total = buf.total_limit() as u64;
    let open = buf
        .max_open_chunks
        .unwrap_or_else(crate::buffer::default_max_open_chunks) as u64;
    let queued = total / chunk.max(1);
    let writes = buf.flush_thread_count as u64;
    let mut b = MemoryBound::new();
    match buf.kind {
        BufferType::Memory => {
            b.add(
                format!("memory buffer: total_limit_size {}", size(total)),
                total,
            );
        }
        BufferType::File => {
            b.add(
                format!(
                    "file buffer: {writes} flush thread(s) × a chunk read whole (chunk_limit_size {})",
                    size(chunk)
                ),
                writes.saturating_mul(chunk),
            );
        }
    }
    b.add(
        format!("{open} open + {queued} queued chunks (total_limit_size / chunk_limit_size) × {PER_CHUNK} B"),
        open.saturating_add(queued).saturating_mul(PER_CHUNK),
    );
    b
}
