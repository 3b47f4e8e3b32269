//! Where each file was read up to, kept in `data_dir/tail/<input id>.json`
//! and replaced atomically (write a temporary file, then rename), only after
//! the lines before that offset were durably accepted by the buffers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many leading bytes identify a file beyond its inode (inode reuse).
pub const FINGERPRINT_BYTES: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// length of the fingerprinted prefix and its hash (FNV-1a 64)
    pub fp_len: u32,
    pub fp: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Position {
    pub id: FileId,
    pub offset: u64,
}

pub fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for x in b {
        h ^= *x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Reads up to `len` leading bytes of a file and hashes them.
pub fn fingerprint(path: &Path, len: usize) -> std::io::Result<(u32, u64)> {
    fingerprint_file(&std::fs::File::open(path)?, len)
}

/// The same, through an open file: what the path names may have changed
/// (rotation), the open file has not.
pub fn fingerprint_file(f: &std::fs::File, len: usize) -> std::io::Result<(u32, u64)> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = f.read_at(&mut buf[got..], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok((got as u32, fnv(&buf[..got])))
}

pub struct PositionFile {
    path: PathBuf,
    pub entries: HashMap<String, Position>,
    dirty: bool,
    /// its directory was created (once, not per save)
    dir_ready: bool,
}

impl PositionFile {
    pub fn load(path: PathBuf) -> std::io::Result<Self> {
        let entries = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(e),
        };
        Ok(PositionFile {
            path,
            entries,
            dirty: false,
            dir_ready: false,
        })
    }

    /// Whether positions changed since the last save.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn set(&mut self, file: &str, pos: Position) {
        if self.entries.get(file) != Some(&pos) {
            self.entries.insert(file.to_string(), pos);
            self.dirty = true;
        }
    }

    pub fn remove(&mut self, file: &str) {
        if self.entries.remove(file).is_some() {
            self.dirty = true;
        }
    }

    /// Writes the positions if they changed: temporary file, then rename.
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        // positions name the files read and how far: the agent's own data,
        // readable by its user only (0600 files, 0700 directories)
        if !self.dir_ready {
            if let Some(dir) = self.path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            self.dir_ready = true;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .inspect_err(|_| self.dir_ready = false)?;
        f.write_all(&serde_json::to_vec(&self.entries).unwrap_or_default())?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        self.dirty = false;
        Ok(())
    }
}
