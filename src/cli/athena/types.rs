//! Column types of `fuwa athena-ddl`: inferred from sample records (JSON or
//! msgpack), merged across records, from a Parquet output's columns, and
//! written as Athena DDL types.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ty {
    Null,
    Bool,
    Int,
    Double,
    Str,
    /// a string that parses as RFC 3339
    Time,
    /// values of several types
    Mixed,
    /// a real timestamp (Parquet's event time and timestamp columns)
    Timestamp,
    /// JSON text in a string (Parquet's nested values)
    Json,
    Struct(Vec<(String, Ty)>),
    Array(Box<Ty>),
}

pub(super) fn merge(a: Ty, b: Ty) -> Ty {
    use Ty::*;
    match (a, b) {
        (Null, x) | (x, Null) => x,
        (Int, Double) | (Double, Int) => Double,
        (Time, Str) | (Str, Time) => Str,
        (Struct(mut a), Struct(b)) => {
            for (k, t) in b {
                merge_field(&mut a, k, t);
            }
            Struct(a)
        }
        (Array(a), Array(b)) => Array(Box::new(merge(*a, *b))),
        (a, b) if a == b => a,
        _ => Mixed,
    }
}

/// Adds a field to a field list; names that differ only in case are one
/// column in Athena, so they merge.
pub(super) fn merge_field(fields: &mut Vec<(String, Ty)>, name: String, t: Ty) {
    match fields
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(&name))
    {
        Some((_, old)) => *old = merge(std::mem::replace(old, Ty::Null), t),
        None => fields.push((name, t)),
    }
}

fn is_rfc3339(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

pub(super) fn of_json(v: &serde_json::Value) -> Ty {
    use serde_json::Value as J;
    match v {
        J::Null => Ty::Null,
        J::Bool(_) => Ty::Bool,
        J::Number(n) if n.is_i64() => Ty::Int,
        J::Number(_) => Ty::Double,
        J::String(s) if is_rfc3339(s) => Ty::Time,
        J::String(_) => Ty::Str,
        J::Array(a) => Ty::Array(Box::new(a.iter().map(of_json).fold(Ty::Null, merge))),
        J::Object(m) => {
            let mut f = Vec::new();
            for (k, v) in m {
                merge_field(&mut f, k.clone(), of_json(v));
            }
            Ty::Struct(f)
        }
    }
}

pub(super) fn of_msgpack(v: &rmpv::Value) -> Ty {
    use rmpv::Value as V;
    match v {
        V::Nil => Ty::Null,
        V::Boolean(_) => Ty::Bool,
        V::Integer(i) if i.as_i64().is_some() => Ty::Int,
        V::Integer(_) | V::F32(_) | V::F64(_) => Ty::Double,
        V::String(s) => match s.as_str() {
            Some(s) if is_rfc3339(s) => Ty::Time,
            _ => Ty::Str,
        },
        V::Binary(_) | V::Ext(..) => Ty::Str,
        V::Array(a) => Ty::Array(Box::new(a.iter().map(of_msgpack).fold(Ty::Null, merge))),
        V::Map(m) => {
            let mut f = Vec::new();
            for (k, v) in m {
                let name = match k {
                    V::String(s) => s.as_str().map(str::to_string),
                    V::Binary(b) => std::str::from_utf8(b).ok().map(str::to_string),
                    _ => None,
                };
                if let Some(name) = name {
                    merge_field(&mut f, name, of_msgpack(v));
                }
            }
            Ty::Struct(f)
        }
    }
}

/// A backquoted identifier (a backquote inside is doubled).
pub(super) fn bq(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A single-quoted SQL string literal.
pub(super) fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub(super) fn type_sql(t: &Ty) -> String {
    match t {
        Ty::Null | Ty::Str | Ty::Time | Ty::Mixed | Ty::Json => "string".into(),
        Ty::Timestamp => "timestamp".into(),
        Ty::Bool => "boolean".into(),
        Ty::Int => "bigint".into(),
        Ty::Double => "double".into(),
        Ty::Array(e) => format!("array<{}>", type_sql(e)),
        Ty::Struct(f) if f.is_empty() => "string".into(),
        Ty::Struct(f) => {
            let fields: Vec<String> = f
                .iter()
                .map(|(n, t)| {
                    let plain = n
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    let n = if plain { n.clone() } else { bq(n) };
                    format!("{n}:{}", type_sql(t))
                })
                .collect();
            format!("struct<{}>", fields.join(","))
        }
    }
}

pub(super) fn comment_of(t: &Ty) -> Option<&'static str> {
    match t {
        Ty::Time => Some("RFC 3339 time as text: read it with from_iso8601_timestamp()"),
        Ty::Mixed => Some("values of several types in the sample: kept as text (JSON)"),
        Ty::Null => Some("only nulls in the sample"),
        Ty::Json => Some("nested value as JSON text: read it with json_extract()"),
        _ => None,
    }
}

/// A Parquet column's type.
pub(super) fn of_column(t: fuwa_parquet::ColumnType) -> Ty {
    use fuwa_parquet::ColumnType as C;
    match t {
        C::Int64 => Ty::Int,
        C::Double => Ty::Double,
        C::Bool => Ty::Bool,
        C::Timestamp => Ty::Timestamp,
        C::String => Ty::Str,
        C::Json => Ty::Json,
    }
}

/// The column the Parquet writer would give a field of this sampled type
/// (see fuwa_parquet::schema::infer): RFC 3339 text is a timestamp, nested
/// values are JSON text, mixed values are text.
pub(super) fn as_parquet(t: Ty) -> Ty {
    match t {
        Ty::Time => Ty::Timestamp,
        Ty::Struct(_) | Ty::Array(_) => Ty::Json,
        Ty::Mixed => Ty::Str,
        t => t,
    }
}
