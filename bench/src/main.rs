//! fuwa-loadgen: a forward-protocol load generator with acks.
//!
//! Each connection sends PackedForward messages `[tag, bin(entries),
//! {"chunk": id}]` of `--batch` JSON-access-log-like records (~200 bytes
//! each, EventTime ext 0 times), one message in flight per connection: it
//! waits for `{"ack": id}` and checks it names the chunk just sent before
//! sending the next. Only acked events are counted.
//!
//! The message bytes are built once per connection; only the 24-character
//! chunk id is rewritten in place for each message (a run nonce, the
//! connection number and a per-connection counter, so ids are unique).
//!
//! Other modes, for bench/run.sh:
//! - `--idle-connections N --pid P`: opens N connections, holds them for
//!   `--hold`, reports the agent's VmRSS before and while they are open;
//! - `--free-port`: prints a free TCP port on 127.0.0.1;
//! - `--wait-port`: waits until something accepts on host:port.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "fuwa-loadgen",
    about = "Forward protocol load generator: PackedForward batches with acks, counts acked events"
)]
struct Args {
    /// Agent address (use 127.0.0.1 for benchmarks)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Agent forward port
    #[arg(long, default_value_t = 24224)]
    port: u16,
    /// TCP connections, each with one message in flight
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Events per PackedForward message
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Measured time (e.g. 10s, 500ms, 1m)
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load sent before measuring starts (not counted)
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Agent pid: report its VmHWM (peak RSS) and VmRSS at the end
    #[arg(long)]
    pid: Option<u32>,
    /// Print one machine-readable JSON line instead of text
    #[arg(long)]
    json: bool,
    /// Tag of the events
    #[arg(long, default_value = "bench.access")]
    tag: String,
    /// Longest wait for one ack before giving up (fails the run)
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    ack_timeout: Duration,
    /// Mode: open this many idle connections and report the agent's VmRSS (needs --pid)
    #[arg(long)]
    idle_connections: Option<usize>,
    /// How long --idle-connections holds the connections before reading VmRSS
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    hold: Duration,
    /// Mode: print a free TCP port on --host and exit
    #[arg(long)]
    free_port: bool,
    /// Mode: wait up to this long until --host:--port accepts connections
    #[arg(long, value_parser = parse_duration)]
    wait_port: Option<Duration>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 10s, 500ms or 1m"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

// ---------------------------------------------------------------- payload

/// xorshift64*: deterministic record variety without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    rmp::encode::write_str(out, s).expect("write to Vec");
}

fn put_kv_str(out: &mut Vec<u8>, k: &str, v: &str) {
    put_str(out, k);
    put_str(out, v);
}

fn put_kv_uint(out: &mut Vec<u8>, k: &str, v: u64) {
    put_str(out, k);
    rmp::encode::write_uint(out, v).expect("write to Vec");
}

const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
const CODES: [u64; 6] = [200, 200, 200, 304, 404, 500];
const USERS: [&str; 4] = ["-", "alice", "bob", "carol.smith"];
const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0",
    "Mozilla/5.0 (Macintosh) Safari/605.1.15",
    "curl/8.5.0",
    "Mozilla/5.0 (Windows NT 10.0) Chrome/125.0",
];

/// The PackedForward entries: `batch` × `[EventTime, {record}]`.
fn build_entries(batch: usize, rng: &mut Rng) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as u32;
    let mut out = Vec::with_capacity(batch * 220);
    for i in 0..batch {
        out.push(0x92);
        // EventTime: fixext8, type 0, big-endian seconds and nanoseconds
        out.extend_from_slice(&[0xd7, 0x00]);
        out.extend_from_slice(&secs.to_be_bytes());
        let nanos = (now.subsec_nanos() as u64 + i as u64 * 1000) % 1_000_000_000;
        out.extend_from_slice(&(nanos as u32).to_be_bytes());

        rmp::encode::write_map_len(&mut out, 9).expect("write to Vec");
        let host = format!(
            "10.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        );
        put_kv_str(&mut out, "host", &host);
        put_kv_str(&mut out, "user", USERS[rng.below(4) as usize]);
        put_kv_str(&mut out, "method", METHODS[rng.below(4) as usize]);
        let path = format!(
            "/api/v1/items/{}?page={}",
            rng.below(100_000),
            rng.below(50)
        );
        put_kv_str(&mut out, "path", &path);
        put_kv_uint(&mut out, "code", CODES[rng.below(6) as usize]);
        put_kv_uint(&mut out, "size", 100 + rng.below(50_000));
        let referer = format!("https://www.example.com/p/{}", rng.below(10_000));
        put_kv_str(&mut out, "referer", &referer);
        put_kv_str(&mut out, "agent", AGENTS[rng.below(4) as usize]);
        let rid = format!("{:016x}", rng.next());
        put_kv_str(&mut out, "request_id", &rid);
    }
    out
}

