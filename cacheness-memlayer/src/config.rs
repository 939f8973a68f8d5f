//! The layer's configuration: capacity, TTL and how often to ask the backend
//! whether anything changed elsewhere.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::error::MemLayerError;

/// Entries held by default (the seed's `memory_cache_maxsize`).
pub const DEFAULT_CAPACITY_ENTRIES: u64 = 1_000;
/// How long a copy is served from memory by default (the seed's
/// `memory_cache_ttl_seconds`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// How much the layer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capacity {
    /// At most this many entries, whatever their size.
    Entries(u64),
    /// At most about this many bytes, each entry weighed by its size in memory
    /// (inline value, strings, parameters and metadata included).
    Bytes(u64),
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity::Entries(DEFAULT_CAPACITY_ENTRIES)
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capacity::Entries(entries) => write!(f, "{entries} entries"),
            Capacity::Bytes(bytes) => write!(f, "{bytes} bytes"),
        }
    }
}

/// Configuration of a [`MemLayer`](crate::MemLayer).
///
/// Deserializes from a config file with every field optional, and rejects fields
/// it does not know, such as the seed's `policy = "lru"`: quick_cache's policy is
/// not configurable (see the crate docs for what it does instead).
///
/// ```
/// use std::time::Duration;
/// use cacheness_memlayer::{Capacity, MemLayerConfig};
///
/// let config: MemLayerConfig =
///     serde_json::from_str(r#"{ "capacity": "64 MiB", "ttl": "5m" }"#)?;
/// assert_eq!(config.capacity, Capacity::Bytes(64 << 20));
/// assert_eq!(config.ttl, Duration::from_secs(300));
///
/// let error = serde_json::from_str::<MemLayerConfig>(r#"{ "policy": "lru" }"#).unwrap_err();
/// assert!(error.to_string().contains("unknown field `policy`"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemLayerConfig {
    /// Whether the layer holds anything (default true); when false every call
    /// goes straight to the backend.
    pub enabled: bool,
    /// How much the layer holds (default 1 000 entries). In a config file: an
    /// integer or `"<n> entries"` for entries, `"<n> B"`, `"<n> KiB"`, `"<n> MB"`...
    /// for bytes.
    pub capacity: Capacity,
    /// A copy older than this (since it was read from the backend) is read again
    /// (default 300 s). In a config file: seconds as an integer, or a string with a
    /// unit (`"250ms"`, `"30s"`, `"5m"`, `"1h"`).
    #[serde(deserialize_with = "deserialize_duration")]
    pub ttl: Duration,
    /// How long the layer trusts its copies before asking the backend again
    /// whether another process changed anything (default 0: before every read).
    /// Same format as `ttl`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub check_interval: Duration,
}

impl Default for MemLayerConfig {
    fn default() -> Self {
        MemLayerConfig {
            enabled: true,
            capacity: Capacity::default(),
            ttl: DEFAULT_TTL,
            check_interval: Duration::ZERO,
        }
    }
}

impl MemLayerConfig {
    /// The defaults: enabled, 1 000 entries, 300 s TTL, a check before every read.
    pub fn new() -> Self {
        MemLayerConfig::default()
    }

    /// Turns the layer on or off.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets the capacity.
    pub fn capacity(mut self, capacity: Capacity) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the TTL of copies held in memory.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the interval between checks for changes made elsewhere.
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// Checks the values make sense; the error names the field.
    pub fn validate(&self) -> Result<(), MemLayerError> {
        let invalid = |field, reason: &str| MemLayerError::InvalidConfig {
            field,
            reason: reason.to_owned(),
        };
        match self.capacity {
            Capacity::Entries(0) | Capacity::Bytes(0) => {
                return Err(invalid(
                    "capacity",
                    "must be greater than zero (set enabled = false to turn the layer off)",
                ));
            }
            _ => {}
        }
        if self.ttl.is_zero() {
            return Err(invalid(
                "ttl",
                "must be greater than zero (set enabled = false to turn the layer off)",
            ));
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Capacity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CapacityVisitor;

        impl Visitor<'_> for CapacityVisitor {
            type Value = Capacity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a number of entries, or a size such as "64 MiB""#)
            }

            fn visit_u64<E: de::Error>(self, entries: u64) -> Result<Capacity, E> {
                Ok(Capacity::Entries(entries))
            }

            fn visit_i64<E: de::Error>(self, entries: i64) -> Result<Capacity, E> {
                u64::try_from(entries)
                    .map(Capacity::Entries)
                    .map_err(|_| E::custom(format!("capacity {entries} is negative")))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Capacity, E> {
                parse_capacity(text).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(CapacityVisitor)
    }
}

/// Parses `"1000"`, `"1000 entries"`, `"512 B"`, `"64 KiB"`, `"1.5 GB"`...
pub fn parse_capacity(text: &str) -> Result<Capacity, String> {
    let (number, unit) = split_number(text);
    let unit_lower = unit.to_ascii_lowercase();
    let multiplier: f64 = match unit_lower.as_str() {
        "" | "entries" | "entry" => {
            return number
                .parse::<u64>()
                .map(Capacity::Entries)
                .map_err(|_| format!("capacity `{text}` is not a whole number of entries"));
        }
        "b" | "bytes" => 1.0,
        "kb" => 1e3,
        "kib" | "k" => 1024.0,
        "mb" => 1e6,
        "mib" | "m" => 1024.0 * 1024.0,
        "gb" => 1e9,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "capacity `{text}` has unknown unit `{unit}` (use entries, B, KB, KiB, MB, MiB, GB or GiB)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("capacity `{text}` does not start with a number"))?;
    let bytes = value * multiplier;
    if !(bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64) {
        return Err(format!("capacity `{text}` is out of range"));
    }
    Ok(Capacity::Bytes(bytes as u64))
}

fn deserialize_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"seconds, or a duration such as "250ms", "30s", "5m" or "1h""#)
        }

        fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(seconds))
        }

        fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Duration, E> {
            u64::try_from(seconds)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("duration {seconds} is negative")))
        }

        fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(seconds).map_err(|_| {
                E::custom(format!(
                    "duration {seconds} is not a valid number of seconds"
                ))
            })
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            parse_duration(text).map_err(E::custom)
        }
    }

    deserializer.deserialize_any(DurationVisitor)
}

