//! Duration values in the config file (`500ms`, `2s`, `1h 30m`), parsed with humantime.

use std::time::Duration;

use humantime::DurationError;

const EXAMPLES: &str = "write e.g. `500ms`, `2s` or `1h 30m`";

/// Parses a human-readable duration; a bare number is rejected because its unit would be a guess.
///
/// The error is a one-line message meant to follow `PATH: `.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("is empty; {EXAMPLES}"));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{t}` has no unit: write `{t}s` or `{t}ms`"));
    }
    // humantime's own messages give byte offsets; name the offending part instead.
    humantime::parse_duration(t).map_err(|e| {
        let why = match e {
            DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => {
                format!("`{value}` has no unit")
            }
            DurationError::UnknownUnit { unit, .. } => format!("unknown unit `{unit}`"),
            DurationError::InvalidCharacter(i) => {
                let c = t.get(i..).and_then(|r| r.chars().next()).unwrap_or(' ');
                format!("unexpected `{c}`")
            }
            DurationError::NumberExpected(0) => "it must start with a number".to_string(),
            DurationError::NumberExpected(i) => {
                format!("expected a number at `{}`", t.get(i..).unwrap_or(t))
            }
            DurationError::NumberOverflow => "too large or too precise".to_string(),
            DurationError::Empty => "empty".to_string(),
        };
        format!("`{t}` is not a duration ({why}); {EXAMPLES}")
    })
}
