//! Filter chain cost per event: user_agent + referrer + types + record on a
//! realistic mix (a few thousand distinct User-Agents, Zipf-distributed),
//! measured the way the engine runs filters (src/router.rs): the record's
//! msgpack bytes go into a reused `Record`, the chain edits them, and the
//! result is appended to the output batch.
//!
//!   cargo run --release -p fuwa-bench --bin fuwa-filterbench [-- --events 2000000]

use std::time::Instant;

use clap::Parser as _;
use std::sync::Arc;

use bytes::Bytes;
use fuwa_api::event::write_entry;
use fuwa_api::{Batch, BuildContext, ConfigSection, EventTime, Filter, FilterResult, Record};
use rand::{Rng, SeedableRng};

#[derive(clap::Parser)]
struct Args {
    /// events per measured pass
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// distinct User-Agents
    #[arg(long, default_value_t = 3000)]
    distinct_uas: usize,
    /// distinct referrers
    #[arg(long, default_value_t = 5000)]
    distinct_referrers: usize,
    /// measure only the chain with warm caches (for profilers)
    #[arg(long)]
    cached_only: bool,
    /// Zipf exponent of the User-Agent and referrer popularity
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
}

fn section(src: &str) -> ConfigSection<'_> {
    ConfigSection::from_toml("filter", src).expect("section")
}

fn ctx() -> BuildContext {
    BuildContext {
        id: "bench".into(),
        hostname: "web-7".into(),
        timezone: "Asia/Tokyo".into(),
        data_dir: std::env::temp_dir(),
    }
}

fn chain(cache_size: usize) -> Vec<(&'static str, Box<dyn Filter>)> {
    let ua = format!("key = \"user_agent\"\ntarget = \"ua\"\ncache_size = {cache_size}");
    let referrer = format!(
        "key = \"referrer\"\ntarget = \"ref\"\nown_hosts = [\"note.com\", \"*.note.com\"]\ncache_size = {cache_size}"
    );
    vec![
        ("user_agent", fuwa_filter_user_agent::build(&section(&ua), &ctx()).unwrap_or_else(|e| panic!("{e:?}"))),
        (
            "referrer",
            fuwa_filter_referrer::build(&section(&referrer), &ctx())
                .unwrap_or_else(|e| panic!("{e:?}")),
        ),
        (
            "types",
            fuwa_filter_types::build(&section("fields = { user_id = \"integer\", price = \"float\", paid = \"bool\" }"), &ctx())
                .unwrap_or_else(|e| panic!("{e:?}")),
        ),
        (
            "record",
            fuwa_filter_record::build(&section("set = { content_type = \"action_logs\", host = \"${hostname}\" }\nremove = [\"debug\"]"), &ctx())
                .unwrap_or_else(|e| panic!("{e:?}")),
        ),
    ]
}

const UA_TEMPLATES: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.{b}.{p} Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.{b} Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS {v}_{b} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{v}.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android {v}; SO-{b}A) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{p}.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{v}.0) Gecko/20100101 Firefox/{v}.{b}",
    "Mozilla/5.0 (iPad; CPU OS {v}_{b} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/{p}.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html) {v}.{b}",
    "DoCoMo/2.0 P{v}{b}(c100;TB;W24H16)",
];

/// `{i}` varies per distinct referrer: search terms (Japanese ones
/// percent-encoded), short links, internal pages, other sites.
const REFERRER_TEMPLATES: &[&str] = &[
    "https://www.google.co.jp/search?q=%E3%83%86%E3%82%B9%E3%83%88{i}&hl=ja",
    "https://search.yahoo.co.jp/search?p=%E6%9D%B1%E4%BA%AC+%E5%A4%A9%E6%B0%97+{i}",
    "https://t.co/AbCd{i}",
    "https://note.com/someone{i}/n/n0123456789ab?utm_source=twitter&utm_medium=social",
    "",
    "https://www.bing.com/search?q=rust+log+agent+{i}",
    "https://www.facebook.com/",
    "https://example{i}.org/blog/post/42",
    "https://mail.google.com/mail/u/0/",
    "https://duckduckgo.com/?q=fluentd+alternative+{i}",
];

/// Ranks drawn with P(rank k) ∝ 1 / k^s.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        Zipf(
            weights
                .iter()
                .map(|w| {
                    acc += w / total;
                    acc
                })
                .collect(),
        )
    }

    fn sample(&self, rng: &mut impl Rng) -> usize {
        let r: f64 = rng.gen();
        self.0.partition_point(|c| *c < r).min(self.0.len() - 1)
    }
}