/// Parses `"300"` (seconds), `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"1.5s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text);
    let seconds_per_unit = match unit {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "duration `{text}` has unknown unit `{unit}` (use ms, s, m or h)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("duration `{text}` does not start with a number"))?;
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("duration `{text}` is out of range"))
}

/// Splits `" 64 MiB "` into `("64", "MiB")`.
fn split_number(text: &str) -> (&str, &str) {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (text[..split].trim(), text[split..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_parse_as_entries_or_bytes() {
        assert_eq!(parse_capacity("1000"), Ok(Capacity::Entries(1000)));
        assert_eq!(parse_capacity(" 10 entries "), Ok(Capacity::Entries(10)));
        assert_eq!(parse_capacity("512 B"), Ok(Capacity::Bytes(512)));
        assert_eq!(parse_capacity("64KiB"), Ok(Capacity::Bytes(64 * 1024)));
        assert_eq!(parse_capacity("2 MB"), Ok(Capacity::Bytes(2_000_000)));
        assert_eq!(parse_capacity("1.5 GiB"), Ok(Capacity::Bytes(3 << 29)));
        assert!(parse_capacity("1.5 entries").is_err());
        assert!(parse_capacity("10 parsecs").is_err());
        assert!(parse_capacity("many").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5 s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn config_defaults_match_the_seed() {
        let config: MemLayerConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, MemLayerConfig::default());
        assert!(config.enabled);
        assert_eq!(config.capacity, Capacity::Entries(1000));
        assert_eq!(config.ttl, Duration::from_secs(300));
        assert_eq!(config.check_interval, Duration::ZERO);
    }

    #[test]
    fn config_reads_every_field() {
        let config: MemLayerConfig = serde_json::from_str(
            r#"{ "enabled": false, "capacity": 50, "ttl": 10, "check_interval": "100ms" }"#,
        )
        .unwrap();
        assert_eq!(
            config,
            MemLayerConfig::new()
                .enabled(false)
                .capacity(Capacity::Entries(50))
                .ttl(Duration::from_secs(10))
                .check_interval(Duration::from_millis(100))
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected_with_a_clear_error() {
        let error = serde_json::from_str::<MemLayerConfig>(r#"{ "policy": "lru" }"#).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `policy`"),
            "{error}"
        );
        let error =
            serde_json::from_str::<MemLayerConfig>(r#"{ "capacity": "9 furlongs" }"#).unwrap_err();
        assert!(
            error.to_string().contains("unknown unit `furlongs`"),
            "{error}"
        );
        let error = serde_json::from_str::<MemLayerConfig>(r#"{ "ttl": -1 }"#).unwrap_err();
        assert!(error.to_string().contains("negative"), "{error}");
    }

    #[test]
    fn zero_capacity_and_ttl_fail_validation_naming_the_field() {
        let error = MemLayerConfig::new()
            .capacity(Capacity::Entries(0))
            .validate()
            .unwrap_err();
        assert!(error.to_string().contains("`capacity`"), "{error}");
        let error = MemLayerConfig::new()
            .ttl(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(error.to_string().contains("`ttl`"), "{error}");
        assert!(MemLayerConfig::new().validate().is_ok());
    }
}
