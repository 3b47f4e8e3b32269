//! The supervisor: starts outputs and inputs (a "generation" of the
//! pipeline), serves `[agent.api]`, tells systemd how it is doing, reloads
//! on SIGHUP and stops on SIGTERM/SIGINT (or on `Command`s, when the engine
//! is driven as a library). By job:
//! - `startup`: a generation starts (inputs bound first, buffers, workers);
//! - `reload`: SIGHUP, the chunks handed from one generation to the next;
//! - `shutdown`: the stop within one shutdown_timeout deadline, every task
//!   joined;
//! - `datadir`: data_dir created 0700 and locked.
//!
//! A second stop signal during a stop exits at once (130).

mod datadir;
mod reload;
mod shutdown;
mod startup;

pub use datadir::{DataDirLock, LockError, LOCK_FILE};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::admin::{self, ApiServer, Status};
use crate::config::{Config, ConfigErrors, DEFAULT_CONFIG};
use crate::metrics::Registry;
use datadir::lock_data_dir;
use startup::{start, Generation, Handover};

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

/// What a caller of `run` can ask besides the signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// as SIGHUP
    Reload,
    /// as SIGTERM
    Stop,
}

pub struct RunOptions {
    pub source: Source,
    pub data_dir: Option<PathBuf>,
    /// None when FUWA_LOG sets the level (the config's is then ignored)
    pub log_reload: Option<LogReload>,
    /// commands from the embedding program (tests); None: signals only
    pub commands: Option<mpsc::UnboundedReceiver<Command>>,
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

struct Supervisor {
    opts: RunOptions,
    registry: Registry,
    status: Arc<Status>,
    api: Option<ApiServer>,
    api_bind: Option<SocketAddr>,
    current: Option<Generation>,
    /// outputs a reload removed, draining (joined by the stop)
    background: JoinSet<()>,
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

/// Runs the agent until SIGTERM/SIGINT (or `Command::Stop`). When it
/// returns, every task it spawned has ended.
pub async fn run(cfg: Config, src: String, mut opts: RunOptions) -> Result<()> {
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
    let mut commands = opts.commands.take();
    let mut sup = Supervisor {
        opts,
        registry,
        status,
        api_bind,
        api,
        current: Some(generation),
        background: JoinSet::new(),
        locks: lock.into_iter().collect(),
    };
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    info!(config = %sup.opts.source.name(), pid = std::process::id(), "fuwa started");
    notify(&[NotifyState::Ready, NotifyState::Status("running")]);
    loop {
        let command = async {
            match commands.as_mut() {
                Some(c) => c.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                info!("SIGHUP: reloading the config");
                if let Err(e) = sup.reload().await {
                    sup.stop().await;
                    return Err(e);
                }
            }
            c = command => match c {
                Some(Command::Reload) => {
                    info!("reload requested");
                    if let Err(e) = sup.reload().await {
                        sup.stop().await;
                        return Err(e);
                    }
                }
                // a caller that is gone cannot stop the agent any more
                None => commands = None,
                Some(Command::Stop) => { info!("stop requested"); break; }
            },
            // drains of outputs a reload removed are reaped as they end
            Some(_) = sup.background.join_next(), if !sup.background.is_empty() => {}
        }
    }
    notify(&[NotifyState::Stopping]);
    tokio::select! {
        _ = sup.stop() => {}
        _ = term.recv() => second_signal(),
        _ = int.recv() => second_signal(),
    }
    info!("fuwa stopped");
    Ok(())
}

fn second_signal() {
    warn!("second signal: exiting now");
    std::process::exit(130);
}
