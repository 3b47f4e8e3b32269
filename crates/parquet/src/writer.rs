//! A chunk's records into one Parquet file, a row group at a time: values
//! are gathered per column for at most `row_group_size` rows (or
//! [`ROW_GROUP_BYTES`] of values), written as one row group, and the bytes
//! produced so far are handed out; memory stays near one row group whatever
//! the chunk size.

use std::io::Write;
use std::sync::{Arc, Mutex};

use fuwa_api::{Entry, EventTime};
use parquet::basic::{
    Compression, GzipLevel, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel,
};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use crate::schema::{ColumnType, Schema};
use crate::value::{convert, Cell};

/// A row group is written once its values reach this many bytes, even
/// below `row_group_size` rows.
pub const ROW_GROUP_BYTES: usize = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    #[default]
    Snappy,
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub codec: Codec,
    pub level: Option<i32>,
    pub row_group_size: usize,
    /// the event time column (a `timestamp`)
    pub time_key: String,
    /// the tag column (a `string`), if any
    pub tag_key: Option<String>,
}

/// What one chunk's encoding found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub rows: u64,
    /// entries skipped: malformed, or the record is not a map
    pub bad: u64,
    /// values that did not fit their column's type, written as null
    pub misfits: u64,
}

pub fn properties(s: &Settings) -> Result<WriterProperties, ParquetError> {
    let compression = match s.codec {
        Codec::Snappy => Compression::SNAPPY,
        Codec::Zstd => Compression::ZSTD(ZstdLevel::try_new(s.level.unwrap_or(3))?),
        Codec::Gzip => Compression::GZIP(GzipLevel::try_new(s.level.unwrap_or(6).max(0) as u32)?),
        Codec::None => Compression::UNCOMPRESSED,
    };
    Ok(WriterProperties::builder()
        .set_compression(compression)
        .set_created_by(format!("fuwa {}", env!("CARGO_PKG_VERSION")))
        .build())
}

/// The Parquet message type of a schema: every column optional.
pub fn message_type(schema: &Schema) -> Result<Type, ParquetError> {
    let mut fields = Vec::with_capacity(schema.columns.len());
    for c in &schema.columns {
        let (physical, logical) = match c.ty {
            ColumnType::Int64 => (Physical::INT64, None),
            ColumnType::Double => (Physical::DOUBLE, None),
            ColumnType::Bool => (Physical::BOOLEAN, None),
            ColumnType::Timestamp => (
                Physical::INT64,
                Some(LogicalType::Timestamp {
                    is_adjusted_to_u_t_c: true,
                    unit: TimeUnit::MICROS,
                }),
            ),
            ColumnType::String | ColumnType::Json => {
                (Physical::BYTE_ARRAY, Some(LogicalType::String))
            }
        };
        fields.push(Arc::new(
            Type::primitive_type_builder(&c.name, physical)
                .with_repetition(Repetition::OPTIONAL)
                .with_logical_type(logical)
                .build()?,
        ));
    }
    Type::group_type_builder("fuwa").with_fields(fields).build()
}

enum Values {
    Int(Vec<i64>),
    Double(Vec<f64>),
    Bool(Vec<bool>),
    Bytes(Vec<ByteArray>),
}

struct ColumnBuf {
    ty: ColumnType,
    values: Values,
    defs: Vec<i16>,
}

impl ColumnBuf {
    fn new(ty: ColumnType) -> Self {
        let values = match ty {
            ColumnType::Int64 | ColumnType::Timestamp => Values::Int(Vec::new()),
            ColumnType::Double => Values::Double(Vec::new()),
            ColumnType::Bool => Values::Bool(Vec::new()),
            ColumnType::String | ColumnType::Json => Values::Bytes(Vec::new()),
        };
        ColumnBuf {
            ty,
            values,
            defs: Vec::new(),
        }
    }

    /// Appends a cell; returns the bytes it holds.
    fn push(&mut self, c: Cell) -> usize {
        let size = match (&mut self.values, c) {
            (Values::Int(v), Cell::Int(x)) => {
                v.push(x);
                8
            }
            (Values::Double(v), Cell::Double(x)) => {
                v.push(x);
                8
            }
            (Values::Bool(v), Cell::Bool(x)) => {
                v.push(x);
                1
            }
            (Values::Bytes(v), Cell::Bytes(x)) => {
                let n = x.len() + 16;
                v.push(ByteArray::from(x));
                n
            }
            _ => {
                self.defs.push(0);
                return 2;
            }
        };
        self.defs.push(1);
        size + 2
    }

    fn write(&mut self, w: &mut ColumnWriter<'_>) -> Result<(), ParquetError> {
        let defs = Some(&self.defs[..]);
        match (w, &mut self.values) {
            (ColumnWriter::Int64ColumnWriter(w), Values::Int(v)) => {
                w.write_batch(v, defs, None)?;
                v.clear();
            }
            (ColumnWriter::DoubleColumnWriter(w), Values::Double(v)) => {
                w.write_batch(v, defs, None)?;
                v.clear();
            }
            (ColumnWriter::BoolColumnWriter(w), Values::Bool(v)) => {
                w.write_batch(v, defs, None)?;
                v.clear();
            }
            (ColumnWriter::ByteArrayColumnWriter(w), Values::Bytes(v)) => {
                w.write_batch(v, defs, None)?;
                v.clear();
            }
            _ => {
                return Err(ParquetError::General(format!(
                    "column writer does not match a {} column",
                    self.ty.name()
                )))
            }
        }
        self.defs.clear();
        Ok(())
    }
}

