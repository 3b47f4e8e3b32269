//! The supervisor: starts outputs and inputs (a "generation" of the
//! pipeline), serves `[agent.api]`, tells systemd how it is doing, reloads
//! on SIGHUP and stops on SIGTERM/SIGINT.
//!
//! Stop: the inputs stop, open chunks are sealed and flushed within
//! shutdown_timeout, and what could not be written is reported. A second
//! signal exits at once.
//!
//! Reload (SIGHUP): the config is read again and checked while the old
//! pipeline runs; a bad one is refused (each problem logged as
//! `FILE:LINE: key: message`) and nothing changes. A good one: the old inputs
//! stop (their ports are released), every output that keeps its id is
//! halted after its current write attempt and its chunks are handed to the
//! new pipeline (file buffers: found on disk again; memory buffers: passed
//! over in memory), outputs that are gone drain in the background within
//! shutdown_timeout, then the new generation starts. If it cannot start
//! (a port taken), the previous config is started again with the chunks.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use fuwa_api::{InputContext, Output, Shutdown};
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::admin::{self, ApiServer, Live, LiveInput, LiveOutput, Status};
use crate::buffer::config::BufferType;
use crate::buffer::{OutputBuffer, Queued, QueuedData};
use crate::config::{load_str, AgentConfig, Config, ConfigErrors, DEFAULT_CONFIG};
use crate::metrics::{CountingEmitter, Registry};
use crate::router::{Pipeline, RoutedFilter, RoutedOutput};

/// Where the config comes from (read again on every reload).
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Embedded,
}

impl Source {
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Embedded => "(embedded default)".into(),
        }
    }

    /// The config text, or the error `fuwa check` would print.
    pub fn read(&self) -> Result<String, ConfigErrors> {
        match self {
            Source::Embedded => Ok(DEFAULT_CONFIG.to_string()),
            Source::File(p) => std::fs::read_to_string(p).map_err(|e| {
                let name = self.name();
                ConfigErrors {
                    file: name.clone(),
                    lines: vec![format!("{name}: cannot read the config file: {e}")],
                }
            }),
        }
    }
}

/// Changes the log filter (`log_level`) of the running process.
pub type LogReload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub struct RunOptions {
    pub source: Source,
    pub data_dir: Option<PathBuf>,
    /// None when FUWA_LOG sets the level (the config's is then ignored)
    pub log_reload: Option<LogReload>,
}

/// Tells systemd (Type=notify / notify-reload); a no-op without NOTIFY_SOCKET.
fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

struct OutputRun {
    id: String,
    buffer: Arc<OutputBuffer>,
    plugin: Arc<dyn Output>,
    workers: JoinSet<()>,
}

/// One running pipeline: built from one config, replaced by a reload.
struct Generation {
    agent: AgentConfig,
    /// the config text it was built from (to go back to it)
    src: String,
    pipeline: Arc<Pipeline>,
    shutdown_tx: watch::Sender<bool>,
    input_tasks: JoinSet<()>,
    outputs: Vec<OutputRun>,
}

/// Chunks taken from a halted output, for the output with the same id in
/// the next generation.
struct Handed {
    chunks: Vec<Queued>,
    data_dir: PathBuf,
}

type Handover = HashMap<String, Handed>;

/// Creates data_dir (0700: it holds buffered events and dead letters).
/// False when it could not be created and nothing needs it.
fn create_data_dir(cfg: &Config) -> Result<bool> {
    use std::os::unix::fs::DirBuilderExt;
    let needs_dir = cfg
        .outputs
        .iter()
        .any(|o| o.buffer.kind == BufferType::File);
    let created = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.agent.data_dir);
    if let Err(e) = created {
        if cfg.data_dir_explicit || needs_dir {
            return Err(e).with_context(|| {
                format!("cannot create data_dir {}", cfg.agent.data_dir.display())
            });
        }
        warn!(data_dir = %cfg.agent.data_dir.display(), error = %e, "cannot create the default data_dir; nothing needs it with memory buffers");
        return Ok(false);
    }
    Ok(true)
}

/// The name of the lock file in data_dir.
pub const LOCK_FILE: &str = "fuwa.lock";

/// Another `fuwa run` holds data_dir (or it could not be locked): exit 2,
/// a restart cannot fix it.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// the lock file cannot be opened (EACCES, EROFS...)
    #[error("{0}")]
    Open(String),
    /// held by another process, or flock failed
    #[error("{0}")]
    Held(String),
}

/// An exclusive lock (flock) on `data_dir/fuwa.lock`, holding the pid of
/// the agent that has it; released when dropped or when the process ends,
/// however it ends. Two agents on one data_dir would queue, deliver and
/// delete each other's chunks; the second one refuses to start instead.
/// `fuwa dead-letter`, `fuwa check` and `fuwa athena-ddl` do not take it.
pub struct DataDirLock {
    pub dir: PathBuf,
    _file: std::fs::File,
}

