//! Where a request ends on the wire.
//!
//! hyper serves one request at a time on a connection and hands the connection back (see
//! `connection.rs`), so that the next request head is read by us again: a stream that arrives on
//! a kept-alive connection then takes the same path as one on a fresh connection. For that, hyper
//! must be shown exactly one request: its head and its body, and nothing after. This tells how
//! many of the bytes that follow a head still belong to its request.

/// What follows a request head, as far as it belongs to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestBody {
    /// This many bytes are left (`Content-Length`, or 0 without a body).
    Length(u64),
    /// A chunked body, scanned as it passes.
    Chunked(Chunked),
    /// Unknown framing (`CONNECT`, a transfer coding other than chunked, a malformed length):
    /// the rest of the connection belongs to this request, and the connection ends with it.
    /// (An `Upgrade` offer changes nothing: the router never switches protocols, so hyper
    /// frames the request as any other and keeps the connection.)
    Rest,
}

impl RequestBody {
    /// The body framing a request head declares (`headers` as `(name, value)` pairs).
    pub(crate) fn from_head<'a>(
        method: &str,
        headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> RequestBody {
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut other_framing = method.eq_ignore_ascii_case("CONNECT");
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("content-length") {
                let parsed = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match (parsed, length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    // Unreadable or conflicting: hyper refuses the request, then we close.
                    _ => other_framing = true,
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                let last = value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else {
                    other_framing = true;
                }
            }
        }
        match (other_framing, chunked, length) {
            (true, _, _) | (false, true, Some(_)) => RequestBody::Rest,
            (false, true, None) => RequestBody::Chunked(Chunked::default()),
            (false, false, n) => RequestBody::Length(n.unwrap_or(0)),
        }
    }

    /// How many of the leading bytes of `next` belong to the request. Counts them as passed.
    pub(crate) fn take(&mut self, next: &[u8]) -> usize {
        match self {
            RequestBody::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(next.len());
                *left -= n as u64;
                n
            }
            RequestBody::Chunked(chunked) => chunked.take(next),
            RequestBody::Rest => next.len(),
        }
    }

    /// Every byte of the request has passed.
    pub(crate) fn is_done(&self) -> bool {
        match self {
            RequestBody::Length(left) => *left == 0,
            RequestBody::Chunked(chunked) => chunked.state == State::Done,
            RequestBody::Rest => false,
        }
    }
}

/// A chunked body's position: only as much parsing as finding its end needs. A malformed body
/// is passed on whole (hyper refuses it) and the connection ends after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Chunked {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a chunk size: the value so far, and whether a digit was seen.
    Size(u64, bool),
    /// After the size: an extension, up to the line feed.
    Extension(u64),
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: its CR LF.
    DataEnd,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer line: it ends only at CR LF (a bare LF is part of it, as for hyper).
    Trailer,
    /// A CR in a trailer line: its end, if an LF follows.
    TrailerLf,
    /// A CR at the start of a line: the final empty line, if an LF follows.
    FinalLf,
    Done,
    /// Not chunked as we know it: everything belongs to the request.
    Malformed,
}

impl Default for State {
    fn default() -> State {
        State::Size(0, false)
    }
}

impl Chunked {
    fn take(&mut self, next: &[u8]) -> usize {
        let mut i = 0;
        while i < next.len() {
            let byte = next[i];
            self.state = match self.state {
                State::Done => return i,
                State::Malformed => return next.len(),
                State::Data(left) => {
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(next.len() - i);
                    i += n;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    continue;
                }
                State::Size(size, digits) => match (byte as char).to_digit(16) {
                    Some(d) => match size.checked_mul(16) {
                        Some(s) => State::Size(s + u64::from(d), true),
                        None => State::Malformed,
                    },
                    None if !digits => State::Malformed,
                    None if byte == b'\n' => Self::after_size(size),
                    None if matches!(byte, b';' | b' ' | b'\t' | b'\r') => State::Extension(size),
                    None => State::Malformed,
                },
                State::Extension(size) if byte == b'\n' => Self::after_size(size),
                State::Extension(size) => State::Extension(size),
                State::DataEnd => match byte {
                    b'\r' => State::DataEnd,
                    b'\n' => State::Size(0, false),
                    _ => State::Malformed,
                },
                // hyper ends the trailer section only at CR LF CR LF, so must we: ending it at a
                // bare LF would serve what hyper still reads as trailers as a request of its own.
                State::TrailerStart if byte == b'\r' => State::FinalLf,
                State::TrailerStart => State::Trailer,
                State::Trailer if byte == b'\r' => State::TrailerLf,
                State::Trailer => State::Trailer,
                State::TrailerLf if byte == b'\n' => State::TrailerStart,
                State::TrailerLf => State::Malformed,
                State::FinalLf if byte == b'\n' => State::Done,
                State::FinalLf => State::Malformed,
            };
            i += 1;
        }
        if self.state == State::Malformed {
            return next.len();
        }
        i
    }

