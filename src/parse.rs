//! An incremental parser for `text/event-stream`, following the WHATWG HTML rules
//! ("Interpreting an event stream"). Feed it bytes as they arrive, split anywhere; it yields
//! what a browser's `EventSource` would dispatch, plus comments and `retry:` changes.
//!
//! ```
//! use ssehub::parse::{Frame, Parser};
//!
//! let mut parser = Parser::new();
//! let mut frames = Vec::new();
//! parser.feed(b"id: 7\nevent: status\nda", &mut |f| frames.push(f));
//! parser.feed(b"ta: up\r\n\r\n", &mut |f| frames.push(f));
//! match &frames[0] {
//!     Frame::Event(e) => {
//!         assert_eq!((e.event.as_str(), e.data.as_str(), e.id.as_str()), ("status", "up", "7"))
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

/// A dispatched event, as `EventSource` would present it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    /// The event type: the `event:` field, or `message`.
    pub event: String,
    /// The data, lines joined with LF.
    pub data: String,
    /// The last event id in force when the event was dispatched.
    pub id: String,
}

/// One thing the stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An event was dispatched.
    Event(ParsedEvent),
    /// A comment line (text after the colon), such as a heartbeat.
    Comment(String),
    /// A valid `retry:` field set the reconnection time (milliseconds).
    Retry(u64),
}

/// One thing the stream said, borrowed from the parser (no allocation per event): what
/// [`Parser::feed_ref`] hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRef<'a> {
    /// An event was dispatched.
    Event {
        /// The event type: the `event:` field, or `message`.
        event: &'a str,
        /// The data, lines joined with LF.
        data: &'a str,
        /// The last event id in force.
        id: &'a str,
    },
    /// A comment line.
    Comment(&'a str),
    /// A valid `retry:` field.
    Retry(u64),
}

impl FrameRef<'_> {
    /// An owned copy.
    pub fn to_owned(self) -> Frame {
        match self {
            FrameRef::Event { event, data, id } => Frame::Event(ParsedEvent {
                event: event.to_string(),
                data: data.to_string(),
                id: id.to_string(),
            }),
            FrameRef::Comment(c) => Frame::Comment(c.to_string()),
            FrameRef::Retry(ms) => Frame::Retry(ms),
        }
    }
}

/// The parser state. See the module documentation.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended in CR: a LF at the start of the next one belongs to it.
    after_cr: bool,
    /// Still at the very start of the stream (a UTF-8 BOM there is skipped).
    at_start: bool,
    data: String,
    event: String,
    last_id: String,
    /// A `data:` field was seen since the last dispatch (the data buffer is not empty).
    has_data: bool,
}

impl Parser {
    /// A parser at the start of a stream (example in the [module documentation](self)).
    pub fn new() -> Parser {
        Parser {
            at_start: true,
            ..Parser::default()
        }
    }

    /// The last event id seen (what `Last-Event-ID` would carry on reconnect).
    ///
    /// ```
    /// let mut parser = ssehub::parse::Parser::new();
    /// parser.feed(b"id: 7\ndata: x\n\n", &mut |_| {});
    /// assert_eq!(parser.last_event_id(), "7");
    /// ```
    pub fn last_event_id(&self) -> &str {
        &self.last_id
    }

    /// Feeds the next bytes of the stream, split anywhere; calls `out` for each frame completed
    /// by them (example in the [module documentation](self)).
    pub fn feed(&mut self, chunk: &[u8], out: &mut dyn FnMut(Frame)) {
        self.feed_ref(chunk, &mut |f| out(f.to_owned()))
    }

