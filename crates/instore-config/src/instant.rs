//! Instants as people type them: RFC 3339 timestamps, plain dates, and "how long ago".
//!
//! Tools accept the same spellings everywhere (CLI filters, the HTTP API's query parameters):
//!
//! | input | instant |
//! |---|---|
//! | `2026-11-21T06:00:00Z`, `2026-11-21T08:00:00.5+02:00`, `2026-11-21 06:00:00` | that instant (no offset: UTC) |
//! | `2026-11-21` | midnight UTC at the start of that day |
//! | `now` | now |
//! | `1h ago`, `7d ago`, `90m ago` | now minus that duration (humantime units) |

use instore::Timestamp;

/// Parses an instant in any of the spellings of the module docs, judging `now` and `ago` against
/// `now`. The error says what was expected.
pub fn parse_instant(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let s = text.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(ago) = s.strip_suffix("ago") {
        return humantime::parse_duration(ago.trim())
            .map(|d| now.minus(d))
            .map_err(|e| {
                format!("'{text}' is not a duration ago ({e}); write it like '1h ago' or '7d ago'")
            });
    }
    parse_rfc3339(s).ok_or_else(|| {
        format!(
            "'{text}' is not a date or time; write an RFC 3339 timestamp (2026-11-21T06:00:00Z), \
             a date (2026-11-21, midnight UTC) or a time ago ('1h ago')"
        )
    })
}

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 timestamp: `T` or a space between date and
/// time, optional seconds and fraction (to the microsecond; finer digits are cut), `Z`, an offset
/// `±HH:MM`, or none (UTC). What [`Timestamp`]'s `Display` prints parses back to the same instant.
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let s = text.trim().as_bytes();
    let (year, month, day) = date(s.get(..10)?)?;
    let days = days_from_civil(year, month, day);
    let mut micros = days.checked_mul(86_400_000_000)?;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(Timestamp::from_micros(micros));
    }
    if !matches!(rest[0], b'T' | b't' | b' ') {
        return None;
    }
    let rest = &rest[1..];
    let hour = number(rest.get(0..2)?)?;
    if rest.get(2) != Some(&b':') {
        return None;
    }
    let minute = number(rest.get(3..5)?)?;
    let mut at = 5;
    let mut second = 0;
    let mut fraction = 0i64;
    if rest.get(at) == Some(&b':') {
        second = number(rest.get(at + 1..at + 3)?)?;
        at += 3;
        if rest.get(at) == Some(&b'.') {
            at += 1;
            let start = at;
            let mut scale = 100_000i64;
            while let Some(d) = rest.get(at).filter(|c| c.is_ascii_digit()) {
                fraction += i64::from(d - b'0') * scale;
                scale /= 10;
                at += 1;
            }
            if at == start {
                return None;
            }
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let offset_minutes = match &rest[at..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let minutes = number(&[*h1, *h2])? * 60 + number(&[*m1, *m2])?;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    let of_day = (hour * 3600 + minute * 60 + second - offset_minutes * 60) * 1_000_000;
    micros = micros.checked_add(of_day)?.checked_add(fraction)?;
    Some(Timestamp::from_micros(micros))
}

fn date(s: &[u8]) -> Option<(i64, i64, i64)> {
    if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let (year, month, day) = (number(&s[0..4])?, number(&s[5..7])?, number(&s[8..10])?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days_in_month)
        .contains(&day)
        .then_some((year, month, day))
}

fn number(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> String {
        parse_rfc3339(s).map(|t| t.to_string()).unwrap_or_default()
    }

    #[test]
    fn rfc3339_dates_and_offsets_parse() {
        assert_eq!(at("2026-11-21"), "2026-11-21T00:00:00.000000Z");
        assert_eq!(at("2026-11-21T06:00:00Z"), "2026-11-21T06:00:00.000000Z");
        assert_eq!(at("2026-11-21 06:00"), "2026-11-21T06:00:00.000000Z");
        assert_eq!(
            at("2026-11-21T08:00:00.25+02:00"),
            "2026-11-21T06:00:00.250000Z"
        );
        assert_eq!(
            at("2026-11-21T00:30:00-01:00"),
            "2026-11-21T01:30:00.000000Z"
        );
        assert_eq!(
            at("1969-12-31T23:59:59.999999Z"),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(at("2024-02-29"), "2024-02-29T00:00:00.000000Z");
    }

    #[test]
    fn printed_timestamps_parse_back() {
        for micros in [0, 1, -1, 1_795_000_000_123_456, -86_400_000_001] {
            let t = Timestamp::from_micros(micros);
            assert_eq!(parse_rfc3339(&t.to_string()), Some(t), "{t}");
        }
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-02-30",
            "2023-02-29",
            "21/11/2026",
            "2026-11-21T25:00",
            "2026-11-21T06",
            "2026-11-21T06:00:00.",
            "2026-11-21T06:00:00+2",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn now_and_ago_are_relative() {
        let now = Timestamp::from_micros(10_000_000_000);
        assert_eq!(parse_instant("now", now), Ok(now));
        assert_eq!(
            parse_instant("1h ago", now),
            Ok(Timestamp::from_micros(10_000_000_000 - 3_600_000_000))
        );
        let err = parse_instant("soon ago", now).unwrap_err();
        assert!(err.contains("'1h ago'"), "{err}");
        let err = parse_instant("tomorrow", now).unwrap_err();
        assert!(
            err.contains("RFC 3339") && err.contains("'tomorrow'"),
            "{err}"
        );
    }
}
