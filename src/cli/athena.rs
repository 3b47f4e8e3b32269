//! `fuwa athena-ddl`: prints a `CREATE EXTERNAL TABLE` for an S3 output, with
//! the partition columns and Athena partition projection derived from the
//! output's `key` template, and the data columns inferred from sample
//! records (a JSON Lines file, or the records buffered for that output).
//! Everything about the output comes from the loaded config: the S3
//! output's own [`S3Output::layout`] (key template, format, compression,
//! time and tag keys, and for Parquet its typed columns).
//!
//! Parquet outputs: `STORED AS PARQUET`, the output's columns with their
//! types (`bigint`, `double`, `boolean`, `timestamp`, `string`; nested
//! values are JSON text in `string` columns), then sampled fields it has no
//! column for yet, typed as the writer will type them.
//!
//! Choices (see docs/configuration/out_s3.md, `fuwa athena-ddl`):
//! - SerDe: the OpenX JSON SerDe (`org.openx.data.jsonserde.JsonSerDe`):
//!   it reads nested objects into `struct`s, matches keys case-insensitively
//!   (Athena column names are lower case) and turns a nested value read
//!   into a `string` column into its JSON text, which is what a
//!   mixed-typed field needs.
//! - RFC 3339 strings are `string` columns with a COMMENT: the JSON SerDes
//!   only parse `yyyy-MM-dd HH:mm:ss[.f]` as `timestamp`, and fuwa writes
//!   `2024-05-31T13:30:00.123456789Z`; `from_iso8601_timestamp(col)` reads it.
//! - `%Y` is projected over 2020–2100.
//! - `${hostname}`, `${tag[N]}`, `${record.x}`, a `${tag}` of an open match
//!   and a value mixing literal text and placeholders are `injected`
//!   (queries must then give that column's value).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use fuwa_out_s3::{Compression, Format, S3Output};

mod types;
use types::{
    as_parquet, bq, comment_of, merge_field, of_column, of_json, of_msgpack, sq, type_sql, Ty,
};

use crate::buffer::{buffer_dir, chunkfile};
use crate::config::{Config, OutputSpec};

/// The `%Y` projection range.
pub const YEAR_RANGE: &str = "2020,2100";
/// At most this many records are read to infer the columns.
const MAX_SAMPLES: usize = 100_000;

pub struct Request<'a> {
    pub config_path: &'a Path,
    pub config: &'a Config,
    pub output: &'a str,
    pub table: &'a str,
    pub sample_file: Option<&'a Path>,
}