const CHUNK_ID_LEN: usize = 24;

/// One connection's message: `[tag, bin(entries), {"chunk": id}]`, and
/// where the id's 24 bytes are, to rewrite them for each message.
struct Message {
    bytes: Vec<u8>,
    id_at: usize,
    /// the counter's hex digits are the last 14 characters of the id
    counter_at: usize,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn build_message(tag: &str, entries: &[u8], nonce: u32, conn: usize) -> Message {
    let mut m = Vec::with_capacity(entries.len() + tag.len() + 64);
    rmp::encode::write_array_len(&mut m, 3).expect("write to Vec");
    put_str(&mut m, tag);
    rmp::encode::write_bin(&mut m, entries).expect("write to Vec");
    rmp::encode::write_map_len(&mut m, 1).expect("write to Vec");
    put_str(&mut m, "chunk");
    // id: 8 hex nonce, 2 hex connection, 14 hex counter (fixstr of 24)
    let id = format!("{:08x}{:02x}{:014x}", nonce, conn & 0xff, 0);
    assert_eq!(id.len(), CHUNK_ID_LEN);
    put_str(&mut m, &id);
    let id_at = m.len() - CHUNK_ID_LEN;
    Message {
        bytes: m,
        id_at,
        counter_at: id_at + 10,
    }
}

impl Message {
    fn set_counter(&mut self, mut n: u64) {
        let d = &mut self.bytes[self.counter_at..self.counter_at + 14];
        for c in d.iter_mut().rev() {
            *c = HEX[(n & 15) as usize];
            n >>= 4;
        }
    }
    fn id(&self) -> &[u8] {
        &self.bytes[self.id_at..self.id_at + CHUNK_ID_LEN]
    }
}

// ---------------------------------------------------------------- acks

fn read_exact_or(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), String> {
    r.read_exact(buf)
        .map_err(|e| format!("reading the ack ({what}): {e}"))
}

/// Reads one `{"ack": <str or bin>}` reply into `got`; fails on any other shape.
fn read_ack(r: &mut impl Read, got: &mut Vec<u8>) -> Result<(), String> {
    let n = rmp::decode::read_map_len(r).map_err(|e| format!("ack is not a map: {e}"))?;
    let mut found = false;
    for _ in 0..n {
        let klen = rmp::decode::read_str_len(r)
            .map_err(|e| format!("ack map key is not a string: {e}"))? as usize;
        let mut key = vec![0u8; klen];
        read_exact_or(r, &mut key, "key")?;
        let mut marker = [0u8; 1];
        read_exact_or(r, &mut marker, "value")?;
        let len = match marker[0] {
            m @ 0xa0..=0xbf => (m & 0x1f) as usize,
            0xd9 | 0xc4 => {
                let mut b = [0u8; 1];
                read_exact_or(r, &mut b, "len")?;
                b[0] as usize
            }
            0xda | 0xc5 => {
                let mut b = [0u8; 2];
                read_exact_or(r, &mut b, "len")?;
                u16::from_be_bytes(b) as usize
            }
            0xdb | 0xc6 => {
                let mut b = [0u8; 4];
                read_exact_or(r, &mut b, "len")?;
                u32::from_be_bytes(b) as usize
            }
            m => {
                return Err(format!(
                    "ack value has msgpack marker 0x{m:02x}, not str/bin"
                ))
            }
        };
        if len > 4096 {
            return Err(format!("ack value of {len} bytes"));
        }
        let mut v = vec![0u8; len];
        read_exact_or(r, &mut v, "value bytes")?;
        if key == b"ack" {
            *got = v;
            found = true;
        }
    }
    if found {
        Ok(())
    } else {
        Err("reply has no \"ack\" key".into())
    }
}

// ---------------------------------------------------------------- load

struct Shared {
    events: AtomicU64,
    messages: AtomicU64,
    measuring: AtomicBool,
    stop: AtomicBool,
}

struct ConnResult {
    latencies_us: Vec<u32>,
}

fn connect(addr: &str) -> Result<TcpStream, String> {
    let s = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.set_nodelay(true).ok();
    Ok(s)
}

fn run_conn(
    stream: TcpStream,
    mut msg: Message,
    batch: u64,
    shared: Arc<Shared>,
    ack_timeout: Duration,
) -> Result<ConnResult, String> {
    stream
        .set_read_timeout(Some(ack_timeout))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::with_capacity(4096, stream);
    let mut got = Vec::with_capacity(64);
    let mut latencies_us = Vec::with_capacity(1 << 16);
    let mut counter: u64 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        counter += 1;
        msg.set_counter(counter);
        let t0 = Instant::now();
        writer
            .write_all(&msg.bytes)
            .map_err(|e| format!("send failed after {} acked messages: {e}", counter - 1))?;
        read_ack(&mut reader, &mut got).map_err(|e| {
            format!(
                "message {counter} (chunk {}): {e}",
                String::from_utf8_lossy(msg.id())
            )
        })?;
        if got != msg.id() {
            return Err(format!(
                "ACK MISMATCH: sent chunk {:?}, got ack {:?}",
                String::from_utf8_lossy(msg.id()),
                String::from_utf8_lossy(&got)
            ));
        }
        let lat = t0.elapsed();
        shared.events.fetch_add(batch, Ordering::Relaxed);
        shared.messages.fetch_add(1, Ordering::Relaxed);
        if shared.measuring.load(Ordering::Relaxed) {
            latencies_us.push(lat.as_micros().min(u32::MAX as u128) as u32);
        }
    }
    Ok(ConnResult { latencies_us })
}

