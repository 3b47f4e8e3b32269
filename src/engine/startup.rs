//! Starting a generation of the pipeline: inputs bound first (a taken
//! port fails before anything runs), buffers created (a file buffer queues
//! what it finds on disk), chunks handed over by a reload adopted, then the
//! workers, flushers and inputs spawned, each into a set the generation
//! owns, so a stop can wait for every one of them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;
use fuwa_api::{InputContext, Output, Shutdown};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info};

use super::datadir::create_data_dir;
use crate::admin::{Live, LiveInput, LiveOutput};
use crate::buffer::{OutputBuffer, Queued, QueuedData};
use crate::config::{AgentConfig, Config};
use crate::metrics::{CountingEmitter, Registry};
use crate::router::{Pipeline, RoutedFilter, RoutedOutput};

pub(super) struct OutputRun {
    pub(super) id: String,
    pub(super) buffer: Arc<OutputBuffer>,
    pub(super) plugin: Arc<dyn Output>,
    /// its workers and its flusher
    pub(super) tasks: JoinSet<()>,
}

/// One running pipeline: built from one config, replaced by a reload.
pub(super) struct Generation {
    pub(super) agent: AgentConfig,
    /// the config text it was built from (to go back to it)
    pub(super) src: String,
    pub(super) pipeline: Arc<Pipeline>,
    pub(super) shutdown_tx: watch::Sender<bool>,
    pub(super) input_tasks: JoinSet<()>,
    pub(super) outputs: Vec<OutputRun>,
}

/// Chunks taken from a halted output, for the output with the same id in
/// the next generation.
pub(super) struct Handed {
    pub(super) chunks: Vec<Queued>,
    pub(super) data_dir: PathBuf,
}

pub(super) type Handover = HashMap<String, Handed>;

/// Starts a generation: binds the inputs, creates the buffers (a file
/// buffer queues what it finds on disk), adopts the chunks handed over,
/// then runs workers and inputs. On failure nothing is left running and
/// the handover comes back untouched.
pub(super) async fn start(
    cfg: Config,
    src: String,
    registry: &Registry,
    mut handover: Handover,
) -> Result<(Generation, Live), (anyhow::Error, Handover)> {
    if let Err(e) = create_data_dir(&cfg) {
        return Err((e, handover));
    }
    // what this config may hold at most (docs/limits.md), for a container's limit
    let bound = crate::cli::bound::of_config(&cfg);
    // bind everything first, so a taken port fails before anything runs
    let mut inputs = Vec::new();
    for mut i in cfg.inputs {
        if let Err(e) = i.plugin.start().await {
            return Err((anyhow!("input {}: {e}", i.id), handover));
        }
        inputs.push(i);
    }
    let mut outputs = Vec::new();
    let mut routed_outputs = Vec::new();
    let mut live_outputs = Vec::new();
    for o in cfg.outputs {
        let buf = match OutputBuffer::with_counters(
            &o.id,
            o.plugin.clone(),
            o.buffer.clone(),
            &cfg.agent.data_dir,
            registry.output(&o.id),
        ) {
            Ok(b) => b,
            Err(e) => return Err((anyhow!("output {}: {e}", o.id), handover)),
        };
        info!(output = %o.id, r#match = %o.pattern.as_str(), buffer = ?o.buffer.kind, "output ready");
        live_outputs.push(LiveOutput {
            id: o.id.clone(),
            kind: o.kind.clone(),
            pattern: o.pattern.as_str().to_string(),
            buffer: buf.clone(),
            plugin: o.plugin.clone(),
        });
        routed_outputs.push(RoutedOutput {
            pattern: o.pattern,
            buffer: buf.clone(),
        });
        outputs.push((o.id, o.plugin, buf, o.buffer.flush_thread_count));
    }
    // from here on nothing fails: adopt what the last generation left
    let mut runs = Vec::new();
    for (id, plugin, buf, threads) in outputs {
        if let Some(h) = handover.remove(&id) {
            let on_disk_here = buf.is_file() && h.data_dir == cfg.agent.data_dir;
            // a file buffer in the same directory found the chunk files itself
            let chunks: Vec<Queued> = h
                .chunks
                .into_iter()
                .filter(|q| !(on_disk_here && matches!(q.data, QueuedData::File(_))))
                .collect();
            if !chunks.is_empty() {
                let records: u64 = chunks.iter().map(|q| q.records as u64).sum();
                info!(output = %id, chunks = chunks.len(), records, "took over the chunks of the previous pipeline");
                buf.adopt(chunks);
            }
            // a changed path or key template applies to what was buffered too
            let (moved, records) = buf.repartition().await;
            if moved > 0 {
                info!(output = %id, chunks = moved, records, "buffered chunks re-keyed for the new config");
            }
        }
        let mut tasks = JoinSet::new();
        for _ in 0..threads {
            tasks.spawn(buf.clone().worker());
        }
        tasks.spawn(buf.clone().flusher());
        runs.push(OutputRun {
            id,
            buffer: buf,
            plugin,
            tasks,
        });
    }
    for (id, h) in handover {
        report_orphans(&id, &h.chunks);
    }
    let live_filters: Vec<(String, String)> = cfg
        .filters
        .iter()
        .map(|f| (f.id.clone(), f.pattern.as_str().to_string()))
        .collect();
    let filters = cfg
        .filters
        .into_iter()
        .map(|f| RoutedFilter {
            id: f.id,
            pattern: f.pattern,
            plugin: f.plugin,
        })
        .collect();
    let pipeline = Arc::new(Pipeline::new(filters, routed_outputs));

    let (shutdown_tx, shutdown) = Shutdown::new();
    let mut input_tasks = JoinSet::new();
    let mut live_inputs = Vec::new();
    for i in inputs {
        let counters = registry.input(&i.id);
        live_inputs.push(LiveInput {
            id: i.id.clone(),
            kind: i.kind.clone(),
            counters: counters.clone(),
        });
        let ctx = InputContext {
            id: Arc::from(i.id.as_str()),
            emitter: Arc::new(CountingEmitter {
                counters,
                inner: pipeline.clone(),
            }),
            shutdown: shutdown.clone(),
        };
        let id = i.id.clone();
        input_tasks.spawn(async move {
            if let Err(e) = i.plugin.run(ctx).await {
                error!(input = %id, error = %e, "input stopped with an error");
            }
        });
    }
    info!(inputs = input_tasks.len(), outputs = runs.len(), hostname = %cfg.hostname, "pipeline started");
    info!(bytes = bound.total(), "{}", bound.line());
    let live = Live {
        inputs: live_inputs,
        filters: live_filters,
        outputs: live_outputs,
        api: cfg.agent.api.clone(),
    };
    Ok((
        Generation {
            agent: cfg.agent,
            src,
            pipeline,
            shutdown_tx,
            input_tasks,
            outputs: runs,
        },
        live,
    ))
}

fn report_orphans(id: &str, chunks: &[Queued]) {
    let memory: u64 = chunks
        .iter()
        .filter(|q| matches!(q.data, QueuedData::Memory(_)))
        .map(|q| q.records as u64)
        .sum();
    if memory > 0 {
        error!(output = %id, records = memory, "memory-buffered records had no output to go to after the reload: lost");
    }
}
