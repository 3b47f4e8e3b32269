//! What inputs and outputs share to read and write bytes, once:
//!
//! - bounded decompression (gzip with several members, zstd): a small bomb
//!   cannot take memory, and every piece it grows by can be charged to a
//!   budget first;
//! - PEM certificate and key loading for TLS servers and clients;
//! - the SHA-512 hex digest of the forward protocol's handshake.

use std::io::{BufReader, Read};
use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Why a compressed body was not inflated.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// it inflates past the limit (the limit, in bytes)
    #[error("inflates past the limit of {0} bytes")]
    TooLarge(usize),
    /// the budget refused a piece of memory
    #[error("over the memory budget")]
    OverBudget,
    /// the bytes are not what they claim to be
    #[error("{0}")]
    Corrupt(String),
}

/// Inflates what `r` yields, producing at most `limit` bytes, asking `take`
/// for every piece of memory the output grows by (64 KiB at a time, exact
/// reservations: what was taken is what is allocated); a `false` refuses.
pub fn inflate_limited(
    mut r: impl Read,
    limit: usize,
    take: &mut dyn FnMut(usize) -> bool,
) -> Result<Vec<u8>, InflateError> {
    const STEP: usize = 64 * 1024;
    let mut out: Vec<u8> = Vec::new();
    let mut filled = 0usize;
    loop {
        if filled == out.len() {
            // a piece more, one byte over the limit at most
            let grow = STEP.min(limit + 1 - out.len().min(limit));
            if grow == 0 || out.len() > limit {
                return Err(InflateError::TooLarge(limit));
            }
            if !take(grow) {
                return Err(InflateError::OverBudget);
            }
            out.reserve_exact(grow);
            out.resize(out.len() + grow, 0);
        }
        match r.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled > limit {
                    return Err(InflateError::TooLarge(limit));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(InflateError::Corrupt(e.to_string())),
        }
    }
    out.truncate(filled);
    Ok(out)
}

/// One or more concatenated gzip members, at most `limit` bytes inflated.
pub fn gunzip(b: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    gunzip_with(b, limit, &mut |_| true)
}

/// [`gunzip`], charging `take` for the memory it grows by.
pub fn gunzip_with(
    b: &[u8],
    limit: usize,
    take: &mut dyn FnMut(usize) -> bool,
) -> Result<Vec<u8>, InflateError> {
    inflate_limited(flate2::read::MultiGzDecoder::new(b), limit, take)
}

/// A zstd frame (or several), at most `limit` bytes inflated.
pub fn unzstd(b: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let d = zstd::stream::read::Decoder::with_buffer(b)
        .map_err(|e| InflateError::Corrupt(e.to_string()))?;
    inflate_limited(d, limit, &mut |_| true)
}

/// Every certificate in a PEM file (`what` names the config key in errors,
/// e.g. `cert_path`); at least one.
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let f = std::fs::File::open(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file (`what` names the config key in errors).
pub fn load_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    let f = std::fs::File::open(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(f))
        .map_err(|e| format!("bad private key in {}: {e}", path.display()))?
        .ok_or_else(|| format!("no private key found in {}", path.display()))
}

/// Lowercase hex of SHA-512 over the parts, in order (the forward
/// protocol's PING/PONG digests).
pub fn sha512_hex(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha512};
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_members_inflate_within_the_limit_and_bombs_do_not() {
        let mut two = gz(b"hello ");
        two.extend(gz(b"world"));
        assert_eq!(gunzip(&two, 100).unwrap(), b"hello world");
        assert_eq!(gunzip(&two, 11).unwrap(), b"hello world");
        assert_eq!(gunzip(&two, 10), Err(InflateError::TooLarge(10)));
        let bomb = gz(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 1 << 20, "a small bomb: {} bytes", bomb.len());
        assert_eq!(gunzip(&bomb, 1 << 20), Err(InflateError::TooLarge(1 << 20)));
        let mut taken = 0;
        let r = gunzip_with(&bomb, 100 << 20, &mut |n| {
            taken += n;
            taken <= 1 << 20
        });
        assert_eq!(r, Err(InflateError::OverBudget));
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(InflateError::Corrupt(_))
        ));
        let z = zstd::encode_all(&b"zstd body"[..], 1).unwrap();
        assert_eq!(unzstd(&z, 100).unwrap(), b"zstd body");
        assert_eq!(unzstd(&z, 3), Err(InflateError::TooLarge(3)));
    }

    #[test]
    fn digest_is_sha512_hex() {
        assert_eq!(
            &sha512_hex(&[b"a", b"bc"])[..16],
            "ddaf35a193617aba",
            "sha512(\"abc\")"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_inflate_or_err_within_the_limit(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000), limit in 0usize..5000) {
            for out in [gunzip(&b, limit), unzstd(&b, limit)].into_iter().flatten() {
                proptest::prop_assert!(out.len() <= limit);
            }
        }
    }
}
