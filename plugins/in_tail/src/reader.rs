//! One tailed file: reading in bounded pieces, splitting lines (CRLF,
//! over-long lines truncated or skipped without ever holding more than
//! max_line_size), and noticing rotation, truncation and deletion.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::config::LongLines;
use crate::position::{fingerprint_file, FileId, FINGERPRINT_BYTES};

pub const READ_PIECE: usize = 256 * 1024;

pub struct Tailed {
    pub path: PathBuf,
    pub key: String,
    pub tag: Arc<str>,
    pub file: File,
    pub id: FileId,
    /// next byte to read
    pub offset: u64,
    /// bytes of an unfinished line and the file offset where it starts
    pub partial: Vec<u8>,
    pub partial_start: u64,
    /// inside an over-long line: its kept head (truncate) and that we are
    /// dropping bytes until the next newline
    pub long_head: Option<Vec<u8>>,
    pub last_growth: Instant,
    /// the path now names another file (or none): read to the end, then let go
    pub draining: bool,
    /// a line's `\r` before its newline is kept (`keep_carriage_return`)
    pub keep_cr: bool,
}

pub enum Change {
    Same,
    Truncated,
    /// the path names a different file now (rename/create rotation)
    Replaced,
    Gone,
}

pub fn identify(path: &Path) -> std::io::Result<(u64, u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino(), m.len()))
}

impl Tailed {
    pub fn open(path: &Path, tag: Arc<str>, start: Option<u64>) -> std::io::Result<(Tailed, u64)> {
        let mut file = File::open(path)?;
        let m = file.metadata()?;
        let (fp_len, fp) = fingerprint_file(&file, FINGERPRINT_BYTES)?;
        let id = FileId {
            dev: m.dev(),
            ino: m.ino(),
            fp_len,
            fp,
        };
        let len = m.len();
        let offset = start.unwrap_or(len).min(len);
        file.seek(SeekFrom::Start(offset))?;
        Ok((
            Tailed {
                path: path.to_path_buf(),
                key: path.display().to_string(),
                tag,
                file,
                id,
                offset,
                partial: Vec::new(),
                partial_start: offset,
                long_head: None,
                last_growth: Instant::now(),
                draining: false,
                keep_cr: false,
            },
            len,
        ))
    }

    /// What became of the path since the file was opened.
    pub fn check(&self) -> Change {
        match std::fs::metadata(&self.path) {
            Err(_) => Change::Gone,
            Ok(m) if m.dev() != self.id.dev || m.ino() != self.id.ino => Change::Replaced,
            Ok(m) if m.len() < self.offset => Change::Truncated,
            Ok(_) => Change::Same,
        }
    }

    /// Starts over at byte 0 (copytruncate).
    pub fn reset(&mut self) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.offset = 0;
        self.partial.clear();
        self.partial_start = 0;
        self.long_head = None;
        self.refresh_fingerprint();
        Ok(())
    }

    pub fn refresh_fingerprint(&mut self) {
        if (self.id.fp_len as usize) < FINGERPRINT_BYTES {
            // through the open file: the path may name another file by now
            if let Ok((l, f)) = fingerprint_file(&self.file, FINGERPRINT_BYTES) {
                self.id.fp_len = l;
                self.id.fp = f;
            }
        }
    }

    /// The offset up to which every line has been handed out.
    pub fn line_boundary(&self) -> u64 {
        if self.partial.is_empty() && self.long_head.is_none() {
            self.offset
        } else {
            self.partial_start
        }
    }

    /// Reads up to `max` bytes and calls `line(bytes, start_offset,
    /// end_offset, was_long)` for each complete line: `start_offset` is where
    /// the line begins in the file, `end_offset` just after its newline.
    /// Returns the bytes read (0 at end of file).
    pub fn read_lines(
        &mut self,
        max: usize,
        max_line: usize,
        long: LongLines,
        buf: &mut Vec<u8>,
        line: &mut OnLine<'_>,
    ) -> std::io::Result<usize> {
        let keep_cr = self.keep_cr;
        buf.resize(max.min(READ_PIECE), 0);
        let n = self.file.read(buf)?;
        if n == 0 {
            return Ok(0);
        }
        self.last_growth = Instant::now();
        let data = &buf[..n];
        let base = self.offset;
        self.offset += n as u64;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            let end_off = base + nl as u64 + 1;
            // where this line began: set after the previous newline, or when
            // its first bytes were kept as a partial line
            let line_start = self.partial_start;
            let piece = &data[start..nl];
            if let Some(head) = self.long_head.take() {
                // the end of an over-long line
                if long == LongLines::Truncate {
                    line(&head, line_start, end_off, true);
                } else {
                    line(&[], line_start, end_off, true);
                }
                self.partial.clear();
            } else if self.partial.is_empty() {
                if piece.len() > max_line {
                    let kept = if long == LongLines::Truncate {
                        &piece[..max_line]
                    } else {
                        &[][..]
                    };
                    line(kept, line_start, end_off, true);
                } else {
                    line(strip_cr(piece, keep_cr), line_start, end_off, false);
                }
            } else {
                let room = max_line.saturating_sub(self.partial.len());
                if piece.len() > room {
                    self.partial.extend_from_slice(&piece[..room]);
                    let kept = if long == LongLines::Truncate {
                        std::mem::take(&mut self.partial)
                    } else {
                        Vec::new()
                    };
                    line(&kept, line_start, end_off, true);
                } else {
                    self.partial.extend_from_slice(piece);
                    let whole = std::mem::take(&mut self.partial);
                    line(strip_cr(&whole, keep_cr), line_start, end_off, false);
                }
            }
            self.partial.clear();
            self.partial_start = end_off;
            start = nl + 1;
        }
        let rest = &data[start..];
        if !rest.is_empty() {
            if self.partial.is_empty() && self.long_head.is_none() {
                self.partial_start = base + start as u64;
            }
            if self.long_head.is_none() {
                let room = max_line.saturating_sub(self.partial.len());
                if rest.len() > room {
                    self.partial.extend_from_slice(&rest[..room]);
                    self.long_head = Some(std::mem::take(&mut self.partial));
                } else {
                    self.partial.extend_from_slice(rest);
                }
            }
        }
        Ok(n)
    }

    /// Hands out an unfinished last line (after flush_partial_after, or when
    /// the file is let go).
    pub fn flush_partial(&mut self, line: &mut OnLine<'_>) {
        let start = self.partial_start;
        if let Some(head) = self.long_head.take() {
            line(&head, start, self.offset, true);
        } else if !self.partial.is_empty() {
            let p = std::mem::take(&mut self.partial);
            line(strip_cr(&p, self.keep_cr), start, self.offset, false);
        }
        self.partial.clear();
        self.partial_start = self.offset;
    }
}

