//! fuwa: a small, fast log agent.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use fuwa::cli::{athena, deadletter, import};
use fuwa::config::{load_file, load_str, Config, ConfigErrors, LogFormat};
use fuwa::engine;

#[derive(Parser)]
#[command(
    name = "fuwa",
    version,
    about = "A small, fast log agent: Fluentd forward protocol in, filters, buffered outputs",
    long_about = "fuwa accepts events over the Fluentd forward protocol, routes them by tag \
through filters and into buffered outputs (files, stdout, null).\n\n\
Run with the embedded default (forward on 127.0.0.1:24224 -> stdout):\n  fuwa run\n\
Run a config file:\n  fuwa run -c conf/quickstart.toml\n\
Check a config file without running it:\n  fuwa check -c conf/quickstart.toml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline (without -c: forward on 127.0.0.1:24224 -> stdout)
    Run {
        /// Config file (TOML)
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Overrides [agent] data_dir
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Validate a config file: exit 0, or print FILE:LINE: key: problem for each problem
    Check {
        /// Config file (TOML)
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
    /// Translate another agent's config into a fuwa config (printed on stdout)
    #[command(subcommand)]
    Import(ImportCmd),
    /// Chunks the buffers gave up on (data_dir/dead-letter/<output>/)
    #[command(subcommand)]
    DeadLetter(DeadLetterCmd),
    /// Print an Athena CREATE EXTERNAL TABLE (with partition projection) for an s3 output
    AthenaDdl {
        /// Config file (TOML)
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        /// The s3 output's id (`id`, or TYPE.N by position)
        #[arg(long = "output", value_name = "ID")]
        output: String,
        /// Table name: TABLE or DATABASE.TABLE
        #[arg(long, value_name = "NAME")]
        table: String,
        /// JSON Lines records to infer the columns from (default: the
        /// records buffered for the output)
        #[arg(long, value_name = "F.jsonl")]
        sample_file: Option<PathBuf>,
        /// Overrides [agent] data_dir (where the buffered records are)
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImportCmd {
    /// amazon-kinesis-agent's agent.json (flows, dataProcessingOptions);
    /// what has no equivalent is listed, never ignored
    KinesisAgent {
        /// e.g. /etc/aws-kinesis/agent.json
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum DeadLetterCmd {
    /// List dead letters: output, chunk, records, reason, age, error
    List {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Send dead letters again through their output (agent running or not);
    /// delivered ones are removed
    Replay {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Only this output's dead letters
        #[arg(long = "output", value_name = "ID")]
        output: Option<String>,
        /// Only these dead-letter files (.chunk or .json)
        files: Vec<PathBuf>,
    },
}

fn print_errors(e: &ConfigErrors) {
    eprint!("{e}");
    eprintln!("{}: {} problem(s) found", e.file, e.lines.len());
}

/// Sets up logging; returns how to change the level on a reload (None when
/// FUWA_LOG decides it).
fn init_logging(cfg: &Config) -> Option<engine::LogReload> {
    use tracing_subscriber::EnvFilter;
    let from_env = std::env::var("FUWA_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok());
    let env_rules = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(&cfg.agent.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    fn reloader<L, S>(h: tracing_subscriber::reload::Handle<L, S>) -> engine::LogReload
    where
        L: From<EnvFilter> + 'static + Send + Sync,
        S: 'static,
    {
        Box::new(move |level: &str| {
            let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
            h.reload(L::from(f)).map_err(|e| e.to_string())
        })
    }
    let handle = match cfg.agent.log_format {
        LogFormat::Json => {
            let b = builder.json().with_filter_reloading();
            let h = reloader(b.reload_handle());
            b.init();
            h
        }
        LogFormat::Text => {
            let b = builder.with_ansi(false).with_filter_reloading();
            let h = reloader(b.reload_handle());
            b.init();
            h
        }
    };
    (!env_rules).then_some(handle)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: each connection, tailed
/// file and open buffer chunk is a file descriptor, and the usual soft limit
/// (1,024) is far below what the hard limit allows. The file buffers' default
/// `max_open_chunks` is derived from the result.
/// glibc's malloc raises its mmap threshold each time a large block it
/// mmapped is freed (up to 32 MiB), after which the chunks read whole for
/// delivery (up to chunk_limit_size) come from the heap arenas, where the
/// holes they leave keep the peak resident size growing with the speed of a
/// run (issue 14: 31 to 86 MiB on the same work). A fixed threshold of
/// 4 MiB keeps every block that large mmapped, and returned to the system
/// when freed: the same run peaks at about 24 MiB every time, at the same
/// speed (docs/limits.md). An operator's MALLOC_MMAP_THRESHOLD_ wins.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets a malloc parameter (it takes malloc's
        // own locks)
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        }
    }
}

fn raise_nofile_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write the struct they are given
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit (RLIMIT_NOFILE)");
        return;
    }
    let before = r.rlim_cur;
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: as above
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            tracing::warn!(soft = before, hard = r.rlim_max, error = %std::io::Error::last_os_error(), "cannot raise the open-file limit (RLIMIT_NOFILE) to the hard limit");
            return;
        }
    }
    tracing::info!(
        soft = r.rlim_cur,
        hard = r.rlim_max,
        was = before,
        "open-file limit (RLIMIT_NOFILE)"
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load_file(&config, None) {
            Ok(c) => {
                println!(
                    "{}: ok ({} input(s), {} filter(s), {} output(s))",
                    config.display(),
                    c.inputs.len(),
                    c.filters.len(),
                    c.outputs.len()
                );
                // the limits derived from the open-file limit as `run` sees them
                raise_nofile_limit();
                let b = fuwa::cli::bound::of_config(&c);
                println!("{}", b.line());
                print!("{}", b.breakdown());
                ExitCode::SUCCESS
            }
            Err(e) => {
                print_errors(&e);
                ExitCode::from(2)
            }
        },
        Command::AthenaDdl {
            config,
            output,
            table,
            sample_file,
            data_dir,
        } => {
            let cfg = match load_file(&config, data_dir.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    print_errors(&e);
                    return ExitCode::from(2);
                }
            };
            let req = athena::Request {
                config_path: &config,
                config: &cfg,
                output: &output,
                table: &table,
                sample_file: sample_file.as_deref(),
            };
            match athena::ddl(&req) {
                Ok(d) => {
                    for w in &d.warnings {
                        eprintln!("warning: {w}");
                    }
                    print!("{}", d.sql);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("fuwa: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Import(ImportCmd::KinesisAgent { file }) => {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{}: cannot read: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            match import::kinesis_agent(&text, &file.display().to_string()) {
                Ok(imp) => {
                    print!("{}", imp.toml);
                    for u in &imp.untranslated {
                        eprintln!("not translated: {u}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("fuwa: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::DeadLetter(cmd) => {
            let (config, data_dir) = match &cmd {
                DeadLetterCmd::List { config, data_dir } => (config, data_dir),
                DeadLetterCmd::Replay {
                    config, data_dir, ..
                } => (config, data_dir),
            };
            let cfg = match load_file(config, data_dir.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    print_errors(&e);
                    return ExitCode::from(2);
                }
            };
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("fuwa: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let r = match &cmd {
                DeadLetterCmd::List { .. } => deadletter::list(&cfg),
                DeadLetterCmd::Replay { output, files, .. } => {
                    rt.block_on(deadletter::replay(&cfg, output.as_deref(), files))
                }
            };
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fuwa: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config, data_dir } => {
            let source = match config {
                Some(path) => engine::Source::File(path),
                None => engine::Source::Embedded,
            };
            let loaded = source.read().and_then(|src| {
                load_str(&src, &source.name(), data_dir.as_deref()).map(|c| (src, c))
            });
            let (src, cfg) = match loaded {
                Ok(c) => c,
                Err(e) => {
                    print_errors(&e);
                    return ExitCode::from(2);
                }
            };
            let log_reload = init_logging(&cfg);
            raise_nofile_limit();
            tune_allocator();
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("fuwa: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = engine::RunOptions {
                source,
                data_dir,
                log_reload,
                commands: None,
            };
            match rt.block_on(engine::run(cfg, src, opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fuwa: {e:#}");
                    // exit 2 (systemd's RestartPreventExitStatus): no restart
                    // fixes a data_dir held by another agent
                    if e.downcast_ref::<engine::LockError>().is_some() {
                        ExitCode::from(2)
                    } else {
                        ExitCode::FAILURE
                    }
                }
            }
        }
    }
}