/// The DDL, and warnings for stderr.
pub struct Ddl {
    pub sql: String,
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------------------
// the key template

#[derive(Debug, Clone, PartialEq)]
enum Projection {
    Integer {
        min: u32,
        max: u32,
        digits: Option<u32>,
    },
    Enum(Vec<String>),
    Injected,
}

struct Partition {
    name: String,
    projection: Projection,
}

fn has_placeholder(s: &str) -> bool {
    s.contains("${") || s.contains('%')
}

fn projection_of(value: &str, tags: &Option<Vec<String>>) -> Projection {
    let int = |min, max, digits| Projection::Integer { min, max, digits };
    let (y0, y1) = YEAR_RANGE
        .split_once(',')
        .map(|(a, b)| (a.parse().unwrap_or(2020), b.parse().unwrap_or(2100)))
        .unwrap_or((2020, 2100));
    match value {
        "%Y" => int(y0, y1, Some(4)),
        "%m" => int(1, 12, Some(2)),
        "%d" => int(1, 31, Some(2)),
        "%H" => int(0, 23, Some(2)),
        "%M" => int(0, 59, Some(2)),
        "%-m" => int(1, 12, None),
        "%-d" => int(1, 31, None),
        "%-H" => int(0, 23, None),
        "%-M" => int(0, 59, None),
        "${tag}" => match tags {
            Some(t) => Projection::Enum(
                t.iter()
                    .map(|t| fuwa_render::template::sanitise(t))
                    .collect(),
            ),
            None => Projection::Injected,
        },
        v if !has_placeholder(v) => Projection::Enum(vec![v.to_string()]),
        _ => Projection::Injected,
    }
}

/// A column name for a path segment that is not `name=VALUE`.
fn name_for(segment: &str) -> String {
    let n = match segment {
        "%Y" => "year".to_string(),
        "%m" | "%-m" => "month".to_string(),
        "%d" | "%-d" => "day".to_string(),
        "%H" | "%-H" => "hour".to_string(),
        "%M" | "%-M" => "minute".to_string(),
        "${tag}" => "tag".to_string(),
        "${hostname}" => "hostname".to_string(),
        s => s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect::<String>()
            .trim_matches('_')
            .replace("record_", "")
            .replace("__", "_"),
    };
    if n.is_empty() {
        "part".into()
    } else {
        n
    }
}

struct Layout {
    location: String,
    template: String,
    partitions: Vec<Partition>,
}

fn layout(bucket: &str, key: &str, tags: &Option<Vec<String>>) -> Result<Layout> {
    let dirs: Vec<&str> = match key.rfind('/') {
        Some(i) => key[..i].split('/').collect(),
        None => Vec::new(),
    };
    let mut partitions: Vec<Partition> = Vec::new();
    let mut fixed = Vec::new();
    let mut template = Vec::new();
    for seg in dirs {
        let hive = seg.split_once('=').filter(|(n, _)| {
            !n.is_empty()
                && !has_placeholder(n)
                && n.chars().all(|c| c.is_alphanumeric() || c == '_')
        });
        let (name, value, rendered) = match hive {
            Some((n, v)) => (n.to_string(), v, None),
            None if has_placeholder(seg) => (name_for(seg), seg, Some(())),
            None => {
                if partitions.is_empty() {
                    fixed.push(seg.to_string());
                }
                template.push(seg.to_string());
                continue;
            }
        };
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            bail!("key segment `{seg}`: the partition name `{name}` has upper case letters; Athena column names are lower case, so projection would not find it");
        }
        if partitions.iter().any(|p| p.name == name) {
            bail!("key segment `{seg}`: a second partition named `{name}`");
        }
        template.push(match rendered {
            Some(()) => format!("${{{name}}}"),
            None => format!("{name}=${{{name}}}"),
        });
        partitions.push(Partition {
            projection: projection_of(value, tags),
            name,
        });
    }
    let join = |v: &[String]| {
        if v.is_empty() {
            String::new()
        } else {
            format!("{}/", v.join("/"))
        }
    };
    Ok(Layout {
        location: format!("s3://{bucket}/{}", join(&fixed)),
        template: format!("s3://{bucket}/{}", join(&template)),
        partitions,
    })
}

// ---------------------------------------------------------------------------
// samples

fn from_sample_file(path: &Path, fields: &mut Vec<(String, Ty)>) -> Result<usize> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the sample file", path.display()))?;
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON line", path.display(), i + 1))?;
        let Ty::Struct(f) = of_json(&v) else {
            bail!("{}:{}: not a JSON object", path.display(), i + 1);
        };
        for (k, t) in f {
            merge_field(fields, k, t);
        }
        n += 1;
        if n >= MAX_SAMPLES {
            break;
        }
    }
    Ok(n)
}

