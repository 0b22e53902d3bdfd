//! RFC 3339 timestamps (`2026-11-25T10:00:00.123Z`), checked by hand: the
//! grammar is small, and the browser build should not carry a date library
//! for one check. A property test compares it with the `time` crate.

use crate::{ProtocolError, error::Quoted};

/// Checks that `timestamp` is RFC 3339, e.g. `2026-11-25T10:00:00.123Z`.
pub fn validate_timestamp(timestamp: &str) -> Result<(), ProtocolError> {
    check(timestamp.as_bytes()).map_err(|problem| {
        ProtocolError::invalid(
            "event",
            format!(
                "data.timestamp {} is not RFC 3339 ({problem}); write e.g. 2026-11-25T10:00:00Z",
                Quoted::text(timestamp)
            ),
        )
    })
}

/// Reads the fixed-width parts in order.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn number(&mut self, digits: usize, what: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32, String> {
        let part = self.bytes.get(self.at..self.at + digits).filter(|p| p.iter().all(u8::is_ascii_digit));
        let Some(part) = part else {
            return Err(format!("expected {digits} digits of the {what} at byte {}", self.at));
        };
        let value = part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
        if !range.contains(&value) {
            return Err(format!("{what} {value} out of range at byte {}", self.at));
        }
        self.at += digits;
        Ok(value)
    }

    fn expect(&mut self, wanted: &[u8], what: &str) -> Result<u8, String> {
        match self.bytes.get(self.at) {
            Some(b) if wanted.contains(b) => {
                self.at += 1;
                Ok(*b)
            }
            _ => Err(format!("expected {what} at byte {}", self.at)),
        }
    }
}

fn days_in(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn check(bytes: &[u8]) -> Result<(), String> {
    let mut c = Cursor { bytes, at: 0 };
    let year = c.number(4, "year", 0..=9999)?;
    c.expect(b"-", "'-'")?;
    let month = c.number(2, "month", 1..=12)?;
    c.expect(b"-", "'-'")?;
    let day = c.number(2, "day", 1..=days_in(year, month))?;
    c.expect(b"Tt ", "'T'")?;
    let hour = c.number(2, "hour", 0..=23)?;
    c.expect(b":", "':'")?;
    let minute = c.number(2, "minute", 0..=59)?;
    c.expect(b":", "':'")?;
    let second = c.number(2, "second", 0..=60)?;
    if c.bytes.get(c.at) == Some(&b'.') {
        c.at += 1;
        let digits = c.bytes[c.at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!("expected digits after '.' at byte {}", c.at));
        }
        c.at += digits;
    }
    let offset = match c.expect(b"Zz+-", "'Z' or an offset such as +01:00")? {
        sign @ (b'+' | b'-') => {
            let hours = c.number(2, "offset hour", 0..=23)?;
            c.expect(b":", "':'")?;
            let minutes = (hours * 60 + c.number(2, "offset minute", 0..=59)?) as i32;
            if sign == b'+' { minutes } else { -minutes }
        }
        _ => 0,
    };
    if c.at != bytes.len() {
        return Err(format!("unexpected text at byte {}", c.at));
    }
    if second == 60 && !last_minute_of_a_month_utc(year, month, day, (hour * 60 + minute) as i32 - offset) {
        return Err("second 60 is a leap second only at 23:59 UTC on the last day of a month".into());
    }
    Ok(())
}

/// Whether `minutes` past midnight of the given local date (shifted to UTC,
/// so possibly outside one day) is 23:59 UTC on the last day of a month.
fn last_minute_of_a_month_utc(year: u32, month: u32, day: u32, minutes: i32) -> bool {
    if minutes.rem_euclid(24 * 60) != 23 * 60 + 59 {
        return false;
    }
    let (year, month, day) = match minutes.div_euclid(24 * 60) {
        -1 if day > 1 => (year, month, day - 1),
        -1 if month > 1 => (year, month - 1, days_in(year, month - 1)),
        -1 => (year.saturating_sub(1), 12, 31),
        1 if day < days_in(year, month) => (year, month, day + 1),
        1 if month < 12 => (year, month + 1, 1),
        1 => (year + 1, 1, 1),
        _ => (year, month, day),
    };
    day == days_in(year, month)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_is_wrong_and_where() {
        let problem = |text: &str| validate_timestamp(text).unwrap_err().to_string();
        assert!(problem("2026-13-01T00:00:00Z").contains("month 13 out of range at byte 5"));
        assert!(problem("2026-02-29T00:00:00Z").contains("day 29 out of range at byte 8"));
        assert!(problem("2026-01-01T00:00:00").contains("expected 'Z' or an offset such as +01:00 at byte 19"));
        assert!(problem("2026-01-01T00:00:00.Z").contains("expected digits after '.' at byte 20"));
        assert!(problem("2026-06-30T12:00:60Z").contains("leap second"));
        validate_timestamp("2016-12-31T23:59:60Z").unwrap();
        validate_timestamp("2017-01-01T00:59:60+01:00").unwrap();
        validate_timestamp("2024-02-29T10:00:00.123456789-05:30").unwrap();
    }
}
