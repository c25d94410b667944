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

use crate::event::{Event, Topic};
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
/// closes. A line that is not UTF-8 is published with replacement characters and a warning.
/// Returns how many lines were published.
pub async fn lines<R>(mut reader: R, hub: Hub, template: LineTemplate) -> Result<u64, PublishError>
where
    R: AsyncBufRead + Unpin,
{
    let mut published = 0;
    let mut batch: Vec<Event> = Vec::new();
    loop {
        // Wait for one line, then take every complete line already read, so a fast producer
        // is published in batches (one store commit each with --data-dir) instead of line by
        // line.
        let mut ended = false;
        loop {
            match next_line(&mut reader, published + batch.len() as u64).await {
                Some(text) => batch.push(template.event(text)?),
                None => {
                    ended = true;
                    break;
                }
            }
            let line_ready = matches!(
                futures_util::FutureExt::now_or_never(reader.fill_buf()),
                Some(Ok(buf)) if buf.contains(&b'\n')
            );
            if batch.len() == MAX_BATCH || !line_ready {
                break;
            }
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            match hub.publish(std::mem::take(&mut batch)).await {
                Ok(_) => published += n,
                Err(PublishError::Closing) => return Ok(published),
                Err(e) => return Err(e),
            }
        }
        if ended {
            return Ok(published);
        }
    }
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