/// Records buffered for the output: `[time, record]` entries of every
/// block of every `*.chunk` file. Returns how many were read.
fn from_buffer(dir: &Path, fields: &mut Vec<(String, Ty)>, warnings: &mut Vec<String>) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<_> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "chunk"))
        .collect();
    files.sort();
    let mut n = 0;
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let scanned = match chunkfile::scan(&bytes) {
            Ok(s) => s,
            Err(e) => {
                warnings.push(format!("{}: skipped: {e}", f.display()));
                continue;
            }
        };
        for (range, _) in &scanned.blocks {
            let mut payload = &bytes[range.clone()];
            while !payload.is_empty() && n < MAX_SAMPLES {
                let Ok(entry) = rmpv::decode::read_value(&mut payload) else {
                    warnings.push(format!("{}: a block does not decode", f.display()));
                    break;
                };
                if let Some(rec) = entry.as_array().and_then(|a| a.get(1)) {
                    if let Ty::Struct(fs) = of_msgpack(rec) {
                        for (k, t) in fs {
                            merge_field(fields, k, t);
                        }
                        n += 1;
                    }
                }
            }
        }
    }
    n
}

// ---------------------------------------------------------------------------
// the output

/// The S3 output `id` of the loaded config.
fn s3_output<'a>(req: &'a Request) -> Result<(&'a OutputSpec, &'a S3Output)> {
    let Some(spec) = req.config.outputs.iter().find(|o| o.id == req.output) else {
        let ids: Vec<String> = req
            .config
            .outputs
            .iter()
            .map(|o| format!("{} ({})", o.id, o.kind))
            .collect();
        bail!(
            "no output `{}` in {} (outputs: {})",
            req.output,
            req.config_path.display(),
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        );
    };
    match spec.plugin.as_any().and_then(|a| a.downcast_ref::<S3Output>()) {
        Some(s3) => Ok((spec, s3)),
        None => bail!(
            "output `{}` is type = \"{}\", not \"s3\": athena-ddl describes what an s3 output writes",
            req.output,
            spec.kind
        ),
    }
}

// ---------------------------------------------------------------------------

