//! A minimal RFC 3339 timestamp parser (to Unix milliseconds) for recorded sessions.

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`t`, `T` or a space between
/// date and time; `z` or `Z`) into milliseconds since the Unix epoch.
pub(crate) fn parse_ms(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| num_str(s.get(from..to)?);
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut fraction = 0.0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        fraction = format!("0.{}", &after_dot[..digits]).parse::<f64>().ok()?;
        rest = &after_dot[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let h: i64 = num_str(rest.get(1..3)?)?;
            let m: i64 = num_str(rest.get(4..6)?)?;
            sign * (h * 60 + m)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Some(secs as f64 * 1000.0 + fraction * 1000.0)
}

fn num_str(part: &str) -> Option<i64> {
    if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().ok() } else { None }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn parses_utc_offsets_and_fractions() {
        assert_eq!(parse_ms("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_ms("2024-03-01T12:00:00.250Z"), Some(1_709_294_400_250.0));
        assert_eq!(parse_ms("2024-03-01T13:00:00.250+01:00"), Some(1_709_294_400_250.0));
        assert_eq!(parse_ms("2024-03-01 11:30:00-00:30"), Some(1_709_294_400_000.0));
        assert_eq!(parse_ms("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_ms("2024-03-01T00:00:00"), None);
        assert_eq!(parse_ms("garbage"), None);
    }
}
