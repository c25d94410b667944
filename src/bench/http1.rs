//! Just enough client-side HTTP/1.1 for a load generator: `http://` URLs, requests written by
//! hand, response heads read with httparse, and an incremental body decoder (chunked, sized, or
//! ending at close), so the bench can measure any SSE server.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An `http://host:port/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port`, as connected to and sent in `Host:`.
    pub authority: String,
    /// Path and query.
    pub target: String,
}

impl Url {
    /// Parses an `http://` URL (no TLS, no user info). The port defaults to 80.
    ///
    /// ```
    /// use ssehub::bench::http1::Url;
    /// let u = Url::parse("http://127.0.0.1:8080/events?topic=a").unwrap();
    /// assert_eq!((u.authority.as_str(), u.target.as_str()), ("127.0.0.1:8080", "/events?topic=a"));
    /// ```
    pub fn parse(url: &str) -> Result<Url, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// URLs are supported"))?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Url { authority, target })
    }
}

impl Url {
    /// This URL with every `{topic}` replaced by the topic number.
    pub fn with_topic(&self, topic: usize) -> Url {
        if !self.target.contains("{topic}") {
            return self.clone();
        }
        Url {
            authority: self.authority.clone(),
            target: self.target.replace("{topic}", &topic.to_string()),
        }
    }
}

/// A response head.
#[derive(Debug, Clone)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The media type of `Content-Type`, lowercase and without parameters
    /// (`text/plain; charset=utf-8` is `text/plain`).
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// Whether the server means to keep the connection open after this response (HTTP/1.1
    /// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub fn keeps_connection(&self) -> bool {
        let connection = |token: &str| {
            self.header("connection")
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if self.version >= 1 {
            !connection("close")
        } else {
            connection("keep-alive")
        }
    }

    /// How the body is framed.
    pub fn body_kind(&self) -> Body {
        // These never have a body, whatever their headers say (RFC 9112, section 6.3).
        if matches!(self.status, 100..=199 | 204 | 304) {
            return Body::Sized(0);
        }
        if self
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            Body::chunked()
        } else if let Some(n) = self
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
        {
            Body::Sized(n)
        } else {
            Body::UntilClose
        }
    }
}

/// Reads a response head from `stream` into `buf`; bytes after it stay in `buf`.
pub async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Head> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(buf) {
            Ok(httparse::Status::Complete(n)) => {
                let head = Head {
                    status: response.code.unwrap_or(0),
                    version: response.version.unwrap_or(1),
                    headers: response
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                };
                buf.drain(..n);
                return Ok(head);
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// An incremental body decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// `Content-Length`: this many bytes left.
    Sized(u64),
    /// Everything until the server closes.
    UntilClose,
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Reading the hex size (accumulated so far).
    Size(u64),
    /// Past the size, skipping an extension, up to LF.
    SizeLine(u64),
    /// Inside a chunk: bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailers, until an empty line.
    Trailer {
        /// The current trailer line is empty so far.
        line_empty: bool,
    },
    /// The body ended.
    Done,
}

impl Body {
    /// A chunked decoder at the start.
    pub fn chunked() -> Body {
        Body::Chunked(Chunked::Size(0))
    }

    /// True once the body is complete.
    pub fn is_done(&self) -> bool {
        matches!(self, Body::Chunked(Chunked::Done) | Body::Sized(0))
    }

    /// Decodes `input`, passing each piece of payload to `out`, and returns how many bytes of
    /// `input` belonged to the body: all of them unless the body ended inside `input`, and then
    /// the rest is what the server sent after it (the next response on a kept connection).
    /// Errors on malformed framing.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, &'static str> {
        match self {
            Body::UntilClose => {
                out(input);
                Ok(input.len())
            }
            Body::Sized(left) => {
                let n = (*left).min(input.len() as u64) as usize;
                out(&input[..n]);
                *left -= n as u64;
                Ok(n)
            }
            Body::Chunked(state) => {
                let all = input.len();
                let mut input = input;
                while !input.is_empty() {
                    match *state {
                        Chunked::Size(acc) => {
                            let b = input[0];
                            input = &input[1..];
                            *state = match b {
                                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                                    let digit = (b as char).to_digit(16).unwrap_or(0) as u64;
                                    Chunked::Size(
                                        acc.checked_mul(16).ok_or("chunk size overflow")? + digit,
                                    )
                                }
                                b'\r' | b';' | b' ' | b'\t' => Chunked::SizeLine(acc),
                                b'\n' => Self::after_size(acc),
                                _ => return Err("bad chunk size"),
                            };
                        }
                        Chunked::SizeLine(size) => match input.iter().position(|&b| b == b'\n') {
                            Some(i) => {
                                input = &input[i + 1..];
                                *state = Self::after_size(size);
                            }
                            None => input = &[],
                        },
                        Chunked::Data(left) => {
                            let n = left.min(input.len() as u64) as usize;
                            out(&input[..n]);
                            input = &input[n..];
                            *state = if left == n as u64 {
                                Chunked::DataEnd
                            } else {
                                Chunked::Data(left - n as u64)
                            };
                        }
                        Chunked::DataEnd => {
                            let b = input[0];
                            input = &input[1..];
                            match b {
                                b'\r' => {}
                                b'\n' => *state = Chunked::Size(0),
                                _ => return Err("chunk data not followed by CRLF"),
                            }
                        }
                        Chunked::Trailer { line_empty } => {
                            let b = input[0];
                            input = &input[1..];
                            *state = match b {
                                b'\n' if line_empty => Chunked::Done,
                                b'\n' => Chunked::Trailer { line_empty: true },
                                b'\r' => Chunked::Trailer { line_empty },
                                _ => Chunked::Trailer { line_empty: false },
                            };
                        }
                        Chunked::Done => break,
                    }
                }
                Ok(all - input.len())
            }
        }
    }

    fn after_size(size: u64) -> Chunked {
        if size == 0 {
            Chunked::Trailer { line_empty: true }
        } else {
            Chunked::Data(size)
        }
    }
}

/// Sends a POST and reads the whole answer. Returns its status, and whether the connection can
/// carry another request.
pub async fn post(
    stream: &mut TcpStream,
    url: &Url,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    buf: &mut Vec<u8>,
) -> io::Result<(u16, bool)> {
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{extra_headers}\r\n",
        url.target,
        url.authority,
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    buf.clear();
    let (head, reusable) = read_response(stream, buf).await?;
    Ok((head.status, reusable))
}

/// Sends a plain GET for `target` and reads the whole answer. Returns its head, and whether the
/// connection can carry another request; bytes the server sent after the answer stay in `buf`.
pub async fn get(
    stream: &mut TcpStream,
    authority: &str,
    target: &str,
    buf: &mut Vec<u8>,
) -> io::Result<(Head, bool)> {
    let request = format!("GET {target} HTTP/1.1\r\nhost: {authority}\r\naccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    read_response(stream, buf).await
}

/// Reads one whole response, head and body (sized, chunked, or until the server closes), from
/// `stream`, after the bytes already in `buf`. Returns its head, and whether the connection can
/// carry another request; bytes after the response stay in `buf`.
pub async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(Head, bool)> {
    let head = read_head(stream, buf).await?;
    let mut body = head.body_kind();
    let reusable = body != Body::UntilClose && head.keeps_connection();
    loop {
        let used = body
            .decode(buf, &mut |_| {})
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        buf.drain(..used);
        if body.is_done() {
            return Ok((head, reusable));
        }
        if stream.read_buf(buf).await? == 0 {
            return match body {
                Body::UntilClose => Ok((head, false)),
                _ => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
    }
}

#[cfg(test)]
mod tests;
