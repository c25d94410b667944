//! Reading a subscription as events rather than wire bytes: what
//! [`Subscription::recv`](super::Subscription::recv) and
//! [`Subscription::into_stream`](super::Subscription::into_stream) hand out.
//!
//! The log keeps each event once, encoded (`id:`, `event:`, `data:` lines), and the server
//! writes those bytes as they are. An in-process reader gets them decoded with the crate's own
//! event-stream [`Parser`]: the same reading a browser's `EventSource` does, at the reader's
//! cost, so publishing and the server's path stay "encode once" and pay nothing for it.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::Stream;

use super::subscription::{End, Subscription};
use crate::event::Topic;
use crate::id::IdMatch;

use crate::parse::{FrameRef, Parser};

/// One thing a subscription received: an event, or the notice that events were lost.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// A published event.
    Event(ReceivedEvent),
    /// Events owed to this subscription left the history before it could have them (the wire's
    /// `gap` event). What follows is the first event still retained.
    Gap(Gap),
}

/// A published event, as a subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// Its id (`<epoch>-<seq>`, or the one its publisher chose): give it to [`SubscribeRequest::resume_after`] to resume after
    /// it.
    ///
    /// [`SubscribeRequest::resume_after`]: super::SubscribeRequest::resume_after
    pub id: String,
    /// Its name, as `EventSource` sees it: the published name, or `message` if it had none.
    pub name: String,
    /// Its data, lines joined with `\n` (a CRLF or CR published in the data arrives as `\n`).
    pub data: String,
    /// The topics of this subscription the event was published on (an event on several of them
    /// is received once). Empty when the hub no longer knows: on a subscription to several
    /// topics, an event read back from the durable store after it left memory, or one evicted
    /// in the instant between being read and being decoded. A subscription to one topic always
    /// names it.
    pub topics: Vec<Topic>,
}

/// The notice that events were lost (the `gap` event of the stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Why: `evicted` (they left the history), `other-history` (the resume id is from another
    /// history of this hub, or another hub), or `unknown-id` (the resume id was never given).
    /// The last two replay every retained event.
    pub reason: String,
    /// For `evicted`: the id of the first event replayed after the gap, if any.
    pub resumed_at: Option<String>,
    /// The whole notice as sent on the wire (a JSON object).
    pub data: String,
}

impl Gap {
    fn from_data(data: &str) -> Gap {
        let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
        let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_string);
        Gap {
            reason: text("reason").unwrap_or_default(),
            resumed_at: text("resumedAt"),
            data: data.to_string(),
        }
    }
}

/// Decodes what a subscription hands out into [`Received`] items, kept until taken.
#[derive(Debug, Default)]
pub(super) struct Decoder {
    parser: Parser,
    /// Decoded and not yet handed out, oldest first.
    pending: VecDeque<Received>,
}

impl Decoder {
    pub(super) fn new() -> Decoder {
        Decoder {
            parser: Parser::new(),
            pending: VecDeque::new(),
        }
    }

    pub(super) fn pop(&mut self) -> Option<Received> {
        self.pending.pop_front()
    }

    /// Decodes one batch. Each chunk is whole events (or the stream's opening, a heartbeat or a
    /// `gap` notice); only `gap` notices are encoded without an `id:` line, so a chunk that does
    /// not start with one holds no published event.
    /// `topics_of` names the topics (of those the subscription asked for) of the event with
    /// an id.
    pub(super) fn decode(&mut self, chunks: &[Bytes], topics_of: &dyn Fn(&str) -> Vec<Topic>) {
        for chunk in chunks {
            let published = chunk.starts_with(b"id: ");
            let pending = &mut self.pending;
            self.parser.feed_ref(chunk, &mut |frame| {
                let FrameRef::Event { event, data, id } = frame else {
                    return;
                };
                if !published {
                    if event == "gap" {
                        pending.push_back(Received::Gap(Gap::from_data(data)));
                    }
                    return;
                }
                let topics = topics_of(id);
                pending.push_back(Received::Event(ReceivedEvent {
                    id: id.to_string(),
                    name: event.to_string(),
                    data: data.to_string(),
                    topics,
                }));
            });
        }
    }
}