fn main() {
    let args = Args::parse();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let uas: Vec<String> = (0..args.distinct_uas)
        .map(|i| {
            let t = UA_TEMPLATES[i % UA_TEMPLATES.len()];
            t.replace("{v}", &(10 + (i / 7) % 120).to_string())
                .replace("{b}", &((i * 31) % 9000).to_string())
                .replace("{p}", &((i * 17) % 200).to_string())
        })
        .collect();
    let referrers: Vec<String> = (0..args.distinct_referrers)
        .map(|i| {
            REFERRER_TEMPLATES[i % REFERRER_TEMPLATES.len()]
                .replace("{i}", &(i / REFERRER_TEMPLATES.len()).to_string())
        })
        .collect();
    let ua_rank = Zipf::new(uas.len(), args.zipf);
    let referrer_rank = Zipf::new(referrers.len(), args.zipf);
    let n_records = 100_000.min(args.events);
    let records: Vec<Vec<u8>> = (0..n_records)
        .map(|i| {
            let k = ua_rank.sample(&mut rng);
            let referrer = referrers[referrer_rank.sample(&mut rng)].as_str();
            let v = rmpv::Value::Map(vec![
                ("user_agent".into(), uas[k].as_str().into()),
                ("referrer".into(), referrer.into()),
                ("user_id".into(), (10_000 + i % 5000).to_string().into()),
                ("price".into(), format!("{}.{}", i % 300, i % 100).into()),
                (
                    "paid".into(),
                    if i % 3 == 0 { "true" } else { "false" }.into(),
                ),
                ("path".into(), format!("/n/n{:012x}", i).into()),
                ("event".into(), "page_view".into()),
                ("debug".into(), "x".into()),
            ]);
            let mut b = Vec::new();
            rmpv::encode::write_value(&mut b, &v).expect("encode");
            b
        })
        .collect();
    // batches of 1,000 entries, as inputs hand them to the engine
    let batches: Vec<Batch> = records
        .chunks(1000)
        .map(|c| {
            let mut entries = Vec::new();
            for r in c {
                write_entry(&mut entries, EventTime::new(1_700_000_000, 0), r);
            }
            Batch::new(
                Arc::from("action_logs"),
                Bytes::from(entries),
                c.len() as u32,
            )
        })
        .collect();
    let distinct_seen: std::collections::HashSet<&[u8]> = records.iter().map(|r| &r[..]).collect();
    let avg_bytes = records.iter().map(Vec::len).sum::<usize>() as f64 / records.len() as f64;
    println!(
        "records: {} generated ({} distinct User-Agents, {} distinct referrers, Zipf s={}), ~{avg_bytes:.0} bytes each as msgpack; {} events per pass",
        records.len(),
        uas.len(),
        referrers.len(),
        args.zipf,
        args.events
    );
    let _ = distinct_seen;

    {
        let none: Vec<(&'static str, Box<dyn Filter>)> = Vec::new();
        run(&none, &batches, records.len(), None);
        let t = Instant::now();
        run(&none, &batches, args.events, None);
        let ns = t.elapsed().as_nanos() as f64 / args.events as f64;
        println!("\nrecord in + out alone (no filter): {ns:.0} ns/event");
    }
    for (label, cache) in [
        (
            "with the caches (User-Agent and referrer, 10,000 entries each)",
            10_000usize,
        ),
        ("without the caches", 0),
    ] {
        if args.cached_only && cache == 0 {
            continue;
        }
        let filters = chain(cache);
        // warm the cache (and the allocator)
        run(&filters, &batches, records.len(), None);
        let mut per = vec![0u128; filters.len()];
        let t = Instant::now();
        let kept = run(&filters, &batches, args.events, None);
        let ns = t.elapsed().as_nanos() as f64 / args.events as f64;
        run(&filters, &batches, args.events.min(200_000), Some(&mut per));
        println!("\n{label}: {ns:.0} ns/event for record in + user_agent + referrer + types + record + out ({kept} kept)");
        let sampled = args.events.min(200_000) as f64;
        for (i, (name, _)) in filters.iter().enumerate() {
            println!("  {name:<11} {:>6.0} ns/event", per[i] as f64 / sampled);
        }
    }
}

/// Runs the chain over batches the way the engine does (src/router.rs):
/// each entry's record goes into one reused `Record`, the filters edit it,
/// and `[time, record]` is appended to the batch's output buffer.
fn run(
    filters: &[(&str, Box<dyn Filter>)],
    batches: &[Batch],
    events: usize,
    mut per: Option<&mut Vec<u128>>,
) -> usize {
    let mut kept = 0;
    let mut seen = 0;
    let mut out = Vec::with_capacity(1 << 20);
    let mut rec = Record::new();
    'all: for batch in batches.iter().cycle() {
        out.clear();
        for e in batch.iter() {
            if seen == events {
                break 'all;
            }
            seen += 1;
            let Ok(e) = e else { break };
            let mut time = e.time;
            rec.reset(e.record);
            let mut keep = true;
            for (j, (_, f)) in filters.iter().enumerate() {
                let t = per.as_ref().map(|_| Instant::now());
                let r = f.filter("action_logs", &mut time, &mut rec);
                if let (Some(p), Some(t)) = (per.as_deref_mut(), t) {
                    p[j] += t.elapsed().as_nanos();
                }
                if let FilterResult::Drop = r {
                    keep = false;
                    break;
                }
            }
            if keep {
                out.push(0x92);
                out.extend_from_slice(&time.to_msgpack());
                rec.write_to(&mut out);
                kept += 1;
            }
        }
        std::hint::black_box(&out);
    }
    kept
}
