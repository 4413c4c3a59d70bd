//! Value parsers for the command line: each says what is allowed instead of clap's
//! generic "invalid digit" (and, with `allow_negative_numbers`, instead of "unexpected
//! argument '-1'").

use std::str::FromStr;
use std::time::Duration;

use tracing_subscriber::filter::{Directive, LevelFilter};

/// The levels `--log` takes.
const LEVELS: &str = "off, error, warn, info, debug, trace";

/// `--log`: a level, or comma-separated `target=level` directives (each may also be a level).
///
/// A bare word that is not a level (`bogus`) is refused: `EnvFilter` would take it as a target
/// name and silently log nothing of interest.
pub(crate) fn log_filter(text: &str) -> Result<String, String> {
    let expected = format!("must be a level ({LEVELS}) or directives such as `moorline=debug,warn`");
    if text.trim().is_empty() {
        return Err(expected);
    }
    for directive in text.split(',').map(str::trim) {
        let level = LevelFilter::from_str(directive).is_ok();
        let target_level = directive.contains('=') && Directive::from_str(directive).is_ok();
        if !(level || target_level) {
            return Err(format!("`{directive}` is not valid: {expected}"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(text).map_err(|e| format!("{e}: {expected}"))?;
    Ok(text.to_owned())
}

/// `moorline connect URL`: a `ws://` or `wss://` URL with a host (the client's own check).
pub(crate) fn ws_url(text: &str) -> Result<String, String> {
    moorline_client::connect::check_url(text).map(|_| text.to_owned()).map_err(|e| match e {
        moorline_client::ConfigError::Url { reason, .. } => format!("{reason} (e.g. wss://www.deribit.com/ws/api/v2)"),
        other => other.to_string(),
    })
}

/// `--header 'Name: value'`: split at the first colon, both sides trimmed, and checked as the
/// client's configuration checks them (a valid name and value, not one of the handshake's own).
pub(crate) fn header(text: &str) -> Result<(String, String), String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err("must be `Name: value`".to_owned());
    };
    let (name, value) = (name.trim(), value.trim());
    moorline_client::ClientConfig::builder().header(name, value).build().map_err(|e| e.to_string())?;
    Ok((name.to_owned(), value.to_owned()))
}

/// A port on 127.0.0.1.
pub(crate) fn port(text: &str) -> Result<u16, String> {
    text.trim().parse().map_err(|_| "must be a port number from 0 to 65535 (0 picks a free one)".to_owned())
}

/// A whole number, 0 or more.
pub(crate) fn whole_number(text: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|_| "must be a whole number, 0 or more".to_owned())
}

/// A whole number, 1 or more.
pub(crate) fn positive(text: &str) -> Result<u64, String> {
    match text.trim().parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a whole number, 1 or more".to_owned()),
    }
}

/// A number of seconds, 0 or more, fractions allowed.
pub(crate) fn seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| "must be a number of seconds, 0 or more".to_owned())
}

/// A replay speed: a positive, finite number.
pub(crate) fn speed(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 => Ok(speed),
        _ => Err("must be a positive number (2 is twice as fast, 0.5 half as fast)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters() {
        for ok in ["warn", "TRACE", "off", "moorline=debug", "moorline=debug,warn", "moorline_testkit::ws=trace"] {
            assert_eq!(log_filter(ok).as_deref(), Ok(ok));
        }
        for bad in ["", " ", "bogus", "moorline=loud", "warn,bogus", "="] {
            assert!(log_filter(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(port("8080"), Ok(8080));
        assert!(port("-1").is_err() && port("65536").is_err());
        assert_eq!(whole_number("0"), Ok(0));
        assert!(whole_number("-5").is_err_and(|e| e.contains("0 or more")));
        assert_eq!(positive("3"), Ok(3));
        assert!(positive("0").is_err_and(|e| e.contains("1 or more")) && positive("x").is_err());
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(seconds("-1").is_err() && seconds("NaN").is_err() && seconds("inf").is_err());
        assert_eq!(speed("2"), Ok(2.0));
        assert!(speed("0").is_err() && speed("-2").is_err() && speed("inf").is_err());
    }
}