impl DataDirLock {
    pub fn acquire(dir: &std::path::Path) -> Result<DataDirLock, LockError> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(LOCK_FILE);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                LockError::Open(format!("cannot open the lock file {}: {e}", path.display()))
            })?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut held = String::new();
                let _ = f.take(64).read_to_string(&mut held);
                let pid = held.trim();
                let holder = if pid.is_empty() {
                    "another process".to_string()
                } else {
                    format!("another fuwa (pid {pid})")
                };
                return Err(LockError::Held(format!(
                    "data_dir {} is in use by {holder} (lock file {}): two agents on one data_dir would lose events; stop it or give this one another --data-dir",
                    dir.display(),
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(LockError::Held(format!(
                    "cannot lock data_dir {} ({}): {e}",
                    dir.display(),
                    path.display()
                )))
            }
        }
        let written = f
            .set_len(0)
            .and_then(|_| f.rewind())
            .and_then(|_| writeln!(f, "{}", std::process::id()))
            .and_then(|_| f.sync_data());
        if let Err(e) = written {
            warn!(path = %path.display(), error = %e, "cannot write the pid into the lock file (the lock is held)");
        }
        info!(data_dir = %dir.display(), pid = std::process::id(), "data_dir locked");
        Ok(DataDirLock {
            dir: dir.to_path_buf(),
            _file: f,
        })
    }
}

