//! Durations as users write them in manifests: `30s`, `5m`, `1h30m`.

use std::borrow::Cow;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The pattern the API server enforces; every string it admits parses with [`DurationString::to_duration`].
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// The longest duration any field takes (a year): longer ones are refused by the API server and
/// by [`parse_duration`], so no deadline computed from one can overflow a timestamp.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The API server's form of [`MAX_DURATION`], for its CEL rule.
const MAX_DURATION_TEXT: &str = "8760h";

/// A duration written as a string of number-unit pairs (`ms`, `s`, `m`, `h`), such as `90s` or `1h30m`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DurationString(pub String);

impl DurationString {
    pub fn to_duration(&self) -> Result<Duration, InvalidDuration> {
        parse_duration(&self.0)
    }
}

impl From<&str> for DurationString {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidDuration {
    #[error("`{0}` is not a duration; write number-unit pairs such as 30s, 5m or 1h30m")]
    Malformed(String),
    #[error("`{0}` is longer than the longest duration Sluice takes ({MAX_DURATION_TEXT}); write {MAX_DURATION_TEXT} or less")]
    TooLong(String),
}

/// Parses `1h30m`-style strings. Accepts exactly what [`DURATION_PATTERN`] admits.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration::Malformed(text.to_string());
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
        if digits == 0 {
            return Err(invalid());
        }
        // All digits: a number that does not parse is too large.
        let number: u64 = rest[..digits].parse().map_err(|_| InvalidDuration::TooLong(text.to_string()))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        let too_long = || InvalidDuration::TooLong(text.to_string());
        total = u32::try_from(number)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .and_then(|d| total.checked_add(d))
            .filter(|d| *d <= MAX_DURATION)
            .ok_or_else(too_long)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Formats a duration the way manifests write it, for messages and timelines.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 {
        return format!("{}ms", duration.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

impl JsonSchema for DurationString {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let rule = format!("duration(self) <= duration('{MAX_DURATION_TEXT}')");
        let message = format!("a duration may be at most {MAX_DURATION_TEXT} (a year)");
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
            "x-kubernetes-validations": [{"rule": rule, "message": message}],
            "description": "A duration such as 30s, 5m or 1h30m (units: ms, s, m, h), at most 8760h."
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn refuses_what_the_pattern_refuses() {
        for bad in ["", "5", "m", "5 m", "5min", "-5s", "1.5s", "5d"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn refuses_durations_longer_than_a_year() {
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for long in ["8761h", "100000000h", "99999999999999999999h", "8760h1ms"] {
            assert_eq!(parse_duration(long), Err(InvalidDuration::TooLong(long.into())), "{long}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["1h30m", "5m", "45s", "2h5s", "250ms"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(format_duration(parsed), text);
        }
    }
}
