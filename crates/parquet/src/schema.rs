//! The columns of a Parquet output: declared (`schema = { … }` on the
//! output, then the `types` filters for its tags), else inferred from the
//! records, and kept stable: a column never changes type once an object
//! was written with it, new fields become new columns at the end, and the
//! whole list is persisted in the data directory so a restart keeps it.

use std::path::{Path, PathBuf};

use fuwa_api::msgpack::{read_head, skip, Head};
use serde::{Deserialize, Serialize};

/// A column's type. Every column is optional (nullable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// INT64
    Int64,
    /// DOUBLE
    Double,
    /// BOOLEAN
    Bool,
    /// INT64 TIMESTAMP(MICROS, UTC)
    Timestamp,
    /// BYTE_ARRAY STRING; a non-string value is kept as its JSON text
    String,
    /// BYTE_ARRAY STRING holding JSON text: nested maps and arrays
    Json,
}

impl ColumnType {
    /// The names `schema = { … }` accepts (and the `types` filter's names).
    pub fn parse(s: &str) -> Result<ColumnType, String> {
        Ok(match s {
            "int64" | "integer" | "int" | "bigint" | "long" => ColumnType::Int64,
            "double" | "float" | "float64" => ColumnType::Double,
            "bool" | "boolean" => ColumnType::Bool,
            "timestamp" | "time" => ColumnType::Timestamp,
            "string" => ColumnType::String,
            "json" => ColumnType::Json,
            _ => {
                return Err(format!(
                    "`{s}` is not a column type (int64, double, bool, timestamp, string, json)"
                ))
            }
        })
    }

    /// The column type of a `types` filter conversion (`integer`, `float`,
    /// `bool`, `string`, `time[:FORMAT]`, `array[:DELIMITER]`), if it has one.
    pub fn of_types_filter(conv: &str) -> Option<ColumnType> {
        let name = conv.split(':').next().unwrap_or(conv);
        Some(match name {
            "integer" => ColumnType::Int64,
            "float" => ColumnType::Double,
            "bool" => ColumnType::Bool,
            "string" => ColumnType::String,
            "time" => ColumnType::Timestamp,
            "array" => ColumnType::Json,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Int64 => "int64",
            ColumnType::Double => "double",
            ColumnType::Bool => "bool",
            ColumnType::Timestamp => "timestamp",
            ColumnType::String => "string",
            ColumnType::Json => "json",
        }
    }

    /// The Athena (Hive DDL) type of the column.
    pub fn athena(self) -> &'static str {
        match self {
            ColumnType::Int64 => "bigint",
            ColumnType::Double => "double",
            ColumnType::Bool => "boolean",
            ColumnType::Timestamp => "timestamp",
            ColumnType::String | ColumnType::Json => "string",
        }
    }

    /// The type two observations of one field share.
    fn merge(self, other: ColumnType) -> ColumnType {
        use ColumnType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Int64, Double) | (Double, Int64) => Double,
            (Json, _) | (_, Json) => Json,
            _ => String,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// The ordered columns of an output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub columns: Vec<Column>,
}

/// At most this many columns: a record with thousands of distinct keys
/// (hostile or a mistake) must not grow the schema without bound. Fields
/// past it are not written, and counted.
pub const MAX_COLUMNS: usize = 1024;
/// A field name longer than this is not made a column (counted).
pub const MAX_NAME: usize = 255;

impl Schema {
    pub fn get(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Adds a column at the end unless one of that name exists; returns
    /// whether it was added.
    pub fn add(&mut self, name: &str, ty: ColumnType) -> bool {
        if self.get(name).is_some() || self.columns.len() >= MAX_COLUMNS || name.len() > MAX_NAME {
            return false;
        }
        self.columns.push(Column {
            name: name.to_string(),
            ty,
        });
        true
    }

    /// Reads a schema persisted by [`Schema::save`]; `None` when there is
    /// none yet.
    pub fn load(path: &Path) -> Result<Option<Schema>, String> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let s: Schema = serde_json::from_slice(&text)
            .map_err(|e| format!("{}: not a fuwa Parquet schema: {e}", path.display()))?;
        if s.columns.len() > MAX_COLUMNS {
            return Err(format!(
                "{}: more than {MAX_COLUMNS} columns",
                path.display()
            ));
        }
        Ok(Some(s))
    }