/// Creates and locks the data_dir of `cfg` (None when there is no usable
/// data_dir and nothing needs one).
fn lock_data_dir(cfg: &Config) -> Result<Option<DataDirLock>> {
    if !create_data_dir(cfg)? {
        return Ok(None);
    }
    let needs_dir = cfg
        .outputs
        .iter()
        .any(|o| o.buffer.kind == BufferType::File);
    match DataDirLock::acquire(&cfg.agent.data_dir) {
        Ok(l) => Ok(Some(l)),
        // a default data_dir this user cannot write (the package's, say)
        // while only memory buffers run: as when it cannot be created
        Err(LockError::Open(e)) if !cfg.data_dir_explicit && !needs_dir => {
            warn!(data_dir = %cfg.agent.data_dir.display(), error = %e, "cannot lock the default data_dir; nothing needs it with memory buffers");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Starts a generation: binds the inputs, creates the buffers (a file
/// buffer queues what it finds on disk), adopts the chunks handed over,
/// then runs workers and inputs. On failure nothing is left running and
/// the handover comes back untouched.
async fn start(
    cfg: Config,
    src: String,
    registry: &Registry,
    mut handover: Handover,
) -> Result<(Generation, Live), (anyhow::Error, Handover)> {
    if let Err(e) = create_data_dir(&cfg) {
        return Err((e, handover));
    }
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
        let mut workers = JoinSet::new();
        for _ in 0..threads {
            workers.spawn(buf.clone().worker());
        }
        tokio::spawn(buf.clone().flusher());
        runs.push(OutputRun {
            id,
            buffer: buf,
            plugin,
            workers,
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

impl Generation {
    /// Stops the inputs (they stop accepting and release their ports).
    async fn stop_inputs(&mut self) {
        let _ = self.shutdown_tx.send(true);
        let joined = tokio::time::timeout(Duration::from_secs(5), async {
            while self.input_tasks.join_next().await.is_some() {}
        })
        .await;
        if joined.is_err() {
            // an input waiting on a full buffer: refuse it, then wait again
            warn!("inputs did not stop within 5s; refusing their pending batches");
            self.pipeline.close();
            for o in &self.outputs {
                o.buffer.close();
            }
            if tokio::time::timeout(Duration::from_secs(5), async {
                while self.input_tasks.join_next().await.is_some() {}
            })
            .await
            .is_err()
            {
                warn!("inputs still running after 10s: aborting them");
                self.input_tasks.abort_all();
                while self.input_tasks.join_next().await.is_some() {}
            }
        }
        self.pipeline.close();
    }
}

/// Waits for an output's workers, up to `timeout`; false on timeout.
async fn join_workers(workers: &mut JoinSet<()>, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, async {
        while workers.join_next().await.is_some() {}
    })
    .await
    .is_ok()
}

async fn close_plugin(id: &str, p: &Arc<dyn Output>) {
    if tokio::time::timeout(Duration::from_secs(5), p.close())
        .await
        .is_err()
    {
        warn!(output = %id, "output did not close in time");
    }
}

/// Closes an output for good: its buffer is flushed within `timeout`,
/// what is left is reported.
async fn drain_output(mut o: OutputRun, timeout: Duration) {
    o.buffer.close();
    if !join_workers(&mut o.workers, timeout).await {
        let (chunks, records) = o.buffer.pending();
        if chunks > 0 {
            if o.buffer.is_file() {
                info!(output = %o.id, chunks, records, "shutdown_timeout reached: the rest stays on disk for the next start");
            } else {
                error!(output = %o.id, chunks, records, timeout = ?timeout, "shutdown_timeout reached: these records were not written (memory buffer)");
            }
        }
    }
    close_plugin(&o.id, &o.plugin).await;
}

/// Halts an output kept by a reload and takes its chunks.
async fn halt_output(mut o: OutputRun, timeout: Duration) -> Vec<Queued> {
    o.buffer.halt();
    if !o.buffer.wait_sealed(timeout).await {
        warn!(output = %o.id, "open chunks were not sealed in time; the next pipeline finds them on disk");
    }
    if !join_workers(&mut o.workers, timeout).await {
        let (chunks, records) = o.buffer.pending();
        warn!(output = %o.id, chunks, records, timeout = ?timeout, "a write did not finish within shutdown_timeout: it was abandoned and its chunk will be written again (file buffer) or is lost (memory buffer)");
        o.workers.abort_all();
        while o.workers.join_next().await.is_some() {}
    }
    let chunks = o.buffer.take_queue();
    close_plugin(&o.id, &o.plugin).await;
    chunks
}

struct Supervisor {
    opts: RunOptions,
    registry: Registry,
    status: Arc<Status>,
    api: Option<ApiServer>,
    api_bind: Option<SocketAddr>,
    current: Option<Generation>,
    /// held for as long as the agent runs, across reloads: a reload to
    /// another data_dir locks it too and keeps the old one (the chunks
    /// handed over are delivered from there)
    locks: Vec<DataDirLock>,
}

/// The listener's real address, else the configured one.
fn bound_addr(
    l: Option<&tokio::net::TcpListener>,
    configured: Option<SocketAddr>,
) -> Option<SocketAddr> {
    l.and_then(|l| l.local_addr().ok()).or(configured)
}

pub async fn run(cfg: Config, src: String, opts: RunOptions) -> Result<()> {
    let registry = Registry::default();
    // before anything reads or writes data_dir
    let lock = lock_data_dir(&cfg)?;
    let api_cfg = cfg.agent.api.clone();
    // the API port is bound before anything runs, like the inputs' ports
    let listener = match &api_cfg {
        Some(a) => Some(admin::bind(a.bind).await?),
        None => None,
    };
    let (generation, live) = start(cfg, src, &registry, Handover::new())
        .await
        .map_err(|(e, _)| e)?;
    let status = Arc::new(Status::new(opts.source.name(), live));
    // the address the API really has (port 0 in the config: the kernel's
    // pick), so a reload naming that address keeps the listener
    let api_bind = bound_addr(listener.as_ref(), api_cfg.as_ref().map(|a| a.bind));
    let api = listener.map(|l| admin::serve(l, status.clone()));
    let mut sup = Supervisor {
        opts,
        registry,
        status,
        api_bind,
        api,
        current: Some(generation),
        locks: lock.into_iter().collect(),
    };
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    info!(config = %sup.opts.source.name(), pid = std::process::id(), "fuwa started");
    notify(&[NotifyState::Ready, NotifyState::Status("running")]);
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the config");
                sup.reload().await?;
            }
        }
    }
    notify(&[NotifyState::Stopping]);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        warn!("second signal: exiting now");
        std::process::exit(130);
    });
    if let Some(mut g) = sup.current.take() {
        g.stop_inputs().await;
        let timeout = g.agent.shutdown_timeout.0;
        let mut drains = JoinSet::new();
        for o in g.outputs {
            drains.spawn(drain_output(o, timeout));
        }
        while drains.join_next().await.is_some() {}
    }
    if let Some(a) = sup.api.take() {
        a.stop();
    }
    info!("fuwa stopped");
    Ok(())
}

impl Supervisor {
    /// Checks a config and builds its plugins, off the reactor threads (it
    /// reads files such as parser tables and certificates).
    async fn load(&self, src: String) -> Result<Config, ConfigErrors> {
        let name = self.opts.source.name();
        let data_dir = self.opts.data_dir.clone();
        let name2 = name.clone();
        tokio::task::spawn_blocking(move || load_str(&src, &name2, data_dir.as_deref()))
            .await
            .unwrap_or_else(|e| {
                Err(ConfigErrors {
                    file: name.clone(),
                    lines: vec![format!("{name}: the config check failed: {e}")],
                })
            })
    }

    /// Handles one SIGHUP. Errors only when neither the new nor the old
    /// config could be started again (nothing is running then).
    async fn reload(&mut self) -> Result<()> {
        notify_reloading();
        let r = self.try_reload().await;
        notify(&[NotifyState::Ready, NotifyState::Status("running")]);
        r
    }

    async fn try_reload(&mut self) -> Result<()> {
        let name = self.opts.source.name();
        let loaded = match self.opts.source.read() {
            Ok(src) => self.load(src.clone()).await.map(|cfg| (src, cfg)),
            Err(e) => Err(e),
        };
        let (src, cfg) = match loaded {
            Ok(x) => x,
            Err(e) => {
                for line in &e.lines {
                    error!("{line}");
                }
                error!(config = %name, problems = e.lines.len(), "reload refused: the config has errors; the running pipeline is unchanged");
                self.status.reloaded(false, e.lines.clone());
                return Ok(());
            }
        };
        // a new data_dir is locked before anything stops; the old one stays
        // locked too, until the agent stops
        let locked = self.locks.iter().any(|l| l.dir == cfg.agent.data_dir);
        let mut new_lock = None;
        if !locked {
            match lock_data_dir(&cfg) {
                Ok(l) => new_lock = l,
                Err(e) => {
                    error!(error = %format!("{e:#}"), "reload refused: the running pipeline is unchanged");
                    self.status.reloaded(false, vec![format!("{e:#}")]);
                    return Ok(());
                }
            }
        }
        let Some(mut old) = self.current.take() else {
            return Ok(());
        };
        let new_level = cfg.agent.log_level.clone();
        if cfg.agent.log_format != old.agent.log_format {
            warn!("log_format takes effect at the next start, not on reload");
        }
        // a new API address is bound before anything stops
        let mut new_bind = cfg.agent.api.as_ref().map(|a| a.bind);
        let mut new_listener = None;
        if new_bind != self.api_bind {
            if let Some(addr) = new_bind {
                match admin::bind(addr).await {
                    Ok(l) => {
                        new_bind = bound_addr(Some(&l), new_bind);
                        new_listener = Some(l);
                    }
                    Err(e) => {
                        error!(error = %e, "reload refused: the running pipeline is unchanged");
                        self.status.reloaded(false, vec![e.to_string()]);
                        self.current = Some(old);
                        return Ok(());
                    }
                }
            }
        }

        old.stop_inputs().await;
        let keep: HashSet<&str> = cfg.outputs.iter().map(|o| o.id.as_str()).collect();
        let timeout = old.agent.shutdown_timeout.0;
        let data_dir = old.agent.data_dir.clone();
        let mut handover = Handover::new();
        let mut halts = JoinSet::new();
        for o in std::mem::take(&mut old.outputs) {
            if keep.contains(o.id.as_str()) {
                halts.spawn(async move {
                    let id = o.id.clone();
                    (id, halt_output(o, timeout).await)
                });
            } else {
                info!(output = %o.id, "output removed by the reload: flushing it in the background");
                tokio::spawn(drain_output(o, timeout));
            }
        }
        while let Some(r) = halts.join_next().await {
            if let Ok((id, chunks)) = r {
                handover.insert(
                    id,
                    Handed {
                        chunks,
                        data_dir: data_dir.clone(),
                    },
                );
            }
        }

        match start(cfg, src, &self.registry, handover).await {
            Ok((generation, live)) => {
                self.current = Some(generation);
                self.status.set_live(live);
                if let Some(l) = new_lock {
                    warn!(new = %l.dir.display(), "data_dir changed by the reload: the chunks queued in the old one are delivered from there, and it stays locked until the agent stops");
                    self.locks.push(l);
                }
                if new_bind != self.api_bind {
                    if let Some(a) = self.api.take() {
                        a.stop();
                    }
                    self.api = new_listener.map(|l| admin::serve(l, self.status.clone()));
                    self.api_bind = new_bind;
                }
                if new_level != old.agent.log_level {
                    match &self.opts.log_reload {
                        Some(set) => match set(&new_level) {
                            Ok(()) => info!(log_level = %new_level, "log level changed"),
                            Err(e) => warn!(error = %e, "cannot change the log level"),
                        },
                        None => warn!("FUWA_LOG is set: log_level from the config is not applied"),
                    }
                }
                self.status.reloaded(true, vec![]);
                info!(config = %name, "config reloaded");
                Ok(())
            }
            Err((e, handover)) => {
                error!(error = %format!("{e:#}"), "the new config could not start; starting the previous one again");
                self.status.reloaded(false, vec![format!("{e:#}")]);
                let cfg = self
                    .load(old.src.clone())
                    .await
                    .map_err(|e| anyhow!("the previous config no longer loads either:\n{e}"))?;
                let (generation, live) = start(cfg, old.src.clone(), &self.registry, handover)
                    .await
                    .map_err(|(e, _)| e.context("the previous config could not start again"))?;
                self.current = Some(generation);
                self.status.set_live(live);
                Ok(())
            }
        }
    }
}
