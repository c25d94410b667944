//! Query strings, decoded strictly: a bad percent escape or invalid UTF-8 is an error, not a
//! silent replacement character in a topic name.

/// A query string that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad query string: {0}")]
pub struct QueryError(&'static str);

/// Splits `a=1&b=2&b=3` into decoded pairs, in order (`+` is a space).
///
/// ```
/// use ssehub::http::query::parse_query;
/// let pairs = parse_query("topic=a%2Fb&topic=c+d&flag").unwrap();
/// assert_eq!(pairs, [("topic".into(), "a/b".into()), ("topic".into(), "c d".into()), ("flag".into(), "".into())]);
/// ```
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Result<String, QueryError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    // from_str_radix alone would take "+1".
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(QueryError("a '%' is not followed by two hex digits"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| QueryError("a value is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding() {
        assert_eq!(parse_query("").unwrap(), vec![]);
        assert_eq!(
            parse_query("a=%C3%BC").unwrap(),
            vec![("a".into(), "ü".into())]
        );
        assert!(parse_query("a=%FF").is_err());
        assert!(parse_query("a=%4").is_err());
        assert!(parse_query("a=%zz").is_err());
        assert!(parse_query("a=%+1").is_err());
        assert_eq!(
            parse_query("a=x=y").unwrap(),
            vec![("a".into(), "x=y".into())]
        );
    }
}
