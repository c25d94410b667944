//! An event's wire bytes: the WHATWG event-stream encoding, done once per event at publish.

use bytes::{BufMut, Bytes, BytesMut};

use super::Event;

/// Encodes an event with its id as wire bytes. Called once per event, at publish.
pub fn encode(id: &str, event: &Event) -> Bytes {
    // Sized up front: the history counts these bytes, so the buffer must not be twice as big
    // (growing it by doubling would be, for data with many lines).
    let mut out = BytesMut::with_capacity(encoded_len_max(id.len(), event));
    out.put_slice(b"id: ");
    out.put_slice(id.as_bytes());
    out.put_u8(b'\n');
    if let Some(name) = &event.name {
        out.put_slice(b"event: ");
        out.put_slice(name.as_bytes());
        out.put_u8(b'\n');
    }
    if let Some(retry) = event.retry {
        out.put_slice(b"retry: ");
        out.put_slice(retry.to_string().as_bytes());
        out.put_u8(b'\n');
    }
    put_data(&mut out, &event.data);
    out.put_u8(b'\n');
    out.freeze()
}

/// The length of [`encode`]'s output for an id of `id_len` bytes, or a little more (by at most 7
/// bytes per CRLF in the data): one pass over the data to count its line breaks.
pub(crate) fn encoded_len_max(id_len: usize, event: &Event) -> usize {
    // memchr tells fast that there is none (one-line data, the common case); past the first, a
    // plain count beats stopping at every break of data with many short lines.
    let data = event.data.as_bytes();
    let breaks = memchr::memchr2(b'\r', b'\n', data).map_or(0, |first| {
        data[first..]
            .iter()
            .filter(|&&b| b == b'\r' || b == b'\n')
            .count()
    });
    encoded_len_given(id_len, event, breaks)
}

/// At least the length of [`encode`]'s output, without looking at the data: as if every byte
/// of it were a line break.
pub(crate) fn encoded_len_worst(id_len: usize, event: &Event) -> usize {
    encoded_len_given(id_len, event, event.data.len())
}

/// The length of [`encode`]'s output (or a little more) if the data holds `breaks` CRs and LFs.
fn encoded_len_given(id_len: usize, event: &Event, breaks: usize) -> usize {
    let name = event
        .name
        .as_ref()
        .map_or(0, |n| "event: \n".len() + n.len());
    // "retry: " and at most 20 digits.
    let retry = event.retry.map_or(0, |_| 28);
    // Each line break becomes "\ndata: " (7 bytes for 1; a CRLF is counted as two breaks).
    "id: \n".len() + id_len + name + retry + "data: \n\n".len() + event.data.len() + 6 * breaks
}

/// Encodes an event that carries no id, such as the in-band `gap` notice: the client's last
/// event id stays the last real event it saw.
pub fn encode_without_id(name: &str, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(name.len() + data.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_u8(b'\n');
    put_data(&mut out, data);
    out.put_u8(b'\n');
    out.freeze()
}

/// The bytes that open every stream: a comment (so the first bytes go out at once and
/// `EventSource.onopen` fires) and the client's reconnection time.
pub fn stream_prologue(retry_ms: u64) -> Bytes {
    Bytes::from(format!(": ssehub\nretry: {retry_ms}\n\n"))
}

/// A heartbeat: a comment line that keeps proxies and the client from timing out an idle stream.
pub const HEARTBEAT: &[u8] = b": ping\n\n";

/// One `data:` line per line of the data; CRLF, CR and LF each end a line.
fn put_data(out: &mut BytesMut, data: &str) {
    let bytes = data.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                put_line(out, &bytes[start..i]);
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            b'\n' => {
                put_line(out, &bytes[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    put_line(out, &bytes[start..]);
}

fn put_line(out: &mut BytesMut, line: &[u8]) {
    // "data:" then one space, which the client strips; a line that itself starts with a space
    // keeps it because only one is stripped.
    out.put_slice(b"data: ");
    out.put_slice(line);
    out.put_u8(b'\n');
}
