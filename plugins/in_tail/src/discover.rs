//! Which files the input tails: its globs expanded (minus the excludes),
//! the directories to watch, and each file's tag (checked once per file).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use crate::TailInput;

impl TailInput {
    /// The file's tag, or `None` (with one warning per file) when the tag
    /// derived from its path is refused: too long for tag_length_limit or
    /// with a control character in it. Such a file is not read.
    pub(crate) fn checked_tag(&self, path: &Path) -> Option<Arc<str>> {
        let tag = self.tag_for(path);
        match fuwa_api::tag::check(&tag, self.cfg.tag_length_limit.0 as usize) {
            Ok(()) => Some(tag),
            Err(e) => {
                let mut refused = self.refused_tags.lock().unwrap_or_else(|p| p.into_inner());
                if refused.insert(path.to_path_buf()) {
                    warn!(path = %path.display(), error = %e, "not tailing this file: the tag derived from its path is refused");
                }
                None
            }
        }
    }

    pub(crate) fn tag_for(&self, path: &Path) -> Arc<str> {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dotted = path
            .to_string_lossy()
            .trim_start_matches('/')
            .replace('/', ".");
        let t = self
            .cfg
            .tag
            .replace("${filename}", &file)
            .replace("${path}", &dotted)
            .replace('*', &dotted);
        Arc::from(t.as_str())
    }

    pub(crate) fn expand(&self) -> Vec<PathBuf> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for inc in &self.includes {
            let Ok(paths) = glob::glob(inc) else { continue };
            for p in paths.flatten() {
                if !p.is_file() {
                    continue;
                }
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if self
                    .excludes
                    .iter()
                    .any(|e| e.matches_path(&p) || e.matches(&name))
                {
                    continue;
                }
                if seen.insert(p.clone()) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Directories to watch with inotify: the fixed part of each glob.
    pub(crate) fn watch_dirs(&self) -> Vec<(PathBuf, bool)> {
        let mut out = Vec::new();
        for inc in &self.includes {
            let mut dir = PathBuf::new();
            for c in Path::new(inc).components() {
                let s = c.as_os_str().to_string_lossy();
                if s.contains(['*', '?', '[']) {
                    break;
                }
                dir.push(c);
            }
            let recursive = inc.contains("**");
            let dir = if Path::new(inc) == dir {
                dir.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                dir
            };
            if !dir.as_os_str().is_empty() {
                out.push((dir, recursive));
            }
        }
        out
    }
}
