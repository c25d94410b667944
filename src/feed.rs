//! Feeds: event sources inside the hub process. `--stdin` turns every line read on standard
//! input into one event, in order.
//!
//! ```
//! use ssehub::{feed::{lines, LineTemplate}, Hub, Topic};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let hub = Hub::builder().build();
//! let template = LineTemplate { topic: Topic::new("log").unwrap(), name: None };
//! let published = lines(&b"one\ntwo\r\n"[..], hub.clone(), template).await.unwrap();
//! assert_eq!(published, 2);
//! # });
//! ```

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::event::{encoded_len_max, Event, Topic};
use crate::hub::{Hub, PublishError};

/// What every line becomes: an event on this topic, with this name.
#[derive(Debug, Clone)]
pub struct LineTemplate {
    /// The topic (`--stdin-topic`).
    pub topic: Topic,
    /// The event name (`--stdin-event`), checked already.
    pub name: Option<String>,
}

/// Publishes every line of `reader` (without its LF or CRLF) until end of input or until the hub
/// closes. A line that is not UTF-8 is published with replacement characters and a warning; a
/// line larger than the hub's `history_bytes` is left out, with a warning. Returns how many
/// lines were published.
///
/// # Errors
///
/// The [`PublishError`] that stopped it (other than the hub closing, which ends it with `Ok`).
///
/// ```
/// use ssehub::feed::{lines, LineTemplate};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let hub = ssehub::Hub::builder().build();
/// let template = LineTemplate { topic: ssehub::Topic::new("log")?, name: None };
/// let published = lines(&b"one\ntwo\r\n"[..], hub.clone(), template).await?;
/// assert_eq!(published, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn lines<R>(mut reader: R, hub: Hub, template: LineTemplate) -> Result<u64, PublishError>
where
    R: AsyncBufRead + Unpin,
{
    let mut published = 0;
    let mut read = 0;
    let mut batch: Vec<Event> = Vec::new();
    // A batch is kept within --history-bytes (the hub refuses a larger one); a line that would
    // pass it starts the next batch.
    let limit = usize::try_from(hub.config().history_bytes).unwrap_or(usize::MAX);
    // Counted at the hub's longest id (a cluster's are longer), so no batch is refused whole.
    let id_len = hub.longest_id_len();
    let mut carried: Option<Event> = None;
    loop {
        // Wait for one line, then take every complete line already read, so a fast producer
        // is published in batches (one store commit each with --data-dir) instead of line by
        // line.
        let mut ended = false;
        let mut bytes = 0;
        if let Some(event) = carried.take() {
            bytes = encoded_len_max(id_len, &event);
            batch.push(event);
        }
        loop {
            if !batch.is_empty() && (batch.len() == MAX_BATCH || !line_ready(&mut reader)) {
                break;
            }
            let Some(text) = next_line(&mut reader, read).await else {
                ended = true;
                break;
            };
            read += 1;
            let event = template.event(text)?;
            let size = encoded_len_max(id_len, &event);
            if !batch.is_empty() && bytes.saturating_add(size) > limit {
                carried = Some(event);
                break;
            }
            bytes += size;
            batch.push(event);
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            match hub.publish(std::mem::take(&mut batch)).await {
                Ok(_) => published += n,
                Err(PublishError::Closing) => return Ok(published),
                // Only a line alone gets here (batches are kept within the limit).
                Err(e @ PublishError::TooLarge { .. }) => {
                    let line = read - u64::from(carried.is_some());
                    tracing::warn!("stdin: line {line} not published: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        if ended {
            return Ok(published);
        }
    }
}

/// A complete line is already read and waiting.
fn line_ready<R: AsyncBufRead + Unpin>(reader: &mut R) -> bool {
    matches!(
        futures_util::FutureExt::now_or_never(reader.fill_buf()),
        Some(Ok(buf)) if buf.contains(&b'\n')
    )
}

/// Lines published together at most.
const MAX_BATCH: usize = 1024;

impl LineTemplate {
    fn event(&self, text: String) -> Result<Event, PublishError> {
        let mut event = Event::new(text).with_checked_topic(self.topic.clone());
        if let Some(name) = &self.name {
            event = event.with_name(name)?;
        }
        Ok(event)
    }
}

/// The next line without its LF or CRLF; `None` at the end of input or on a read error.
async fn next_line<R>(reader: &mut R, before: u64) -> Option<String>
where
    R: AsyncBufRead + Unpin,
{
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line).await {
        Ok(0) => return None,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!("stdin: {e}; no more lines will be published");
            return None;
        }
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Some(match String::from_utf8(line) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(
                "stdin: line {} is not valid UTF-8; publishing it with replacement characters",
                before + 1
            );
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines arriving together are split into batches the history can hold (a batch too large
    /// would be refused, and its lines lost); a line it cannot hold alone is left out, and the
    /// lines around it are published.
    #[tokio::test]
    async fn batches_stay_within_the_history_bytes() {
        let hub = Hub::builder().history_bytes(400).build();
        let mut input = String::new();
        for i in 0..10 {
            input.push_str(&format!("{i}{}\n", "x".repeat(99)));
        }
        input.push_str(&format!("{}\nlast\n", "y".repeat(1000)));
        let template = LineTemplate {
            topic: Topic::new("log").unwrap(),
            name: None,
        };
        let published = lines(input.as_bytes(), hub.clone(), template)
            .await
            .unwrap();
        assert_eq!(published, 11);
        assert_eq!(hub.next_seq(), 12);
        assert!(hub.stats().history_bytes <= 400);
    }
}
