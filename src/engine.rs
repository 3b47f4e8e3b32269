//! The supervisor: starts outputs, then inputs; on SIGTERM/SIGINT stops the
//! inputs, seals open chunks, flushes within shutdown_timeout and reports
//! what could not be written. A second signal exits at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use fuwa_api::{InputContext, Shutdown};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::buffer::OutputBuffer;
use crate::config::{BufferType, Config};
use crate::router::{Pipeline, RoutedFilter, RoutedOutput};

pub async fn run(cfg: Config) -> Result<()> {
    let needs_dir = cfg
        .outputs
        .iter()
        .any(|o| o.buffer.kind == BufferType::File);
    if let Err(e) = std::fs::create_dir_all(&cfg.agent.data_dir) {
        if cfg.data_dir_explicit || needs_dir {
            return Err(e).with_context(|| {
                format!("cannot create data_dir {}", cfg.agent.data_dir.display())
            });
        }
        warn!(data_dir = %cfg.agent.data_dir.display(), error = %e, "cannot create the default data_dir; nothing needs it with memory buffers");
    }

    let mut buffers = Vec::new();
    let mut routed_outputs = Vec::new();
    let mut plugins = Vec::new();
    for o in cfg.outputs {
        info!(output = %o.id, r#match = %o.pattern.as_str(), buffer = ?o.buffer.kind, "output ready");
        let buf = OutputBuffer::new(
            &o.id,
            o.plugin.clone(),
            o.buffer.clone(),
            &cfg.agent.data_dir,
        )
        .with_context(|| format!("output {}", o.id))?;
        routed_outputs.push(RoutedOutput {
            pattern: o.pattern,
            buffer: buf.clone(),
        });
        buffers.push((buf, o.buffer.flush_thread_count));
        plugins.push((o.id, o.plugin));
    }
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

    let mut workers = JoinSet::new();
    for (buf, threads) in &buffers {
        for _ in 0..*threads {
            workers.spawn(buf.clone().worker());
        }
        tokio::spawn(buf.clone().flusher());
    }

    // bind everything before reporting ready, so a taken port fails start-up
    let mut inputs = Vec::new();
    for mut i in cfg.inputs {
        i.plugin
            .start()
            .await
            .map_err(|e| anyhow::anyhow!("input {}: {e}", i.id))?;
        inputs.push(i);
    }
    let (shutdown_tx, shutdown) = Shutdown::new();
    let mut input_tasks = JoinSet::new();
    for i in inputs {
        let ctx = InputContext {
            id: Arc::from(i.id.as_str()),
            emitter: pipeline.clone(),
            shutdown: shutdown.clone(),
        };
        let id = i.id.clone();
        input_tasks.spawn(async move {
            if let Err(e) = i.plugin.run(ctx).await {
                error!(input = %id, error = %e, "input stopped with an error");
            }
        });
    }
    info!(inputs = input_tasks.len(), outputs = buffers.len(), hostname = %cfg.hostname, "fuwa started");

    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping"),
        _ = int.recv() => info!("SIGINT: stopping"),
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        warn!("second signal: exiting now");
        std::process::exit(130);
    });

    let _ = shutdown_tx.send(true);
    while input_tasks.join_next().await.is_some() {}
    pipeline.close();
    for (b, _) in &buffers {
        b.close();
    }
    let timeout = cfg.agent.shutdown_timeout.0;
    let drained = tokio::time::timeout(timeout, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        for (b, _) in &buffers {
            let (chunks, records) = b.pending();
            if chunks > 0 {
                if b.is_file() {
                    info!(output = %b.id, chunks, records, "shutdown_timeout reached: the rest stays on disk for the next start");
                } else {
                    error!(output = %b.id, chunks, records, timeout = ?timeout, "shutdown_timeout reached: these records were not written (memory buffer)");
                }
            }
        }
    }
    for (id, p) in plugins {
        if tokio::time::timeout(Duration::from_secs(5), p.close())
            .await
            .is_err()
        {
            warn!(output = %id, "output did not close in time");
        }
    }
    info!("fuwa stopped");
    Ok(())
}