    /// Writes the schema atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = tmp_path(path);
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// The type a msgpack value suggests for a new column; `None` for nil (a
/// field only ever null gets no column until a value shows up).
pub fn infer(buf: &[u8], pos: usize) -> Option<ColumnType> {
    let (head, p) = read_head(buf, pos).ok()?;
    Some(match head {
        Head::Nil => return None,
        Head::Bool(_) => ColumnType::Bool,
        Head::Int(_) => ColumnType::Int64,
        Head::Uint(v) if v <= i64::MAX as u64 => ColumnType::Int64,
        Head::Uint(_) => ColumnType::Double,
        Head::F32(_) | Head::F64(_) => ColumnType::Double,
        Head::Str(n) => match buf.get(p..p + n).and_then(|s| std::str::from_utf8(s).ok()) {
            Some(s) if crate::value::parse_rfc3339_micros(s).is_some() => ColumnType::Timestamp,
            _ => ColumnType::String,
        },
        Head::Ext(0, 8) | Head::Ext(-1, 4 | 8 | 12) => ColumnType::Timestamp,
        Head::Bin(_) | Head::Ext(..) => ColumnType::String,
        Head::Array(_) | Head::Map(_) => ColumnType::Json,
    })
}

/// The top-level fields of a msgpack map: (key, value offset). Keys that
/// are not UTF-8 strings are left out. `None` when it is not a map.
pub fn fields(record: &[u8]) -> Option<Vec<(&str, usize)>> {
    let (head, mut p) = read_head(record, 0).ok()?;
    let Head::Map(n) = head else { return None };
    let mut out = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let (k, vp) = read_head(record, p).ok()?;
        let name = match k {
            Head::Str(l) | Head::Bin(l) => record
                .get(vp..vp + l)
                .and_then(|b| std::str::from_utf8(b).ok()),
            _ => None,
        };
        let v = skip(record, p).ok()?;
        if let Some(name) = name {
            out.push((name, v));
        }
        p = skip(record, v).ok()?;
    }
    Some(out)
}

/// Types of the fields new to `schema` in a run of records: merged over
/// every record that has them, in the order they first appear.
pub fn new_fields<'a>(
    schema: &Schema,
    records: impl Iterator<Item = &'a [u8]>,
    reserved: &[&str],
) -> Vec<(String, ColumnType)> {
    let mut found: Vec<(String, ColumnType)> = Vec::new();
    for rec in records {
        let Some(fs) = fields(rec) else { continue };
        for (name, pos) in fs {
            if reserved.contains(&name) || schema.get(name).is_some() {
                continue;
            }
            let Some(t) = infer(rec, pos) else { continue };
            match found.iter_mut().find(|(n, _)| n == name) {
                Some((_, old)) => *old = old.merge(t),
                None => {
                    if found.len() + schema.columns.len() < MAX_COLUMNS {
                        found.push((name.to_string(), t));
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).unwrap();
        out
    }

    #[test]
    fn types_are_inferred_and_merged() {
        use rmpv::Value as V;
        let a = rec(V::Map(vec![
            ("n".into(), V::from(1)),
            ("x".into(), V::from(1)),
            ("at".into(), V::from("2024-05-31T13:30:00Z")),
            ("m".into(), V::Map(vec![])),
            ("z".into(), V::Nil),
        ]));
        let b = rec(V::Map(vec![
            ("x".into(), V::from(2.5)),
            ("at".into(), V::from("yesterday")),
            ("s".into(), V::from("t")),
        ]));
        let f = new_fields(&Schema::default(), [&a[..], &b[..]].into_iter(), &[]);
        let t = |n: &str| f.iter().find(|(k, _)| k == n).map(|(_, t)| *t);
        assert_eq!(t("n"), Some(ColumnType::Int64));
        assert_eq!(t("x"), Some(ColumnType::Double));
        assert_eq!(t("at"), Some(ColumnType::String));
        assert_eq!(t("m"), Some(ColumnType::Json));
        assert_eq!(t("s"), Some(ColumnType::String));
        assert_eq!(t("z"), None, "only nulls: no column yet");
        assert_eq!(f[0].0, "n", "first-seen order");
        // known and reserved fields are not new
        let mut s = Schema::default();
        s.add("n", ColumnType::String);
        let f = new_fields(&s, [&a[..]].into_iter(), &["x"]);
        assert!(f.iter().all(|(n, _)| n != "n" && n != "x"), "{f:?}");
    }

    #[test]
    fn persisted_schema_round_trips_and_garbage_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/s.json");
        assert_eq!(Schema::load(&p).unwrap(), None);
        let mut s = Schema::default();
        s.add("a", ColumnType::Timestamp);
        s.add("b", ColumnType::Json);
        s.save(&p).unwrap();
        assert_eq!(Schema::load(&p).unwrap(), Some(s));
        std::fs::write(&p, b"{\"columns\": 3}").unwrap();
        assert!(Schema::load(&p).is_err());
    }

    #[test]
    fn column_count_and_name_length_are_bounded() {
        let mut s = Schema::default();
        for i in 0..MAX_COLUMNS + 10 {
            s.add(&format!("c{i}"), ColumnType::Int64);
        }
        assert_eq!(s.columns.len(), MAX_COLUMNS);
        let mut s = Schema::default();
        assert!(!s.add(&"n".repeat(MAX_NAME + 1), ColumnType::Int64));
        assert!(ColumnType::parse("varchar").is_err());
        assert_eq!(
            ColumnType::of_types_filter("time:%s"),
            Some(ColumnType::Timestamp)
        );
    }
}
