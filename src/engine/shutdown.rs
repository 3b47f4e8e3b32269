//! Stopping: one deadline, `shutdown_timeout` after the stop begins, for
//! all of it; no fixed waits of its own.
//!
//! 1. The inputs are told to stop (they stop accepting, release their
//!    ports and finish the batches they hold). They get until half of the
//!    time left; an input still waiting then (on a full buffer, say) has its
//!    pending batches refused (never acknowledged: its clients send them
//!    again), and one still running at the deadline is aborted.
//! 2. Every output drains at the same time as the others: open chunks are
//!    sealed, the workers write the queue until it is empty or the deadline
//!    comes; then the workers (a write that hangs included) are aborted. A
//!    file buffer's unwritten chunks stay on disk and are queued at the next
//!    start; a memory buffer's are reported lost.
//! 3. Each output's `close` gets what is left of the deadline (at least
//!    `CLOSE_FLOOR`, so an output past the deadline still says goodbye).
//! 4. Outputs a reload removed, still draining in the background, are
//!    waited for within the same deadline, then the API server stops (it
//!    serves /metrics while the buffers drain) with its connections.
//!
//! Every task the engine spawns lives in a `JoinSet` some owner joins
//! (inputs, workers and flushers per generation, background drains in the
//! supervisor, API connections in the accept loop), so when `run` returns
//! none of them is left running.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fuwa_api::Output;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::startup::{Generation, OutputRun};
use super::Supervisor;
use crate::buffer::Queued;

/// The least time an output's `close` gets, even past the deadline.
const CLOSE_FLOOR: Duration = Duration::from_millis(250);

/// The one point in time a stop (or a reload's hand-over) must be over by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    pub(crate) fn after(d: Duration) -> Deadline {
        Deadline(Instant::now() + d)
    }

    pub(crate) fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// A point `share` of the way from now to the deadline.
    fn share(&self, share: f64) -> Deadline {
        Deadline(Instant::now() + self.remaining().mul_f64(share))
    }

    /// `f`, unless the deadline comes first (None then).
    pub(crate) async fn run<F: Future>(&self, f: F) -> Option<F::Output> {
        tokio::time::timeout_at(self.0, f).await.ok()
    }
}

/// Waits for every task of `set` until `deadline`; aborts (and reaps) the
/// ones still running then. True when all ended by themselves.
pub(crate) async fn join_all(set: &mut JoinSet<()>, deadline: Deadline) -> bool {
    let ended = deadline
        .run(async { while set.join_next().await.is_some() {} })
        .await
        .is_some();
    if !ended {
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
    ended
}

impl Generation {
    /// Stops the inputs (they stop accepting and release their ports).
    pub(super) async fn stop_inputs(&mut self, deadline: Deadline) {
        let _ = self.shutdown_tx.send(true);
        let soft = deadline.share(0.5);
        let stopped = soft
            .run(async { while self.input_tasks.join_next().await.is_some() {} })
            .await
            .is_some();
        if !stopped {
            // an input waiting on a full buffer: refuse it, then wait again
            warn!(
                left = ?deadline.remaining(),
                "inputs did not stop within half of shutdown_timeout; refusing their pending batches"
            );
            self.pipeline.close();
            for o in &self.outputs {
                o.buffer.close();
            }
            if !join_all(&mut self.input_tasks, deadline).await {
                warn!("inputs still running at shutdown_timeout: aborted");
            }
        }
        self.pipeline.close();
    }
}

async fn close_plugin(id: &str, p: &Arc<dyn Output>, deadline: Deadline) {
    let time = deadline.remaining().max(CLOSE_FLOOR);
    if tokio::time::timeout(time, p.close()).await.is_err() {
        warn!(output = %id, "output did not close in time");
    }
}

/// Closes an output for good: its buffer is flushed until `deadline`, what
/// is left is reported (and stays on disk with a file buffer).
pub(super) async fn drain_output(mut o: OutputRun, deadline: Deadline) {
    o.buffer.close();
    if !join_all(&mut o.tasks, deadline).await {
        let (chunks, records) = o.buffer.pending();
        if chunks > 0 {
            if o.buffer.is_file() {
                info!(output = %o.id, chunks, records, "shutdown_timeout reached: the rest stays on disk for the next start");
            } else {
                error!(output = %o.id, chunks, records, "shutdown_timeout reached: these records were not written (memory buffer)");
            }
        }
    }
    close_plugin(&o.id, &o.plugin, deadline).await;
}

/// Halts an output kept by a reload and takes its chunks, by `deadline`.
pub(super) async fn halt_output(mut o: OutputRun, deadline: Deadline) -> Vec<Queued> {
    o.buffer.halt();
    if !o.buffer.wait_sealed(deadline.remaining()).await {
        warn!(output = %o.id, "open chunks were not sealed in time; the next pipeline finds them on disk");
    }
    if !join_all(&mut o.tasks, deadline).await {
        let (chunks, records) = o.buffer.pending();
        warn!(output = %o.id, chunks, records, "a write did not finish within shutdown_timeout: it was abandoned and its chunk will be written again (file buffer) or is lost (memory buffer)");
    }
    let chunks = o.buffer.take_queue();
    close_plugin(&o.id, &o.plugin, deadline).await;
    chunks
}

impl Supervisor {
    /// The whole stop, within the running config's shutdown_timeout.
    pub(super) async fn stop(&mut self) {
        let timeout = self
            .current
            .as_ref()
            .map(|g| g.agent.shutdown_timeout.0)
            .unwrap_or_default();
        let deadline = Deadline::after(timeout);
        if let Some(mut g) = self.current.take() {
            g.stop_inputs(deadline).await;
            let mut drains = JoinSet::new();
            for o in std::mem::take(&mut g.outputs) {
                drains.spawn(drain_output(o, deadline));
            }
            // a drain ends by the deadline (+ CLOSE_FLOOR for close)
            while drains.join_next().await.is_some() {}
        }
        if !self.background.is_empty() {
            let draining = self.background.len();
            if !join_all(&mut self.background, deadline).await {
                warn!(
                    outputs = draining,
                    "outputs removed by a reload were still draining at shutdown_timeout: stopped (file buffers keep the rest on disk)"
                );
            }
        }
        if let Some(a) = self.api.take() {
            a.stop().await;
        }
    }
}