/// Where the file writer writes: bytes are taken out after each row group.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn take(&self) -> Vec<u8> {
        match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
    fn len(&self) -> usize {
        self.0.lock().map(|v| v.len()).unwrap_or(0)
    }
}

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut v) => v.extend_from_slice(b),
            Err(p) => p.into_inner().extend_from_slice(b),
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the entries as one Parquet file with the columns of `schema`
/// (which holds the time and tag columns of `settings`). `emit` gets pieces
/// of at least `piece` bytes (the last may be smaller); it returns false to
/// stop early.
pub fn write<'a>(
    tag: &str,
    entries: impl Iterator<Item = Result<Entry<'a>, fuwa_api::msgpack::DecodeError>>,
    schema: &Schema,
    settings: &Settings,
    piece: usize,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> Result<Stats, ParquetError> {
    let sink = Shared::default();
    let mut fw = SerializedFileWriter::new(
        sink.clone(),
        Arc::new(message_type(schema)?),
        Arc::new(properties(settings)?),
    )?;
    let mut cols: Vec<ColumnBuf> = schema
        .columns
        .iter()
        .map(|c| ColumnBuf::new(c.ty))
        .collect();
    let index: std::collections::HashMap<&str, usize> = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let time_col = index.get(settings.time_key.as_str()).copied();
    let tag_col = settings
        .tag_key
        .as_deref()
        .and_then(|k| index.get(k).copied());
    let mut stats = Stats::default();
    let mut row: Vec<Cell> = vec![Cell::Null; cols.len()];
    let mut rows = 0usize;
    let mut bytes = 0usize;
    let group_rows = settings.row_group_size.max(1);
    let types = schema_types(schema);
    for e in entries {
        let Ok(e) = e else {
            stats.bad += 1;
            continue;
        };
        match fill_row(&e, &index, &types, [time_col, tag_col], &mut row) {
            Ok(m) => stats.misfits += m,
            Err(()) => {
                stats.bad += 1;
                continue;
            }
        }
        if let Some(i) = time_col {
            row[i] = Cell::Int(micros(e.time));
        }
        if let Some(i) = tag_col {
            row[i] = Cell::Bytes(tag.as_bytes().to_vec());
        }
        for (c, cell) in cols.iter_mut().zip(row.iter_mut()) {
            bytes += c.push(std::mem::replace(cell, Cell::Null));
        }
        rows += 1;
        stats.rows += 1;
        if rows >= group_rows || bytes >= ROW_GROUP_BYTES {
            flush_group(&mut fw, &mut cols)?;
            rows = 0;
            bytes = 0;
            if sink.len() >= piece && !emit(sink.take()) {
                return Ok(stats);
            }
        }
    }
    if rows > 0 {
        flush_group(&mut fw, &mut cols)?;
    }
    fw.close()?;
    emit(sink.take());
    Ok(stats)
}

fn schema_types(schema: &Schema) -> impl Fn(usize) -> ColumnType + '_ {
    move |i| schema.columns[i].ty
}

fn flush_group(
    fw: &mut SerializedFileWriter<Shared>,
    cols: &mut [ColumnBuf],
) -> Result<(), ParquetError> {
    let mut rg = fw.next_row_group()?;
    for c in cols.iter_mut() {
        let Some(mut cw) = rg.next_column()? else {
            return Err(ParquetError::General(
                "fewer columns than the schema".into(),
            ));
        };
        c.write(cw.untyped())?;
        cw.close()?;
    }
    rg.close()?;
    fw.flush()?;
    Ok(())
}

/// Event time as microseconds since the epoch (nanoseconds cut).
pub fn micros(t: EventTime) -> i64 {
    t.secs
        .saturating_mul(1_000_000)
        .saturating_add((t.nanos / 1000) as i64)
}

/// The record's fields into `row` (nulls where absent), but for the
/// `injected` columns; returns how many
/// values did not fit. `Err` when the record is not a well-formed map.
fn fill_row(
    e: &Entry<'_>,
    index: &std::collections::HashMap<&str, usize>,
    ty: &impl Fn(usize) -> ColumnType,
    injected: [Option<usize>; 2],
    row: &mut [Cell],
) -> Result<u64, ()> {
    use fuwa_api::msgpack::{read_head, skip, Head};
    for c in row.iter_mut() {
        *c = Cell::Null;
    }
    let rec = e.record;
    let (head, mut p) = read_head(rec, 0).map_err(|_| ())?;
    let Head::Map(n) = head else { return Err(()) };
    let mut misfits = 0;
    for _ in 0..n {
        let (k, kp) = read_head(rec, p).map_err(|_| ())?;
        let name = match k {
            Head::Str(l) | Head::Bin(l) => rec
                .get(kp..kp + l)
                .and_then(|b| std::str::from_utf8(b).ok()),
            _ => None,
        };
        let v = skip(rec, p).map_err(|_| ())?;
        // the time and tag columns are the output's, not the record's
        match name
            .and_then(|n| index.get(n))
            .filter(|i| !injected.contains(&Some(**i)))
        {
            Some(&i) => {
                let (cell, end) = convert(ty(i), rec, v).map_err(|_| ())?;
                if cell == Cell::Misfit {
                    misfits += 1;
                }
                row[i] = cell;
                p = end;
            }
            None => p = skip(rec, v).map_err(|_| ())?,
        }
    }
    Ok(misfits)
}
