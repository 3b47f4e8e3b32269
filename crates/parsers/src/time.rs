//! Reading event times out of text.

use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use fuwa_api::EventTime;

#[derive(Debug, Clone)]
pub enum TimeParser {
    /// RFC 3339 / ISO 8601 (an offset, or the agent's time zone when absent)
    Rfc3339(Tz),
    Unix,
    UnixMs,
    /// a strftime pattern; without `%z` the agent's time zone applies, and
    /// without a year the current one (syslog style)
    Strftime {
        fmt: String,
        tz: Tz,
        offset: bool,
        year: bool,
    },
    /// RFC 3164 (`Nov  5 12:00:00`) or RFC 5424 (RFC 3339) timestamps
    Syslog(Tz),
    /// Apache 2.x error log: `Oct 11 14:32:52.123456 2000` (the weekday is
    /// outside the captured time)
    ApacheError(Tz),
    /// RFC 3339, then epoch seconds
    Auto(Tz),
}

fn to_event(dt: DateTime<Utc>) -> EventTime {
    EventTime::new(dt.timestamp(), dt.timestamp_subsec_nanos())
}

fn local(naive: NaiveDateTime, tz: &Tz) -> Result<EventTime, String> {
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|d| to_event(d.with_timezone(&Utc)))
        .ok_or_else(|| "that local time does not exist in the time zone".to_string())
}

impl TimeParser {
    pub fn new(fmt: &str, tz: Tz) -> Result<Self, String> {
        Ok(match fmt {
            "rfc3339" | "iso8601" => TimeParser::Rfc3339(tz),
            "unix" | "unix_float" => TimeParser::Unix,
            "unix_ms" => TimeParser::UnixMs,
            "syslog" => TimeParser::Syslog(tz),
            "apache_error" => TimeParser::ApacheError(tz),
            "auto" => TimeParser::Auto(tz),
            f => {
                fuwa_render::time::parse_strftime(f)?;
                TimeParser::Strftime {
                    fmt: f.to_string(),
                    tz,
                    offset: f.contains("%z")
                        || f.contains("%:z")
                        || f.contains("%#z")
                        || f.contains("%Z"),
                    year: ["%Y", "%y", "%G", "%s", "%F", "%D", "%c"]
                        .iter()
                        .any(|y| f.contains(y)),
                }
            }
        })
    }

    pub fn parse(&self, v: &str) -> Result<EventTime, String> {
        let v = v.trim();
        match self {
            TimeParser::Rfc3339(tz) => rfc3339(v, tz),
            TimeParser::Unix => unix(v, 1),
            TimeParser::UnixMs => unix(v, 1000),
            TimeParser::Strftime {
                fmt,
                tz,
                offset,
                year,
            } => {
                if *offset {
                    DateTime::parse_from_str(v, fmt)
                        .map(|d| to_event(d.with_timezone(&Utc)))
                        .map_err(|e| e.to_string())
                } else if *year {
                    NaiveDateTime::parse_from_str(v, fmt)
                        .map_err(|e| e.to_string())
                        .and_then(|n| local(n, tz))
                } else {
                    with_current_year(v, fmt, tz)
                }
            }
            TimeParser::Syslog(tz) => {
                rfc3339(v, tz).or_else(|_| with_current_year(v, "%b %d %H:%M:%S", tz))
            }
            TimeParser::ApacheError(tz) => NaiveDateTime::parse_from_str(v, "%b %d %H:%M:%S%.f %Y")
                .map_err(|e| e.to_string())
                .and_then(|n| local(n, tz)),
            TimeParser::Auto(tz) => rfc3339(v, tz).or_else(|_| unix(v, 1)),
        }
    }
}

fn rfc3339(v: &str, tz: &Tz) -> Result<EventTime, String> {
    if let Ok(d) = DateTime::parse_from_rfc3339(v) {
        return Ok(to_event(d.with_timezone(&Utc)));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(v, f) {
            return local(n, tz);
        }
    }
    Err("not an RFC 3339 time".into())
}

fn unix(v: &str, per_sec: u64) -> Result<EventTime, String> {
    if let Ok(i) = v.parse::<i64>() {
        let d = per_sec as i64;
        return Ok(EventTime::new(
            i.div_euclid(d),
            (i.rem_euclid(d) as u64 * (1_000_000_000 / per_sec)) as u32,
        ));
    }
    let f: f64 = v.parse().map_err(|_| "not a number".to_string())?;
    EventTime::from_f64(f / per_sec as f64).ok_or_else(|| "not a finite time".into())
}

/// Syslog-style times have no year: take this year, or last year when that
/// would put the time more than a day in the future (December's lines read in
/// January).
fn with_current_year(v: &str, fmt: &str, tz: &Tz) -> Result<EventTime, String> {
    let now = Utc::now().with_timezone(tz);
    let parse = |year: i32| {
        NaiveDateTime::parse_from_str(&format!("{year} {v}"), &format!("%Y {fmt}"))
            .map_err(|e| e.to_string())
            .and_then(|n| local(n, tz))
    };
    let t = parse(now.year())?;
    if t.secs > now.timestamp() + 86_400 {
        parse(now.year() - 1)
    } else {
        Ok(t)
    }
}
