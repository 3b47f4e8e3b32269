//! The typed values of config keys: sizes (`"8MiB"`), durations (`"30s"`),
//! socket addresses and their bounded forms, each parsed with a message that
//! says what is expected.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The largest size a config may give: 1 PiB. Sizes are added and
/// multiplied by the engine (limits, budgets), so they stay far from
/// `u64::MAX`.
pub const MAX_BYTE_SIZE: u64 = 1 << 50;

/// The longest duration a config may give: 100 years. Durations are added to
/// clocks (deadlines, retry times), so they stay far from overflowing them.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

const SIZE_HINT: &str = "a size like \"8MiB\", \"512KB\" or a whole number of bytes";
const DURATION_HINT: &str =
    "a duration like \"500ms\", \"30s\", \"5m\", \"72h\" or a number of seconds";

/// A size in bytes, written as a human string (`"8MiB"`, `"512KB"`, `"1GiB"`)
/// or a plain integer; at most [`MAX_BYTE_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() || num.starts_with('.') && num.len() == 1 {
            return Err(format!("`{s}` is not a size: expected {SIZE_HINT}"));
        }
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size: expected {SIZE_HINT}"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            other => {
                return Err(format!(
                "unknown size unit `{other}` in `{s}` (use B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"
            ))
            }
        };
        let bytes = n * mult as f64;
        if !bytes.is_finite() || bytes > MAX_BYTE_SIZE as f64 {
            return Err(format!("`{s}` is too large: sizes go up to 1PiB"));
        }
        Ok(ByteSize(bytes as u64))
    }

    fn from_int(n: i128) -> Result<Self, String> {
        if n < 0 {
            return Err(format!("{n} is negative: expected {SIZE_HINT}"));
        }
        if n > MAX_BYTE_SIZE as i128 {
            return Err(format!(
                "{n} is too large: sizes go up to 1PiB ({MAX_BYTE_SIZE})"
            ));
        }
        Ok(ByteSize(n as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE_HINT)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                ByteSize::from_int(n as i128).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                ByteSize::from_int(n as i128).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "{n} is not a whole number of bytes: expected {SIZE_HINT}"
                )))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ByteSize, E> {
                ByteSize::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written as a human string: `"500ms"`, `"30s"`, `"5m"`,
/// `"72h"`, `"1d"`, combinations like `"1m30s"`, or a number of seconds; at
/// most [`MAX_DURATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

fn checked_secs(secs: f64, s: &str) -> Result<Duration, String> {
    if secs.is_nan() || secs < 0.0 {
        return Err(format!("`{s}` is not a duration: expected {DURATION_HINT}"));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(format!(
            "`{s}` is too long: durations go up to 100 years (\"876000h\")"
        ));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("`{s}` is not a duration: expected {DURATION_HINT}"))
}

impl HumanDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err(format!("empty duration: expected {DURATION_HINT}"));
        }
        if let Ok(secs) = t.parse::<f64>() {
            // a bare number is seconds ("inf" and "nan" parse as f64 too)
            return checked_secs(secs, s).map(HumanDuration);
        }
        let mut total = Duration::ZERO;
        let mut rest = t;
        while !rest.is_empty() {
            let split = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| format!("`{s}` lacks a unit (ms, s, m, h, d)"))?;
            let (num, tail) = rest.split_at(split);
            let n: f64 = num
                .parse()
                .map_err(|_| format!("`{s}` is not a duration: expected {DURATION_HINT}"))?;
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, after) = tail.split_at(unit_len);
            let secs = match unit.trim() {
                "ns" => n / 1e9,
                "us" | "µs" => n / 1e6,
                "ms" => n / 1e3,
                "s" | "sec" => n,
                "m" | "min" => n * 60.0,
                "h" => n * 3600.0,
                "d" => n * 86400.0,
                other => {
                    return Err(format!(
                        "unknown duration unit `{other}` in `{s}` (use ms, s, m, h, d)"
                    ))
                }
            };
            total = total
                .checked_add(checked_secs(secs, s)?)
                .filter(|d| *d <= MAX_DURATION)
                .ok_or_else(|| {
                    format!("`{s}` is too long: durations go up to 100 years (\"876000h\")")
                })?;
            rest = after;
        }
        Ok(HumanDuration(total))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(DURATION_HINT)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<HumanDuration, E> {
                checked_secs(n as f64, &n.to_string())
                    .map(HumanDuration)
                    .map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<HumanDuration, E> {
                checked_secs(n as f64, &n.to_string())
                    .map(HumanDuration)
                    .map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<HumanDuration, E> {
                checked_secs(n, &n.to_string())
                    .map(HumanDuration)
                    .map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                HumanDuration::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A socket address, `"127.0.0.1:24224"` or `"[::1]:9880"` (an IP and a
/// port, no host name: a listener binds to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address(pub std::net::SocketAddr);

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Address).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{s}` is not an address like \"127.0.0.1:24224\" or \"[::1]:9880\" (an IP and a port)"
            ))
        })
    }
}

/// A [`HumanDuration`] longer than zero (a timeout or an interval: zero
/// would mean "never wait" or "spin") and at most `MAX_SECS` seconds (by
/// default the 100 years any duration may be).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NonZeroDuration<const MAX_SECS: u64 = { MAX_DURATION.as_secs() }>(pub Duration);

impl<'de, const MAX_SECS: u64> Deserialize<'de> for NonZeroDuration<MAX_SECS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let HumanDuration(t) = HumanDuration::deserialize(d)?;
        if t.is_zero() || t > Duration::from_secs(MAX_SECS) {
            let range = if MAX_SECS < MAX_DURATION.as_secs() {
                format!("more than 0 and at most {}", human_secs(MAX_SECS))
            } else {
                "more than 0".to_string()
            };
            return Err(serde::de::Error::custom(format!(
                "must be {range}: expected {DURATION_HINT}"
            )));
        }
        Ok(NonZeroDuration(t))
    }
}

/// A [`ByteSize`] more than zero and at most `MAX` bytes (a limit: zero
/// would refuse everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SizeLimit<const MAX: u64>(pub u64);

impl<'de, const MAX: u64> Deserialize<'de> for SizeLimit<MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ByteSize(n) = ByteSize::deserialize(d)?;
        if n == 0 || n > MAX {
            return Err(serde::de::Error::custom(format!(
                "must be more than 0 and at most {}",
                human_size(MAX)
            )));
        }
        Ok(SizeLimit(n))
    }
}

/// `1MiB`, `1GiB`, ... for a whole number of binary units, else bytes.
pub fn human_size(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

/// `365d`, `2h`, `90s`: the largest whole unit.
fn human_secs(n: u64) -> String {
    for (secs, unit) in [(86_400, "d"), (3_600, "h"), (60, "m")] {
        if n >= secs && n.is_multiple_of(secs) {
            return format!("{}{unit}", n / secs);
        }
    }
    format!("{n}s")
}
