//! Parsed header fields into an [`http::HeaderMap`]: for a response's head and for the
//! trailers of a chunked body alike (so neither decoder imports the other).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::error::{DecodeError, snippet};

/// Convert parsed fields into a header map (shared with trailer parsing).
pub(super) fn header_map(fields: &[httparse::Header<'_>]) -> Result<HeaderMap, DecodeError> {
    let too_many = || DecodeError::TooManyHeaders { limit: fields.len() };
    let mut map = HeaderMap::try_with_capacity(fields.len()).map_err(|_| too_many())?;
    for field in fields {
        let bad =
            || DecodeError::InvalidHeader { snippet: snippet(&[field.name.as_bytes(), b": ", field.value].concat()) };
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| bad())?;
        map.try_append(name, value).map_err(|_| too_many())?;
    }
    Ok(map)
}