    fn after_size(size: u64) -> State {
        if size == 0 {
            State::TrailerStart
        } else {
            State::Data(size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(method: &str, headers: &[(&str, &str)]) -> RequestBody {
        RequestBody::from_head(method, headers.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    /// Feeds `wire` in pieces of `step` bytes; returns how many bytes belonged to the request.
    fn consumed(mut b: RequestBody, wire: &[u8], step: usize) -> usize {
        let mut total = 0;
        for piece in wire.chunks(step) {
            let n = b.take(piece);
            total += n;
            if n < piece.len() {
                assert!(b.is_done());
                break;
            }
        }
        total
    }

    #[test]
    fn framing_from_the_head() {
        assert_eq!(body("GET", &[]), RequestBody::Length(0));
        assert_eq!(
            body("POST", &[("Content-Length", " 12 ")]),
            RequestBody::Length(12)
        );
        assert_eq!(
            body("POST", &[("content-length", "3"), ("Content-Length", "3")]),
            RequestBody::Length(3)
        );
        for bad in [
            vec![("content-length", "3"), ("content-length", "4")],
            vec![("content-length", "-1")],
            vec![("transfer-encoding", "gzip")],
            vec![("transfer-encoding", "chunked"), ("content-length", "4")],
        ] {
            assert_eq!(body("POST", &bad), RequestBody::Rest, "{bad:?}");
        }
        assert_eq!(body("CONNECT", &[]), RequestBody::Rest);
        assert_eq!(
            body("GET", &[("Upgrade", "h2c"), ("Connection", "Upgrade")]),
            RequestBody::Length(0)
        );
        assert!(matches!(
            body("POST", &[("Transfer-Encoding", "gzip, chunked")]),
            RequestBody::Chunked(_)
        ));
    }

    #[test]
    fn a_length_ends_where_it_says() {
        let b = RequestBody::Length(5);
        for step in 1..8 {
            assert_eq!(consumed(b.clone(), b"helloGET / HTTP/1.1\r\n", step), 5);
        }
        assert!(RequestBody::Length(0).is_done());
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers() {
        let cases: [(&[u8], usize); 5] = [
            (b"5\r\nhello\r\n0\r\n\r\nNEXT", 15),
            (b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\nNEXT", 36),
            (b"0\r\nExpires: never\r\nX: y\r\n\r\nNEXT", 27),
            // A bare LF in the trailers is part of a trailer line, as hyper reads it.
            (b"0\r\n\nX: y\n\r\n\r\nNEXT", 13),
            (b"fF \r\n", 5),
        ];
        for (wire, end) in cases {
            for step in 1..wire.len() + 1 {
                let b = RequestBody::Chunked(Chunked::default());
                assert_eq!(
                    consumed(b, wire, step),
                    end,
                    "{:?} step {step}",
                    String::from_utf8_lossy(wire)
                );
            }
        }
    }

    #[test]
    fn a_malformed_chunked_body_takes_the_rest() {
        for wire in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"fffffffffffffffff1\r\n",
            b"0\r\nX: y\rz",
        ] {
            let mut b = RequestBody::Chunked(Chunked::default());
            assert_eq!(b.take(wire), wire.len());
            assert_eq!(b.take(b"more"), 4);
            assert!(!b.is_done());
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Feeds `wire` cut at `cuts` (taken modulo its length); checks after each piece that the
        /// body is done exactly once all of its `end` bytes have passed. Returns how many did.
        fn feed(
            mut b: RequestBody,
            wire: &[u8],
            cuts: &[usize],
            end: usize,
        ) -> Result<usize, TestCaseError> {
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.extend([0, wire.len()]);
            points.sort_unstable();
            points.dedup();
            let mut total = 0;
            for piece in points.windows(2).map(|w| &wire[w[0]..w[1]]) {
                let n = b.take(piece);
                prop_assert!(n <= piece.len());
                total += n;
                prop_assert_eq!(b.is_done(), total == end, "after {} bytes", total);
                if n < piece.len() {
                    break;
                }
            }
            prop_assert_eq!(b.take(b"more"), 0, "nothing passes once the body is done");
            Ok(total)
        }

        /// A data byte: any, or one that looks like chunked framing.
        fn data_byte() -> impl Strategy<Value = u8> {
            prop_oneof![any::<u8>(), prop::sample::select(b"0\r\n;: \t".to_vec())]
        }

        /// A byte of a chunk extension or trailer line: anything but CR (which ends the line)
        /// and, in an extension, LF (which hyper refuses there).
        fn line_byte(lf: bool) -> impl Strategy<Value = u8> {
            prop_oneof![any::<u8>(), prop::sample::select(b"\n;=\" :".to_vec())]
                .prop_filter("not a line end", move |&b| b != b'\r' && (lf || b != b'\n'))
        }

        /// A chunk size line for `size` as a sender may write it: hex in either case, leading
        /// zeros, white space after the size, an extension.
        fn size_line() -> impl Strategy<Value = (usize, bool, &'static str, Option<Vec<u8>>)> {
            (
                0usize..3,
                any::<bool>(),
                prop::sample::select(vec!["", " ", "\t", " \t "]),
                prop::option::of(prop::collection::vec(line_byte(false), 0..12)),
            )
        }

        fn write_size(
            wire: &mut Vec<u8>,
            size: usize,
            line: &(usize, bool, &str, Option<Vec<u8>>),
        ) {
            let (zeros, upper, space, ext) = line;
            wire.extend(std::iter::repeat_n(b'0', *zeros));
            let hex = if *upper {
                format!("{size:X}")
            } else {
                format!("{size:x}")
            };
            wire.extend_from_slice(hex.as_bytes());
            wire.extend_from_slice(space.as_bytes());
            if let Some(ext) = ext {
                wire.push(b';');
                wire.extend_from_slice(ext);
            }
            wire.extend_from_slice(b"\r\n");
        }

        /// A valid chunked body (data chunks, the last chunk, trailers, the final CR LF).
        fn chunked_body() -> impl Strategy<Value = Vec<u8>> {
            let chunk = (prop::collection::vec(data_byte(), 1..64), size_line());
            let trailer = (
                any::<bool>(),
                "[A-Za-z-]{1,10}",
                prop::collection::vec(line_byte(true), 0..20),
            );
            (
                prop::collection::vec(chunk, 0..6),
                size_line(),
                prop::collection::vec(trailer, 0..3),
            )
                .prop_map(|(chunks, last, trailers)| {
                    let mut wire = Vec::new();
                    for (data, line) in &chunks {
                        write_size(&mut wire, data.len(), line);
                        wire.extend_from_slice(data);
                        wire.extend_from_slice(b"\r\n");
                    }
                    write_size(&mut wire, 0, &last);
                    for (bare_lf_first, name, value) in &trailers {
                        if *bare_lf_first {
                            wire.push(b'\n');
                        }
                        wire.extend_from_slice(name.as_bytes());
                        wire.extend_from_slice(b": ");
                        wire.extend_from_slice(value);
                        wire.extend_from_slice(b"\r\n");
                    }
                    wire.extend_from_slice(b"\r\n");
                    wire
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn a_chunked_body_ends_exactly_where_it_does(
                body in chunked_body(),
                next in prop::collection::vec(any::<u8>(), 0..40),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
            ) {
                let wire = [&body[..], &next[..]].concat();
                let b = RequestBody::Chunked(Chunked::default());
                prop_assert_eq!(feed(b, &wire, &cuts, body.len())?, body.len());
            }

            #[test]
            fn a_length_ends_exactly_where_it_says(
                len in 0usize..2000,
                next in prop::collection::vec(any::<u8>(), 0..40),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
            ) {
                let wire: Vec<u8> = (0..len).map(|i| i as u8).chain(next).collect();
                let b = RequestBody::Length(len as u64);
                prop_assert_eq!(feed(b, &wire, &cuts, len)?, len);
            }
        }
    }
}