/// What `read_lines` and `flush_partial` call for each line: `(bytes,
/// start_offset, end_offset, was_long)`.
pub type OnLine<'a> = dyn FnMut(&[u8], u64, u64, bool) + 'a;

fn strip_cr(b: &[u8], keep: bool) -> &[u8] {
    if keep {
        return b;
    }
    b.strip_suffix(b"\r").unwrap_or(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(
        content: &[&[u8]],
        max_line: usize,
        long: LongLines,
    ) -> (Vec<(String, u64, bool)>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        std::fs::write(&p, b"").unwrap();
        let (mut t, _) = Tailed::open(&p, Arc::from("t"), Some(0)).unwrap();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for piece in content {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&p)
                .unwrap()
                .write_all(piece)
                .unwrap();
            loop {
                let n = t
                    .read_lines(7, max_line, long, &mut buf, &mut |l, _start, off, trunc| {
                        out.push((String::from_utf8_lossy(l).into_owned(), off, trunc))
                    })
                    .unwrap();
                if n == 0 {
                    break;
                }
            }
        }
        (out, t.line_boundary())
    }

    /// (start, end) of every line, the unfinished last one flushed at the end
    fn spans_of(content: &[&[u8]], max_line: usize, long: LongLines) -> Vec<(u64, u64)> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        std::fs::write(&p, content.concat()).unwrap();
        let (mut t, _) = Tailed::open(&p, Arc::from("t"), Some(0)).unwrap();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let mut push = |_: &[u8], start: u64, end: u64, _: bool| out.push((start, end));
        // 7-byte reads, so lines are split across reads
        while t
            .read_lines(7, max_line, long, &mut buf, &mut push)
            .unwrap()
            > 0
        {}
        t.flush_partial(&mut push);
        out
    }

    #[test]
    fn each_line_knows_where_it_began() {
        // CRLF, a line split across reads, an over-long line (cut or
        // skipped: either way its start is the line's own), an unfinished
        // last line
        let long = vec![b'x'; 30];
        let content: Vec<&[u8]> = vec![b"ab\r\n", b"hello world\n", &long, b"\n", b"tail"];
        for how in [LongLines::Truncate, LongLines::Skip] {
            assert_eq!(
                spans_of(&content, 10, how),
                vec![(0, 4), (4, 16), (16, 47), (47, 51)],
                "{how:?}"
            );
        }
    }

    #[test]
    fn lines_split_across_reads_and_crlf() {
        let (l, b) = lines_of(
            &[b"hello wor", b"ld\r\nsecond\n", b"third-no-newline"],
            100,
            LongLines::Truncate,
        );
        assert_eq!(
            l,
            vec![
                ("hello world".into(), 13, false),
                ("second".into(), 20, false)
            ]
        );
        assert_eq!(b, 20, "the boundary stays before the unfinished line");
    }

    #[test]
    fn long_lines_are_truncated_or_skipped_with_bounded_memory() {
        let long = vec![b'x'; 100];
        let mut content: Vec<&[u8]> = vec![b"ok\n", &long, b"\nafter\n"];
        let (l, _) = lines_of(&content, 10, LongLines::Truncate);
        assert_eq!(l[0].0, "ok");
        assert_eq!(l[1], ("x".repeat(10), 104, true));
        assert_eq!(l[2].0, "after");
        let (l, _) = lines_of(&content, 10, LongLines::Skip);
        assert_eq!(l[1], (String::new(), 104, true));
        assert_eq!(l[2].0, "after");
        content = vec![b"0123456789abcdef\n"];
        let (l, _) = lines_of(&content, 10, LongLines::Truncate);
        assert_eq!(l[0], ("0123456789".into(), 17, true));
    }
}
