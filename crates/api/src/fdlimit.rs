//! The open-file limit, from which the inputs and buffers derive their
//! default bounds (`max_connections`, `max_open_chunks`), so that together
//! they stay inside it. fuwa raises the soft limit to the hard one at start,
//! before anything reads it here.

/// The soft RLIMIT_NOFILE of this process (Linux: /proc/self/limits), or
/// `None` when it cannot be read or is unlimited.
pub fn soft_nofile() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_soft_nofile(&text)
}

fn parse_soft_nofile(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A share of the descriptors: `soft / divisor`, clamped to `min..=max`, or
/// `fallback` when the limit is not known.
pub fn share_of(soft: Option<u64>, divisor: u64, min: usize, max: usize, fallback: usize) -> usize {
    match soft {
        Some(n) => (n / divisor.max(1)).clamp(min as u64, max as u64) as usize,
        None => fallback,
    }
}

/// The default `max_connections` of a network input: a quarter of the
/// descriptors (the rest is for the other inputs, buffer chunks and
/// outputs), 16 to 4,096; 1,024 when the limit is not known.
pub fn default_max_connections() -> usize {
    share_of(soft_nofile(), 4, 16, 4096, 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_and_shared() {
        let t = "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max cpu time              unlimited            unlimited            seconds\n\
                 Max open files            256                  4096                 files\n";
        assert_eq!(parse_soft_nofile(t), Some(256));
        assert_eq!(
            parse_soft_nofile("Max open files            unlimited   unlimited  files"),
            None
        );
        assert_eq!(share_of(Some(256), 4, 16, 4096, 1024), 64);
        assert_eq!(share_of(Some(20), 4, 16, 4096, 1024), 16);
        assert_eq!(share_of(Some(1 << 20), 4, 16, 4096, 1024), 4096);
        assert_eq!(share_of(None, 4, 16, 4096, 1024), 1024);
        assert!(soft_nofile().is_some(), "readable on Linux");
    }
}