pub fn ddl(req: &Request) -> Result<Ddl> {
    let (spec, s3) = s3_output(req)?;
    let out = s3.layout();
    let mut warnings = Vec::new();
    let (bucket, key) = (out.bucket, out.key);
    if out.format == Format::Msgpack {
        bail!("output `{}` has format = \"msgpack\": Athena cannot read msgpack objects; set format = \"json\" (JSON Lines) or \"parquet\" for a table Athena can query", req.output);
    }
    let parquet = out.format == Format::Parquet;
    let file = key.rsplit('/').next().unwrap_or(key);
    let ext = match (out.format, out.compression) {
        (Format::Json, Compression::Gzip) => Some((".gz", "gzip")),
        (Format::Json, Compression::Zstd) => Some((".zst", "zstd")),
        _ => None,
    };
    if let Some((ext, compression)) = ext {
        if !file.ends_with(ext) {
            warnings.push(format!("compression = \"{compression}\" but the key's file name `{file}` does not end with `{ext}`: Athena picks the codec by extension and would read the compressed bytes as text"));
        }
    }
    let table: Vec<&str> = req.table.split('.').collect();
    if table.len() > 2 || table.iter().any(|p| p.is_empty()) {
        bail!("--table `{}`: give TABLE or DATABASE.TABLE", req.table);
    }
    let table = table.iter().map(|p| bq(p)).collect::<Vec<_>>().join(".");

    let tags = spec.pattern.literal_tags();
    let lay = layout(bucket, key, &tags)?;

    // data columns
    let mut fields: Vec<(String, Ty)> = Vec::new();
    let (samples, source) = match req.sample_file {
        Some(p) => {
            let n = from_sample_file(p, &mut fields)?;
            (n, format!("{n} record(s) of {}", p.display()))
        }
        None => {
            let dir = buffer_dir(&req.config.agent.data_dir, req.output);
            let n = from_buffer(&dir, &mut fields, &mut warnings);
            if n == 0 {
                warnings.push(format!(
                    "no sample: no --sample-file and no records buffered in {}; only the injected fields are listed",
                    dir.display()
                ));
            }
            (n, format!("{n} record(s) buffered in {}", dir.display()))
        }
    };
    let time_ty = match (parquet, out.time_format) {
        (true, _) => Ty::Timestamp,
        (false, "rfc3339") => Ty::Time,
        (false, "unix" | "unix_ms") => Ty::Int,
        (false, "unix_float") => Ty::Double,
        _ => Ty::Str,
    };
    for (k, t) in [(out.time_key, time_ty), (out.tag_key, Ty::Str)] {
        if let Some(k) = k {
            // injected by the output: replaces a field of that name
            match fields.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(k)) {
                Some((_, old)) => *old = t,
                None => fields.push((k.to_string(), t)),
            }
        }
    }
    if let Some(schema) = &out.parquet {
        // the output's columns as they are, then the sampled fields it has
        // no column for yet, typed as the writer will type them
        let mut cols: Vec<(String, Ty)> = schema
            .columns
            .iter()
            .map(|c| (c.name.clone(), of_column(c.ty)))
            .collect();
        for (n, t) in fields.drain(..) {
            if !cols.iter().any(|(c, _)| c == &n) {
                cols.push((n, as_parquet(t)));
            }
        }
        fields = cols;
    }
    let mut dropped = Vec::new();
    fields.retain(|(n, _)| {
        let clash = lay
            .partitions
            .iter()
            .any(|p| p.name.eq_ignore_ascii_case(n));
        if clash {
            dropped.push(n.clone());
        }
        !clash
    });
    if fields.is_empty() {
        bail!("no columns known: give --sample-file (JSON Lines), buffer some records for output `{}`, or set time_key on it", req.output);
    }

    // Athena column names are lower case letters, digits and `_`; other
    // keys get such a name and an OpenX `mapping.` property.
    let mut mappings = Vec::new();
    let mut taken: Vec<String> = Vec::new();
    for (name, _) in fields.iter_mut() {
        let plain: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let mut col = plain.clone();
        let mut i = 2;
        while taken.contains(&col) || lay.partitions.iter().any(|p| p.name == col) {
            col = format!("{plain}_{i}");
            i += 1;
        }
        taken.push(col.clone());
        if col != name.to_ascii_lowercase() {
            if parquet {
                warnings.push(format!("field `{name}` is column `{col}` in the table, but Athena reads Parquet columns by name: it will read as null; rename the field (a record filter) to a lower-case name of letters, digits and `_`"));
            }
            mappings.push((format!("mapping.{col}"), name.clone()));
        }
        *name = col;
    }

    let mut s = String::new();
    let _ = writeln!(
        s,
        "-- fuwa athena-ddl: output `{}` (s3://{bucket}/{key})",
        req.output
    );
    let _ = writeln!(s, "-- columns from {source}");
    let _ = writeln!(
        s,
        "-- partition times are event times in [agent] timezone {}",
        req.config.agent.timezone
    );
    if !dropped.is_empty() {
        let _ = writeln!(
            s,
            "-- fields also in the key, so only partition columns: {}",
            dropped.join(", ")
        );
    }
    let _ = writeln!(s, "CREATE EXTERNAL TABLE {table} (");
    let n = fields.len();
    for (i, (name, t)) in fields.iter().enumerate() {
        let _ = write!(s, "  {} {}", bq(name), type_sql(t));
        if let Some(c) = comment_of(t) {
            let _ = write!(s, " COMMENT {}", sq(c));
        }
        s.push_str(if i + 1 < n { ",\n" } else { "\n" });
    }
    if samples == 0 {
        s.push_str("  -- add your columns here\n");
    }
    s.push_str(")\n");
    if !lay.partitions.is_empty() {
        let cols: Vec<String> = lay
            .partitions
            .iter()
            .map(|p| {
                let ty = match p.projection {
                    Projection::Integer { .. } => "int",
                    _ => "string",
                };
                format!("{} {ty}", bq(&p.name))
            })
            .collect();
        let _ = writeln!(s, "PARTITIONED BY ({})", cols.join(", "));
    }
    if parquet {
        s.push_str("STORED AS PARQUET\n");
    } else {
        s.push_str("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\n");
        if !mappings.is_empty() {
            let m: Vec<String> = mappings
                .iter()
                .map(|(k, v)| format!("  {} = {}", sq(k), sq(v)))
                .collect();
            let _ = writeln!(s, "WITH SERDEPROPERTIES (\n{}\n)", m.join(",\n"));
        }
        s.push_str("STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'\n");
        s.push_str("OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n");
    }
    let _ = writeln!(s, "LOCATION {}", sq(&lay.location));
    if !lay.partitions.is_empty() {
        let mut props: Vec<(String, String)> = vec![("projection.enabled".into(), "true".into())];
        for p in &lay.partitions {
            let k = |x: &str| format!("projection.{}.{x}", p.name);
            match &p.projection {
                Projection::Integer { min, max, digits } => {
                    props.push((k("type"), "integer".into()));
                    props.push((k("range"), format!("{min},{max}")));
                    if let Some(d) = digits {
                        props.push((k("digits"), d.to_string()));
                    }
                }
                Projection::Enum(v) => {
                    props.push((k("type"), "enum".into()));
                    props.push((k("values"), v.join(",")));
                }
                Projection::Injected => props.push((k("type"), "injected".into())),
            }
        }
        props.push(("storage.location.template".into(), lay.template.clone()));
        s.push_str("TBLPROPERTIES (\n");
        let n = props.len();
        for (i, (k, v)) in props.iter().enumerate() {
            let _ = write!(s, "  {} = {}", sq(k), sq(v));
            s.push_str(if i + 1 < n { ",\n" } else { "\n" });
        }
        s.push_str(")\n");
    }
    s.push_str(";\n");
    Ok(Ddl { sql: s, warnings })
}