// ---------------------------------------------------------------- /proc

/// (VmHWM, VmRSS) of a process, in KiB.
fn mem_of(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

// ---------------------------------------------------------------- modes

fn free_port(host: &str) -> Result<(), String> {
    let l = TcpListener::bind((host, 0)).map_err(|e| format!("bind {host}:0: {e}"))?;
    println!("{}", l.local_addr().map_err(|e| e.to_string())?.port());
    Ok(())
}

fn wait_port(addr: &str, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!("nothing accepted on {addr} within {limit:?}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn idle(args: &Args, addr: &str, n: usize) -> Result<(), String> {
    let pid = args
        .pid
        .ok_or("--idle-connections needs --pid (the agent's)")?;
    let before = mem_of(pid).ok_or(format!("cannot read /proc/{pid}/status"))?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(connect(addr)?);
    }
    thread::sleep(args.hold);
    let during = mem_of(pid).ok_or(format!(
        "cannot read /proc/{pid}/status (did the agent exit?)"
    ))?;
    // the agent must not have closed them
    let mut open = 0;
    for c in &conns {
        c.set_nonblocking(true).ok();
        let mut b = [0u8; 1];
        match (&*c).read(&mut b) {
            Ok(0) => {}
            Ok(_) => open += 1, // sent something (unexpected) but still open
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
            Err(_) => {}
        }
    }
    drop(conns);
    if args.json {
        println!(
            "{{\"idle_connections\":{n},\"still_open\":{open},\"hold_s\":{:.1},\"vmrss_before_kib\":{},\"vmrss_kib\":{},\"vmhwm_kib\":{}}}",
            args.hold.as_secs_f64(),
            before.1,
            during.1,
            during.0
        );
    } else {
        println!(
            "{n} idle connections ({open} still open after {:.1}s): agent VmRSS {:.1} MiB (before: {:.1} MiB), VmHWM {:.1} MiB",
            args.hold.as_secs_f64(),
            mib(during.1),
            mib(before.1),
            mib(during.0)
        );
    }
    if open != n {
        return Err(format!("the agent closed {} idle connections", n - open));
    }
    Ok(())
}

fn load(args: &Args, addr: &str) -> Result<(), String> {
    if args.connections == 0 || args.batch == 0 {
        return Err("--connections and --batch must be at least 1".into());
    }
    let nonce = {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u32) ^ std::process::id().rotate_left(16)
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let entries = build_entries(args.batch, &mut rng);
    let event_bytes = entries.len() as f64 / args.batch as f64;
    let shared = Arc::new(Shared {
        events: AtomicU64::new(0),
        messages: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    });
    let mut msg_len = 0;
    let mut streams = Vec::new();
    for c in 0..args.connections {
        streams.push((c, connect(addr)?));
    }
    let mut handles = Vec::new();
    for (c, s) in streams {
        let msg = build_message(&args.tag, &entries, nonce, c);
        msg_len = msg.bytes.len();
        let sh = shared.clone();
        let batch = args.batch as u64;
        let to = args.ack_timeout;
        handles.push(
            thread::Builder::new()
                .name(format!("conn-{c}"))
                .spawn(move || {
                    let r = run_conn(s, msg, batch, sh.clone(), to);
                    if r.is_err() {
                        sh.stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
                .map_err(|e| e.to_string())?,
        );
    }
    drop(entries);

    // sleep in small steps so a failing connection ends the run early
    let nap = |d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end && !shared.stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
        }
    };
    nap(args.warmup);
    let e0 = shared.events.load(Ordering::Relaxed);
    let m0 = shared.messages.load(Ordering::Relaxed);
    let t0 = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    nap(args.duration);
    let e1 = shared.events.load(Ordering::Relaxed);
    let m1 = shared.messages.load(Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);

    let mut lat = Vec::new();
    let mut errors = Vec::new();
    for (c, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(r)) => lat.extend(r.latencies_us),
            Ok(Err(e)) => errors.push(format!("connection {c}: {e}")),
            Err(_) => errors.push(format!("connection {c}: thread panicked")),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    lat.sort_unstable();
    // every acked event, warm-up and the last messages included
    let total_events = shared.events.load(Ordering::Relaxed);
    let events = e1 - e0;
    let messages = m1 - m0;
    let eps = events as f64 / secs;
    let mbps = messages as f64 * msg_len as f64 / secs / 1e6;
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    let mem = args.pid.and_then(mem_of);
    if args.pid.is_some() && mem.is_none() {
        return Err(format!(
            "cannot read /proc/{}/status (did the agent exit?)",
            args.pid.unwrap_or(0)
        ));
    }
    if args.json {
        let (hwm, rss) = match mem {
            Some((h, r)) => (h.to_string(), r.to_string()),
            None => ("null".into(), "null".into()),
        };
        println!(
            "{{\"events_per_sec\":{eps:.0},\"mb_per_sec\":{mbps:.2},\"events\":{events},\"total_events\":{total_events},\"messages\":{messages},\"seconds\":{secs:.3},\"connections\":{},\"batch\":{},\"event_bytes\":{event_bytes:.1},\"message_bytes\":{msg_len},\"ack_p50_ms\":{p50:.3},\"ack_p99_ms\":{p99:.3},\"vmhwm_kib\":{hwm},\"vmrss_kib\":{rss}}}",
            args.connections, args.batch
        );
    } else {
        println!(
            "{addr}: {} connections, {} events/message ({event_bytes:.0} B/event msgpack, {msg_len} B/message)",
            args.connections, args.batch
        );
        println!(
            "measured {secs:.2}s after {:.1}s warm-up: {events} events acked in {messages} messages = {eps:.0} events/s, {mbps:.1} MB/s; ack latency p50 {p50:.2} ms, p99 {p99:.2} ms ({total_events} events acked in all)",
            args.warmup.as_secs_f64()
        );
        if let (Some(pid), Some((hwm, rss))) = (args.pid, mem) {
            println!(
                "agent pid {pid}: VmHWM (peak RSS) {:.1} MiB, VmRSS {:.1} MiB",
                mib(hwm),
                mib(rss)
            );
        }
    }
    if events == 0 {
        return Err("no events were acked during the measurement".into());
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let addr = format!("{}:{}", args.host, args.port);
    let r = if args.free_port {
        free_port(&args.host)
    } else if let Some(limit) = args.wait_port {
        wait_port(&addr, limit)
    } else if let Some(n) = args.idle_connections {
        idle(&args, &addr, n)
    } else {
        load(&args, &addr)
    };
    if let Err(e) = r {
        eprintln!("fuwa-loadgen: FAILED: {e}");
        std::process::exit(1);
    }
}
