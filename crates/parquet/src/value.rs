//! One msgpack value into one cell of a typed column.
//!
//! What fits: an `int64` column takes integers in i64's range; `double`
//! takes integers and floats; `bool` takes booleans; `timestamp` takes RFC
//! 3339 strings, Fluentd EventTimes (ext 0) and msgpack timestamps (ext -1);
//! `string` takes strings as they are and any other value as its JSON text;
//! `json` takes any value as its JSON text. Nil is null. Anything else does
//! not fit: the cell is null and the caller counts it.

use fuwa_api::msgpack::{read_head, skip, DecodeError, Head};

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    /// a value that did not fit its column's type: written as null
    Misfit,
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Vec<u8>),
}

use crate::schema::ColumnType;

/// RFC 3339 text as microseconds since the Unix epoch (UTC); sub-microsecond
/// digits are cut, not rounded.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    // cheap pre-check: most strings are not times
    let b = s.as_bytes();
    if b.len() < 20 || !b[0].is_ascii_digit() || b[4] != b'-' {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let secs = t.timestamp();
    let micros = (t.timestamp_subsec_nanos() / 1000) as i64;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// The cell for the value at `pos` of `buf` in a column of type `ty`, and
/// the offset after the value. A malformed value is an error (the record
/// is skipped).
pub fn convert(ty: ColumnType, buf: &[u8], pos: usize) -> Result<(Cell, usize), DecodeError> {
    let end = skip(buf, pos)?;
    let (head, p) = read_head(buf, pos)?;
    let bytes = |n: usize| buf.get(p..p + n).ok_or(DecodeError::Incomplete);
    let json = || -> Result<Cell, DecodeError> {
        let mut out = Vec::new();
        fuwa_render::write_json_value(&mut out, buf, pos)?;
        Ok(Cell::Bytes(out))
    };
    if matches!(head, Head::Nil) {
        return Ok((Cell::Null, end));
    }
    let cell = match ty {
        ColumnType::Int64 => match head {
            Head::Int(v) => Cell::Int(v),
            Head::Uint(v) => i64::try_from(v).map(Cell::Int).unwrap_or(Cell::Misfit),
            _ => Cell::Misfit,
        },
        ColumnType::Double => match head {
            Head::Int(v) => Cell::Double(v as f64),
            Head::Uint(v) => Cell::Double(v as f64),
            Head::F32(v) => Cell::Double(v as f64),
            Head::F64(v) => Cell::Double(v),
            _ => Cell::Misfit,
        },
        ColumnType::Bool => match head {
            Head::Bool(b) => Cell::Bool(b),
            _ => Cell::Misfit,
        },
        ColumnType::Timestamp => match head {
            Head::Str(n) => std::str::from_utf8(bytes(n)?)
                .ok()
                .and_then(parse_rfc3339_micros)
                .map(Cell::Int)
                .unwrap_or(Cell::Misfit),
            Head::Ext(t, n) => ext_time(t, bytes(n)?)
                .map(Cell::Int)
                .unwrap_or(Cell::Misfit),
            _ => Cell::Misfit,
        },
        ColumnType::String => match head {
            Head::Str(n) => Cell::Bytes(String::from_utf8_lossy(bytes(n)?).into_owned().into()),
            Head::Bin(n) if std::str::from_utf8(bytes(n)?).is_ok() => {
                Cell::Bytes(bytes(n)?.to_vec())
            }
            _ => json()?,
        },
        ColumnType::Json => json()?,
    };
    Ok((cell, end))
}

/// Microseconds of a Fluentd EventTime (ext 0: u32 seconds, u32 nanos) or
/// a msgpack timestamp (ext -1 of 4, 8 or 12 bytes).
fn ext_time(t: i8, b: &[u8]) -> Option<i64> {
    let u32_at =
        |i: usize| -> Option<u32> { Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?)) };
    let (secs, nanos): (i64, u32) = match (t, b.len()) {
        (0, 8) => (u32_at(0)? as i64, u32_at(4)?),
        (-1, 4) => (u32_at(0)? as i64, 0),
        (-1, 8) => {
            let v = u64::from_be_bytes(b.try_into().ok()?);
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        (-1, 12) => (
            i64::from_be_bytes(b.get(4..12)?.try_into().ok()?),
            u32_at(0)?,
        ),
        _ => return None,
    };
    if nanos > 999_999_999 {
        return None;
    }
    secs.checked_mul(1_000_000)?
        .checked_add((nanos / 1000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as V;

    fn cell(ty: ColumnType, v: V) -> Cell {
        let mut b = Vec::new();
        rmpv::encode::write_value(&mut b, &v).unwrap();
        let (c, end) = convert(ty, &b, 0).unwrap();
        assert_eq!(end, b.len());
        c
    }

    #[test]
    fn values_fit_or_are_misfits() {
        use ColumnType::*;
        assert_eq!(cell(Int64, V::from(-3)), Cell::Int(-3));
        assert_eq!(cell(Int64, V::from(u64::MAX)), Cell::Misfit);
        assert_eq!(cell(Int64, V::from("3")), Cell::Misfit);
        assert_eq!(cell(Int64, V::Nil), Cell::Null);
        assert_eq!(cell(Double, V::from(2)), Cell::Double(2.0));
        assert_eq!(cell(Bool, V::from(1)), Cell::Misfit);
        assert_eq!(
            cell(Timestamp, V::from("2024-05-31T13:30:00.1234567Z")),
            Cell::Int(1_717_162_200_123_456)
        );
        assert_eq!(cell(Timestamp, V::from("later")), Cell::Misfit);
        let et = V::Ext(0, vec![0, 0, 0, 10, 0, 0, 0x03, 0xe8]);
        assert_eq!(cell(Timestamp, et), Cell::Int(10_000_001));
        assert_eq!(cell(String, V::from(12)), Cell::Bytes(b"12".to_vec()));
        assert_eq!(
            cell(String, V::Map(vec![("a".into(), V::from(true))])),
            Cell::Bytes(br#"{"a":true}"#.to_vec())
        );
        assert_eq!(cell(Json, V::from("x")), Cell::Bytes(br#""x""#.to_vec()));
    }
}