#[cfg(test)]
mod tests {
    use super::types::merge;
    use super::*;

    #[test]
    fn types_merge() {
        assert_eq!(merge(Ty::Int, Ty::Double), Ty::Double);
        assert_eq!(merge(Ty::Time, Ty::Str), Ty::Str);
        assert_eq!(merge(Ty::Bool, Ty::Str), Ty::Mixed);
        assert_eq!(merge(Ty::Null, Ty::Bool), Ty::Bool);
        let j: serde_json::Value = serde_json::from_str(
            r#"{"a":[1,2.5],"B":{"x":"2024-05-31T13:30:00Z"},"b":{"y":true}}"#,
        )
        .unwrap();
        assert_eq!(
            type_sql(&of_json(&j)),
            "struct<B:struct<x:string,y:boolean>,a:array<double>>"
        );
    }

    #[test]
    fn layout_of_the_readme_key() {
        let tags = Some(vec!["action_logs".to_string(), "page_views".to_string()]);
        let l = layout(
            "b",
            "logs/content_type=${tag}/year=%Y/month=%m/day=%d/hour=%H/${hostname}-${chunk_id}.json.gz",
            &tags,
        )
        .unwrap();
        assert_eq!(l.location, "s3://b/logs/");
        assert_eq!(
            l.template,
            "s3://b/logs/content_type=${content_type}/year=${year}/month=${month}/day=${day}/hour=${hour}/"
        );
        assert_eq!(
            l.partitions[0].projection,
            Projection::Enum(vec!["action_logs".into(), "page_views".into()])
        );
        let l = layout("b", "${tag[0]}/%Y/x/${record.a.b}/${uuid}", &None).unwrap();
        assert_eq!(l.location, "s3://b/");
        assert_eq!(l.template, "s3://b/${tag_0}/${year}/x/${a_b}/");
        let l = layout("b", "${uuid}.gz", &None).unwrap();
        assert!(l.partitions.is_empty());
        assert!(layout("b", "a=%Y/a=%m/${uuid}", &None).is_err());
    }
}
