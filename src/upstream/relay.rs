//! One relay task: connect, publish what comes, wait, connect again; one connection at a time.

use std::sync::Arc;

use super::state::{event_json, State};
use super::{Upstream, UpstreamOptions};
use crate::client::source::{LastId, Outcome, Reconnect, Stream};
use crate::event::Event;
use crate::hub::{Hub, PublishError};
use crate::parse::{Frame, ParsedEvent};

/// The hub is closing: the relay stops.
struct Closing;

/// Why relaying a chunk stopped.
enum Stop {
    /// The hub is closing.
    Closing,
    /// The hub could not take events for now (its store failed, Redis down): the connection
    /// is dropped and resumed from the last event the hub took, so that an upstream with
    /// history sends the rest again instead of the relay dropping it.
    Refused {
        /// The upstream id of the last event the hub took, if one of the chunk was.
        taken: Option<String>,
        why: String,
    },
}

/// Relays `up` into the hub until the hub closes.
pub(super) async fn run(hub: Hub, up: Upstream, options: UpstreamOptions, state: Arc<State>) {
    let mut last = LastId::new(None);
    let mut reconnect = Reconnect::new();
    // What the topic's subscribers were last told (nothing yet).
    let mut told: Option<bool> = None;
    loop {
        state.attempt();
        let outcome = match Stream::open(&up.url, None, last.id.as_deref()).await {
            Ok(mut stream) => {
                last.reconnected();
                state.set_connected(true);
                if tell(&hub, &up, &state, &mut told).await.is_err() {
                    return;
                }
                tracing::info!("upstream {up}: connected");
                let outcome = relay(
                    &hub,
                    &up,
                    options,
                    &state,
                    &mut stream,
                    &mut last,
                    &mut reconnect,
                );
                let outcome = match outcome.await {
                    Ok(outcome) => outcome,
                    Err(Closing) => return,
                };
                // Closed before the wait, so that two connections never overlap.
                drop(stream);
                outcome
            }
            Err(outcome) => outcome,
        };
        state.set_connected(false);
        let why = match &outcome {
            Outcome::Ended => "the stream ended".to_string(),
            Outcome::Failed(why) | Outcome::Busy(why, _) | Outcome::Refused(why) => why.clone(),
            Outcome::Done => "204 No Content".to_string(),
        };
        state.set_error(Some(why.clone()));
        // A refusal may be a device still starting, or a URL fixed on the other side: keep
        // trying, backing off.
        let outcome = match outcome {
            Outcome::Done | Outcome::Refused(_) => Outcome::Failed(why.clone()),
            other => other,
        };
        let wait = reconnect.wait(&outcome).unwrap_or(reconnect.retry);
        tracing::warn!(
            "upstream {up}: {why}; again in {}",
            crate::client::secs(wait)
        );
        if tell(&hub, &up, &state, &mut told).await.is_err() {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Publishes the `upstream` event when the connection state changed since it was last told.
async fn tell(
    hub: &Hub,
    up: &Upstream,
    state: &State,
    told: &mut Option<bool>,
) -> Result<(), Closing> {
    let status = state.status();
    if *told == Some(status.connected) {
        return Ok(());
    }
    *told = Some(status.connected);
    let event = Event::new(event_json(&status)).with_checked_topic(up.topic.clone());
    let Ok(event) = event.with_name("upstream") else {
        return Ok(());
    };
    match hub.publish_one(event).await {
        Err(PublishError::Closing) => Err(Closing),
        Err(e) => {
            tracing::warn!("upstream {up}: its state not published: {e}");
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

/// Publishes the stream's events until it ends.
async fn relay(
    hub: &Hub,
    up: &Upstream,
    options: UpstreamOptions,
    state: &State,
    stream: &mut Stream,
    last: &mut LastId,
    reconnect: &mut Reconnect,
) -> Result<Outcome, Closing> {
    let mut frames = Vec::new();
    // A `retry:` goes out with the next event, as the upstream sent it.
    let mut retry: Option<u64> = None;
    loop {
        if let Err(outcome) = stream
            .read(Some(options.idle_timeout), &up.url, &mut frames)
            .await
        {
            return Ok(outcome);
        }
        // The id to resume from if the hub takes none of this chunk.
        let before = last.id.clone();
        let mut batch = Vec::new();
        for frame in frames.drain(..) {
            match frame {
                Frame::Event(event) => {
                    if last.is_repeat(&event.id) {
                        continue;
                    }
                    if let Some(hub_event) = hub_event(up, &event, retry.take()) {
                        batch.push((hub_event, event.id));
                    }
                }
                Frame::Retry(ms) => {
                    reconnect.retry = std::time::Duration::from_millis(ms);
                    retry = Some(ms);
                }
                Frame::Comment(_) => {}
            }
        }
        match publish(hub, up, state, batch).await {
            Ok(()) => {}
            Err(Stop::Closing) => return Err(Closing),
            Err(Stop::Refused { taken, why }) => {
                last.id = taken.or(before).filter(|id| !id.is_empty());
                return Ok(Outcome::Failed(format!(
                    "the hub did not take its events: {why}"
                )));
            }
        }
    }
}

/// The hub's event for an upstream one: its data, name and `retry`, in `up`'s topic, with an
/// id the hub gives (never the upstream's: see the module documentation).
fn hub_event(up: &Upstream, parsed: &ParsedEvent, retry: Option<u64>) -> Option<Event> {
    let mut event = Event::new(parsed.data.as_str()).with_checked_topic(up.topic.clone());
    if parsed.event != "message" {
        event = match event.with_name(&parsed.event) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!("upstream {up}: an event left out: {e}");
                return None;
            }
        };
    }
    Some(match retry {
        Some(ms) => event.with_retry(ms),
        None => event,
    })
}

/// Publishes a chunk's events together; one by one if the hub refuses the batch (so one
/// event the hub cannot take, too large say, loses only itself, with a warning). Stops at the
/// first event the hub cannot take for now ([`PublishError::Store`]), saying which was the last
/// it took.
async fn publish(
    hub: &Hub,
    up: &Upstream,
    state: &State,
    batch: Vec<(Event, String)>,
) -> Result<(), Stop> {
    if batch.is_empty() {
        return Ok(());
    }
    let n = batch.len() as u64;
    let events = batch.iter().map(|(event, _)| event.clone()).collect();
    match hub.publish(events).await {
        Ok(_) => {
            state.relayed(n);
            return Ok(());
        }
        Err(PublishError::Closing) => return Err(Stop::Closing),
        Err(PublishError::Store(e)) => {
            return Err(Stop::Refused {
                taken: None,
                why: e.to_string(),
            })
        }
        Err(_) => {}
    }
    let mut taken = None;
    for (event, id) in batch {
        match hub.publish_one(event).await {
            Ok(_) => state.relayed(1),
            Err(PublishError::Closing) => return Err(Stop::Closing),
            Err(PublishError::Store(e)) => {
                return Err(Stop::Refused {
                    taken,
                    why: e.to_string(),
                })
            }
            Err(e) => tracing::warn!("upstream {up}: an event left out: {e}"),
        }
        taken = Some(id);
    }
    Ok(())
}
