//! Time zones and the time formats used when a time is written into a record.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, TimeZone, Utc};
pub use chrono_tz::Tz;
use fuwa_api::EventTime;

pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("`{name}` is not an IANA time zone name (e.g. \"UTC\", \"Asia/Tokyo\")")
    })
}

/// Checks a strftime format and returns it pre-parsed.
pub fn parse_strftime(fmt: &str) -> Result<Vec<Item<'static>>, String> {
    let items = StrftimeItems::new(fmt)
        .parse_to_owned()
        .map_err(|_| format!("`{fmt}` is not a valid strftime format"))?;
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{fmt}` is not a valid strftime format"));
    }
    Ok(items)
}

pub fn to_datetime(t: EventTime, tz: &Tz) -> DateTime<Tz> {
    let utc = Utc
        .timestamp_opt(t.secs, t.nanos)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    utc.with_timezone(tz)
}

/// How an injected time is written.
#[derive(Debug, Clone)]
pub enum TimeFormat {
    /// `2024-05-01T12:34:56.123456789Z`: UTC, nanoseconds kept
    Rfc3339,
    /// integer seconds
    Unix,
    /// integer milliseconds
    UnixMs,
    /// fractional seconds, nanosecond precision as far as f64 allows
    UnixFloat,
    /// any strftime format, in the agent's time zone
    Strftime(Vec<Item<'static>>, Tz),
}

impl TimeFormat {
    pub fn parse(s: &str, tz: Tz) -> Result<Self, String> {
        Ok(match s {
            "rfc3339" | "iso8601" => TimeFormat::Rfc3339,
            "unix" => TimeFormat::Unix,
            "unix_ms" => TimeFormat::UnixMs,
            "unix_float" => TimeFormat::UnixFloat,
            other => TimeFormat::Strftime(parse_strftime(other)?, tz),
        })
    }
}

/// RFC 3339 in UTC with all nine fractional digits.
pub fn write_rfc3339(out: &mut Vec<u8>, t: EventTime) {
    let dt = Utc
        .timestamp_opt(t.secs, t.nanos)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    use std::io::Write;
    let _ = write!(out, "{}", dt.format("%Y-%m-%dT%H:%M:%S%.9fZ"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_keeps_nanoseconds() {
        let mut out = Vec::new();
        write_rfc3339(&mut out, EventTime::new(1_700_000_000, 5));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2023-11-14T22:13:20.000000005Z"
        );
    }

    #[test]
    fn strftime_checked() {
        assert!(parse_strftime("%Y%m%d").is_ok());
        assert!(parse_strftime("%Q").is_err());
        assert!(parse_timezone("Asia/Tokyo").is_ok());
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
