//! Typed Parquet for the outputs that write files or objects (`s3`,
//! `file`): one Parquet file per chunk, written a row group at a time with
//! the `parquet` crate's low-level column writer (no Arrow).
//!
//! The columns, in order: the event time (`time_key`, a UTC microsecond
//! `timestamp`), the tag (`tag_key`, if set), the output's declared columns
//! (`schema = { … }`, then the `types` filters for its tags), then the fields
//! inferred from the records, each typed by the first chunk it appears in.
//! The list is persisted (`<data_dir>/parquet/<output id>.schema.json`) and
//! only grows: a column never changes type (unless the config declares it
//! otherwise), a new field is a new column in later objects (Athena and
//! DuckDB read Parquet by column name), and a value that does not fit its
//! column is written as null and counted
//! (`fuwa_parquet_misfit_values_total`). Nested maps and arrays are JSON
//! text in `string` columns. See docs/configuration/out_s3.md, "Parquet".

pub mod schema;
pub mod value;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use fuwa_api::{Chunk, Metric};

pub use schema::{Column, ColumnType, Schema};
pub use writer::{Codec, Settings, Stats};

/// Where an output's inferred schema is kept.
pub fn schema_path(data_dir: &Path, output_id: &str) -> PathBuf {
    let safe: String = output_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    data_dir.join("parquet").join(format!("{safe}.schema.json"))
}

pub const CONTENT_TYPE: &str = "application/vnd.apache.parquet";

/// One output's Parquet encoder and its stable schema.
pub struct ParquetEncoder {
    settings: Settings,
    path: Option<PathBuf>,
    /// the names `schema = { … }` types: no filter overrides them
    own: Vec<String>,
    state: Mutex<State>,
    misfits: AtomicU64,
    bad: AtomicU64,
    added: AtomicU64,
}

struct State {
    schema: Schema,
    /// the schema differs from what is persisted
    dirty: bool,
}

impl ParquetEncoder {
    /// `declared`: the columns the config types (`schema = { … }`, then the
    /// `types` filters); the time and tag columns come first whatever it
    /// says. `path`: where the schema is persisted (`None`: not persisted).
    /// Nothing is written until the first chunk.
    pub fn new(
        settings: Settings,
        declared: &[(String, ColumnType)],
        path: Option<PathBuf>,
    ) -> Result<ParquetEncoder, String> {
        let persisted = match &path {
            Some(p) => Schema::load(p)?,
            None => None,
        };
        let mut s = Schema::default();
        s.add(&settings.time_key, ColumnType::Timestamp);
        if let Some(t) = &settings.tag_key {
            s.add(t, ColumnType::String);
        }
        for (name, ty) in declared {
            s.add(name, *ty);
        }
        if let Some(p) = &persisted {
            for c in &p.columns {
                s.add(&c.name, c.ty);
            }
        }
        let dirty = persisted.as_ref() != Some(&s);
        Ok(ParquetEncoder {
            own: declared.iter().map(|(n, _)| n.clone()).collect(),
            settings,
            path,
            state: Mutex::new(State { schema: s, dirty }),
            misfits: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            added: AtomicU64::new(0),
        })
    }

    /// The types the `types` filters give the output's fields: they type
    /// the columns the output's own `schema` does not (and win over a type
    /// inferred earlier, like the output's `schema` does).
    pub fn declare_upstream(&self, types: &[(String, ColumnType)]) {
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let injected = [
            Some(&self.settings.time_key),
            self.settings.tag_key.as_ref(),
        ];
        for (name, ty) in types {
            if self.own.contains(name) || injected.contains(&Some(name)) {
                continue;
            }
            match st.schema.columns.iter_mut().find(|c| &c.name == name) {
                Some(c) if c.ty == *ty => continue,
                Some(c) => c.ty = *ty,
                None => {
                    st.schema.add(name, *ty);
                }
            }
            st.dirty = true;
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The columns known now (declared and persisted; inferred ones join
    /// as chunks arrive).
    pub fn schema(&self) -> Schema {
        match self.state.lock() {
            Ok(s) => s.schema.clone(),
            Err(p) => p.into_inner().schema.clone(),
        }
    }

    /// Adds the fields of this chunk that have no column yet (typed from
    /// this chunk), persists the schema when it changed, and returns it.
    fn schema_for(&self, chunk: &Chunk) -> Schema {
        let snapshot = self.schema();
        let reserved: Vec<&str> = [
            Some(self.settings.time_key.as_str()),
            self.settings.tag_key.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let new = schema::new_fields(
            &snapshot,
            chunk.entries().filter_map(|e| e.ok()).map(|e| e.record),
            &reserved,
        );
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        for (name, ty) in new {
            if st.schema.add(&name, ty) {
                self.added.fetch_add(1, Ordering::Relaxed);
                st.dirty = true;
            }
        }
        // a schema that cannot be persisted now (disk full) is tried again
        // with the next chunk; this chunk is written with it all the same
        if st.dirty && self.path.as_ref().is_none_or(|p| st.schema.save(p).is_ok()) {
            st.dirty = false;
        }
        st.schema.clone()
    }

    /// Encodes the chunk as one Parquet file handed out in pieces of at
    /// least `piece` bytes (see [`writer::write`]).
    pub fn encode(
        &self,
        chunk: &Chunk,
        piece: usize,
        emit: impl FnMut(Vec<u8>) -> bool,
    ) -> std::io::Result<Stats> {
        let schema = self.schema_for(chunk);
        let stats = writer::write(
            &chunk.tag,
            chunk.entries(),
            &schema,
            &self.settings,
            piece,
            emit,
        )
        .map_err(|e| std::io::Error::other(format!("parquet: {e}")))?;
        self.misfits.fetch_add(stats.misfits, Ordering::Relaxed);
        self.bad.fetch_add(stats.bad, Ordering::Relaxed);
        Ok(stats)
    }

    pub fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::counter(
                "fuwa_parquet_misfit_values_total",
                "values that did not fit their Parquet column's type, written as null",
                self.misfits.load(Ordering::Relaxed),
            ),
            Metric::counter(
                "fuwa_parquet_skipped_records_total",
                "entries not written to Parquet: malformed, or the record is not a map",
                self.bad.load(Ordering::Relaxed),
            ),
            Metric::counter(
                "fuwa_parquet_columns_added_total",
                "columns added to the output's Parquet schema for new fields",
                self.added.load(Ordering::Relaxed),
            ),
        ]
    }
}

#[cfg(test)]
mod tests;
