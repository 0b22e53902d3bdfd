//! Durations on the command line: `500ms`, `25s`, `5m`, `2h`, or plain seconds.

use std::time::Duration;

/// Parses `500ms`, `25s`, `5m`, `2h` or a plain number of seconds.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration; write e.g. 500ms, 25s, 5m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?}; use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_plain_seconds() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("25").unwrap(), Duration::from_secs(25));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert!(parse("5 parsecs").is_err());
    }
}
