//! CORS: which browser origins may post, and the headers that tell them so.

/// The allowed origins, from `cors_allow_origins`.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    any: bool,
    exact: Vec<String>,
    /// `https://*.example.com` → ("https://", ".example.com")
    wildcard: Vec<(String, String)>,
    pub credentials: bool,
}

impl Cors {
    /// Checks the configured values; an error names the bad one.
    pub fn new(origins: &[String], credentials: bool) -> Result<Cors, String> {
        let mut c = Cors {
            credentials,
            ..Cors::default()
        };
        for o in origins {
            let o = o.trim();
            if o == "*" {
                c.any = true;
                continue;
            }
            let Some((scheme, host)) = o.split_once("://") else {
                return Err(format!(
                    "`{o}` is not an origin like \"https://example.com\" (or \"*\")"
                ));
            };
            if scheme.is_empty() || host.is_empty() || host.contains('/') {
                return Err(format!(
                    "`{o}` is not an origin like \"https://example.com\" (no path, no trailing /)"
                ));
            }
            if let Some(rest) = host.strip_prefix('*') {
                if !rest.starts_with('.') || rest.contains('*') {
                    return Err(format!(
                        "`{o}`: a wildcard must be the whole leftmost label, like \"https://*.example.com\""
                    ));
                }
                c.wildcard.push((
                    format!("{scheme}://").to_ascii_lowercase(),
                    rest.to_ascii_lowercase(),
                ));
            } else if host.contains('*') {
                return Err(format!(
                    "`{o}`: a wildcard must be the whole leftmost label, like \"https://*.example.com\""
                ));
            } else {
                c.exact.push(o.to_ascii_lowercase());
            }
        }
        Ok(c)
    }

    /// CORS is configured (requests from other origins are refused).
    pub fn enabled(&self) -> bool {
        self.any || !self.exact.is_empty() || !self.wildcard.is_empty()
    }

    pub fn allows(&self, origin: &[u8]) -> bool {
        if self.any {
            return true;
        }
        if self
            .exact
            .iter()
            .any(|e| e.as_bytes().eq_ignore_ascii_case(origin))
        {
            return true;
        }
        self.wildcard.iter().any(|(scheme, suffix)| {
            origin.len() > scheme.len() + suffix.len()
                && origin[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
                && origin[origin.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
                && !origin[scheme.len()..origin.len() - suffix.len()].contains(&b'/')
        })
    }

    /// `Access-Control-Allow-Origin` is `*` (not the echoed origin).
    pub fn answers_star(&self) -> bool {
        self.any && !self.credentials
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_wildcard_and_any() {
        let c = Cors::new(
            &["https://note.com".into(), "https://*.example.com".into()],
            false,
        )
        .unwrap();
        assert!(c.enabled());
        assert!(c.allows(b"https://note.com"));
        assert!(c.allows(b"HTTPS://NOTE.com"));
        assert!(!c.allows(b"http://note.com"));
        assert!(!c.allows(b"https://note.com.evil.org"));
        assert!(c.allows(b"https://a.example.com"));
        assert!(c.allows(b"https://a.b.example.com"));
        assert!(!c.allows(b"https://example.com"));
        assert!(!c.allows(b"https://evilexample.com"));
        assert!(!c.allows(b"null"));
        let any = Cors::new(&["*".into()], false).unwrap();
        assert!(any.allows(b"https://whatever.org") && any.answers_star());
        assert!(!Cors::new(&[], false).unwrap().enabled());
        assert!(Cors::new(&["note.com".into()], false).is_err());
        assert!(Cors::new(&["https://note.com/".into()], false).is_err());
        assert!(Cors::new(&["https://a.*.com".into()], false).is_err());
    }
}