/// Reading a subscription decoded (the server's path reads wire bytes with
/// [`Subscription::next`]).
impl Subscription {
    /// The next event (or `gap` notice), decoded: the in-process reader's way to read a
    /// subscription. See [`into_stream`](Self::into_stream) for the same as a `Stream`, and the
    /// [`Hub`](super::Hub) documentation for gaps and slow subscribers.
    ///
    /// # Errors
    ///
    /// The subscription ended: [`End::Lagged`] (it fell too far behind: subscribe again with
    /// [`SubscribeRequest::resume_after`](super::SubscribeRequest::resume_after) the last id received), [`End::Shutdown`] (after every
    /// event published before [`Hub::close`](super::Hub::close) was received), or
    /// [`End::History`] (the durable store could not be read for a replay), [`End::Expired`]
    /// (its token's `exp` passed: subscribe again with a fresh token), [`End::MaxAge`] (it
    /// reached [`HubConfig::max_stream_age`](super::HubConfig::max_stream_age): resume with the
    /// last id), or [`End::HistoryLost`]
    /// (a cluster's Redis lost its data: subscribe again after the last id, and get a gap). Later calls may
    /// return the same error again; stop at the first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes (in a `select!`, say), no event
    /// is lost; the next call returns it.
    ///
    /// # Examples
    ///
    /// ```
    /// use ssehub::{Event, Hub, Received, SubscribeRequest};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::builder().build();
    /// let mut sub = hub.subscribe(SubscribeRequest::topics(["news"])?)?;
    /// let id = hub.publish_one(Event::new("one\ntwo").with_topic("news")?).await?;
    /// match sub.recv().await? {
    ///     Received::Event(e) => {
    ///         assert_eq!((e.id, e.name.as_str(), e.data.as_str()), (id, "message", "one\ntwo"));
    ///         assert_eq!(e.topics[0].as_str(), "news");
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Result<Received, End> {
        let mut out = Vec::new();
        loop {
            if let Some(item) = self.decoder.as_mut().and_then(|d| d.pop()) {
                return Ok(item);
            }
            out.clear();
            self.next(&mut out).await?;
            // Decoded at once, with no await in between: a cancelled call loses nothing.
            let Subscription {
                hub,
                names,
                topics: rings,
                access,
                decoder,
                ..
            } = self;
            let topics_of = |id: &str| -> Vec<Topic> {
                if let [one] = names.as_slice() {
                    return vec![one.clone()];
                }
                let seq = match hub.epoch.parse(id) {
                    IdMatch::Current(seq) => Some(seq),
                    _ => hub.log.seq_of(id),
                };
                let Some(seq) = seq else {
                    return Vec::new();
                };
                // In the subscription's order for its topics (the rings that hold the event);
                // in the event's for selectors (the ring of every event has its topics).
                if names.is_empty() {
                    hub.log.meta_of(seq).map_or_else(Vec::new, |meta| {
                        meta.topics
                            .iter()
                            .filter(|t| access.selects(t))
                            .cloned()
                            .collect()
                    })
                } else {
                    names
                        .iter()
                        .zip(rings.iter())
                        .filter(|(_, ring)| ring.holds(seq))
                        .map(|(name, _)| name.clone())
                        .collect()
                }
            };
            decoder
                .get_or_insert_with(|| Box::new(Decoder::new()))
                .decode(&out, &topics_of);
        }
    }

    /// This subscription as a [`Stream`](futures_util::Stream) of decoded events and `gap`
    /// notices: [`recv`](Self::recv) until it fails, then that error once, then the end.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use ssehub::{End, Event, Hub, Received, SubscribeRequest};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::builder().build();
    /// let mut events = hub.subscribe(SubscribeRequest::topics(["a", "b"])?)?.into_stream();
    /// hub.publish_one(Event::new("up").with_topic("b")?.with_name("status")?).await?;
    /// hub.close();
    /// match events.next().await {
    ///     Some(Ok(Received::Event(e))) => assert_eq!((e.name.as_str(), e.topics[0].as_str()), ("status", "b")),
    ///     other => panic!("{other:?}"),
    /// }
    /// assert_eq!(events.next().await, Some(Err(End::Shutdown)));
    /// assert_eq!(events.next().await, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_stream(self) -> Events {
        Events::new(Box::pin(futures_util::stream::unfold(
            Some(self),
            |sub| async move {
                let mut sub = sub?;
                match sub.recv().await {
                    Ok(item) => Some((Ok(item), Some(sub))),
                    Err(end) => Some((Err(end), None)),
                }
            },
        )))
    }
}

/// A [`Subscription`](super::Subscription) as a [`Stream`] of [`Received`] items: what
/// [`Subscription::into_stream`](super::Subscription::into_stream) returns.
///
/// It yields `Ok` items until the subscription ends, then one `Err` saying why
/// ([`End::Lagged`], [`End::Shutdown`], [`End::History`], [`End::Expired`],
/// [`End::HistoryLost`], [`End::MaxAge`]), then `None`. Dropping it frees the
/// client slot.
pub struct Events {
    inner: Pin<Box<dyn Stream<Item = Result<Received, End>> + Send>>,
}

impl Events {
    pub(super) fn new(inner: Pin<Box<dyn Stream<Item = Result<Received, End>> + Send>>) -> Events {
        Events { inner }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Stream for Events {
    type Item = Result<Received, End>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}