    /// Like [`feed`](Self::feed), lending each frame instead of allocating it.
    ///
    /// ```
    /// use ssehub::parse::{FrameRef, Parser};
    /// let mut data = Vec::new();
    /// Parser::new().feed_ref(b"data: a\ndata: b\n\n", &mut |f| {
    ///     if let FrameRef::Event { data: d, .. } = f {
    ///         data.push(d.to_string());
    ///     }
    /// });
    /// assert_eq!(data, ["a\nb"]);
    /// ```
    pub fn feed_ref(&mut self, mut chunk: &[u8], out: &mut dyn FnMut(FrameRef<'_>)) {
        if self.at_start && !chunk.is_empty() {
            let bom = [0xEF, 0xBB, 0xBF];
            let have = self.line.len();
            // The BOM may itself be split across chunks: gather up to three bytes first.
            let need = (3 - have).min(chunk.len());
            self.line.extend_from_slice(&chunk[..need]);
            chunk = &chunk[need..];
            if self.line.len() < 3 && bom.starts_with(&self.line) {
                return;
            }
            self.at_start = false;
            let pending = std::mem::take(&mut self.line);
            let rest = if pending.starts_with(&bom) {
                &pending[3..]
            } else {
                &pending[..]
            };
            self.feed_lines(rest, out);
        }
        self.feed_lines(chunk, out);
    }

    fn feed_lines(&mut self, mut chunk: &[u8], out: &mut dyn FnMut(FrameRef<'_>)) {
        if self.after_cr && !chunk.is_empty() {
            // The CR that ended the last chunk and this LF are one line end.
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(i) = memchr::memchr2(b'\n', b'\r', chunk) {
            if self.line.is_empty() {
                // The common case: a whole line inside this chunk, read in place.
                self.process_line(&chunk[..i], out);
            } else {
                self.line.extend_from_slice(&chunk[..i]);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, out);
                self.line = line;
                self.line.clear();
            }
            let ended_by_cr = chunk[i] == b'\r';
            chunk = &chunk[i + 1..];
            if ended_by_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.line.extend_from_slice(chunk);
    }

    fn process_line(&mut self, line: &[u8], out: &mut dyn FnMut(FrameRef<'_>)) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        // Strict decoding first (fast); replacement characters only for a broken line.
        let line = match std::str::from_utf8(line) {
            Ok(line) => std::borrow::Cow::Borrowed(line),
            Err(_) => String::from_utf8_lossy(line),
        };
        if let Some(comment) = line.strip_prefix(':') {
            out(FrameRef::Comment(comment));
            return;
        }
        let (field, value) = match line.find(':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            // An id holding NUL is ignored, as the spec says.
            "id" if !value.contains('\0') => {
                self.last_id.clear();
                self.last_id.push_str(value);
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    out(FrameRef::Retry(ms));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut dyn FnMut(FrameRef<'_>)) {
        if self.has_data {
            self.has_data = false;
            // The data buffer always ends with the LF its last line added.
            let data = &self.data[..self.data.len() - 1];
            let event = if self.event.is_empty() {
                "message"
            } else {
                &self.event
            };
            out(FrameRef::Event {
                event,
                data,
                id: &self.last_id,
            });
        }
        self.data.clear();
        self.event.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Vec<Frame> {
        let mut p = Parser::new();
        let mut v = Vec::new();
        p.feed(input, &mut |f| v.push(f));
        v
    }

    fn parse_split(input: &[u8]) -> Vec<Frame> {
        let mut p = Parser::new();
        let mut v = Vec::new();
        for b in input {
            p.feed(std::slice::from_ref(b), &mut |f| v.push(f));
        }
        v
    }

    fn ev(event: &str, data: &str, id: &str) -> Frame {
        Frame::Event(ParsedEvent {
            event: event.into(),
            data: data.into(),
            id: id.into(),
        })
    }

    #[test]
    fn whatwg_examples() {
        // The spec's own examples.
        let s = b"data: YHOO\ndata: +2\ndata: 10\n\n";
        assert_eq!(parse_all(s), vec![ev("message", "YHOO\n+2\n10", "")]);
        let s = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n";
        assert_eq!(
            parse_all(s),
            vec![
                Frame::Comment(" test stream".into()),
                ev("message", "first event", "1"),
                ev("message", "second event", ""),
                ev("message", " third event", ""),
            ]
        );
        let s = b"data\n\ndata\ndata\n\ndata:";
        assert_eq!(
            parse_all(s),
            vec![ev("message", "", ""), ev("message", "\n", "")]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let s = "\u{feff}retry: 100\r\nevent: a\r\ndata: x\r\rdata: ü\r\n\r\nid: 5\ndata: y\n\n";
        let whole = parse_all(s.as_bytes());
        assert_eq!(
            whole,
            vec![
                Frame::Retry(100),
                ev("a", "x", ""),
                ev("message", "ü", ""),
                ev("message", "y", "5")
            ]
        );
        assert_eq!(parse_split(s.as_bytes()), whole);
        for cut in 0..s.len() {
            let mut p = Parser::new();
            let mut v = Vec::new();
            p.feed(&s.as_bytes()[..cut], &mut |f| v.push(f));
            p.feed(&s.as_bytes()[cut..], &mut |f| v.push(f));
            assert_eq!(v, whole, "cut at {cut}");
        }
    }

    #[test]
    fn round_trips_our_encoding() {
        use crate::event::{encode, Event};
        for data in ["", "a", "a\nb", "a\r\nb\rc", "\n", " lead", "ü✓"] {
            let e = Event::new(data).with_name("n").unwrap();
            let frames = parse_all(&encode("x-1", &e));
            let want = data.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(frames, vec![ev("n", &want, "x-1")]);
        }
    }

    #[test]
    fn ignores_bad_retry_and_nul_ids() {
        assert_eq!(
            parse_all(b"retry: 1x\nid: a\0b\ndata: z\n\n"),
            vec![ev("message", "z", "")]
        );
    }
}
