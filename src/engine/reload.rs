//! Reload (SIGHUP): the config is read again and checked while the old
//! pipeline runs; a bad one is refused and nothing changes. A good one: a
//! new data_dir or API address is taken first, then, within one
//! shutdown_timeout of the old config, the old inputs stop, every output
//! that keeps its id is halted after its current write attempt and its
//! chunks taken, and outputs that are gone drain in the background (a
//! task the supervisor tracks); then the new generation starts with the
//! chunks. If it cannot start, the previous config is started again.

use std::collections::HashSet;

use anyhow::{anyhow, Result};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::datadir::lock_data_dir;
use super::shutdown::{drain_output, halt_output, Deadline};
use super::startup::{start, Handed, Handover};
use super::{bound_addr, notify, notify_reloading, Supervisor};
use crate::admin;
use crate::config::{load_str, Config, ConfigErrors};
use sd_notify::NotifyState;

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
    pub(super) async fn reload(&mut self) -> Result<()> {
        notify_reloading();
        let r = self.try_reload().await;
        notify(&[NotifyState::Ready, NotifyState::Status("running")]);
        r
    }

    async fn try_reload(&mut self) -> Result<()> {
        let name = self.opts.source.name();
        // the file system is read off the reactor threads
        let source = self.opts.source.clone();
        let read = tokio::task::spawn_blocking(move || source.read())
            .await
            .unwrap_or_else(|e| {
                Err(ConfigErrors {
                    file: name.clone(),
                    lines: vec![format!("{name}: cannot read the config: {e}")],
                })
            });
        let loaded = match read {
            Ok(src) => self.load(src.clone()).await.map(|cfg| (src, cfg)),
            Err(e) => Err(e),
        };
        let (src, mut cfg) = match loaded {
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
            let (back, lock) = tokio::task::spawn_blocking(move || {
                let lock = lock_data_dir(&cfg);
                (cfg, lock)
            })
            .await?;
            cfg = back;
            match lock {
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

        // one deadline for the whole hand-over: inputs, halts, closes
        let deadline = Deadline::after(old.agent.shutdown_timeout.0);
        old.stop_inputs(deadline).await;
        let keep: HashSet<&str> = cfg.outputs.iter().map(|o| o.id.as_str()).collect();
        let data_dir = old.agent.data_dir.clone();
        let mut handover = Handover::new();
        let mut halts = JoinSet::new();
        for o in std::mem::take(&mut old.outputs) {
            if keep.contains(o.id.as_str()) {
                halts.spawn(async move {
                    let id = o.id.clone();
                    (id, halt_output(o, deadline).await)
                });
            } else {
                info!(output = %o.id, "output removed by the reload: flushing it in the background");
                self.background.spawn(drain_output(o, deadline));
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
                        a.stop().await;
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
