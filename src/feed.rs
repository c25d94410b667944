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
    let mut line = Vec::new();
    let mut published = 0;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => return Ok(published),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("stdin: {e}; no more lines will be published");
                return Ok(published);
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let text = match String::from_utf8(std::mem::take(&mut line)) {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(
                    "stdin: line {} is not valid UTF-8; publishing it with replacement characters",
                    published + 1
                );
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        let mut event = Event::new(text).with_checked_topic(template.topic.clone());
        if let Some(name) = &template.name {
            event = event.with_name(name)?;
        }
        match hub.publish(vec![event]).await {
            Ok(_) => published += 1,
            Err(PublishError::Closing) => return Ok(published),
            Err(e) => return Err(e),
        }
    }
}
