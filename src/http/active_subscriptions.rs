//! Mercure's active subscriptions (presence): each subscription opened on the Mercure front is
//! announced as a private update on `/.well-known/mercure/subscriptions/{topic}/{subscriber}`
//! when it opens and when it closes, and listed by `GET /.well-known/mercure/subscriptions`.
//!
//! Off unless `--mercure-subscriptions` is given (as in the reference hub): every subscription
//! then costs two publishes, one as it opens and one as it closes, per topic selector.
//! The announcements go through [`Hub::publish`] like any event (history, resume, private
//! rights), so a client that missed one resumes and gets it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use super::jwt::{self, SubscribeGrant};
use super::subscribe::StreamRoute;
use super::{ApiError, AppState};
use crate::event::{Event, Topic};
use crate::hub::{Hub, SubscribeRequest};

/// Where subscription topics start.
pub(crate) const PREFIX: &str = "/.well-known/mercure/subscriptions";

/// Everything but RFC 3986's unreserved characters is escaped in a topic's path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The subscriptions open on the Mercure front. Bounded by the hub's slots: one entry per open
/// stream.
pub(crate) struct Registry {
    open: Mutex<BTreeMap<u64, Active>>,
    next_key: AtomicU64,
    /// Announcements, published in the order they are made by one task (so a short stream's
    /// "closed" never goes out before its "opened"). Started with the first announcement.
    announcer: OnceLock<mpsc::UnboundedSender<(Hub, Vec<Event>)>>,
}

#[derive(Clone)]
struct Active {
    subscriber: String,
    selectors: Vec<String>,
    payload: Option<Value>,
}

impl Active {
    /// The subscription's JSON-LD object for one of its selectors.
    fn describe(&self, selector: &str, active: bool) -> Value {
        json!({
            "id": topic_of(selector, &self.subscriber),
            "type": "Subscription",
            "topic": selector,
            "subscriber": self.subscriber,
            "active": active,
            "payload": self.payload,
        })
    }
}

/// The topic a subscription is announced on.
pub(crate) fn topic_of(selector: &str, subscriber: &str) -> String {
    format!(
        "{PREFIX}/{}/{}",
        utf8_percent_encode(selector, SEGMENT),
        utf8_percent_encode(subscriber, SEGMENT)
    )
}

/// A fresh subscriber id, `urn:uuid:` and a random (version 4) UUID, as the reference hub makes.
fn new_subscriber_id() -> String {
    let mut b = [0u8; 16];
    // A failing OS random source only makes ids guessable, not wrong: fall back to the clock.
    if getrandom::fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = nanos.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

/// An announced subscription: dropping it (the stream ended) announces it inactive.
pub(crate) struct Presence {
    registry: Arc<Registry>,
    key: u64,
    hub: Hub,
}

impl Drop for Presence {
    fn drop(&mut self) {
        let Some(active) = self
            .registry
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key)
        else {
            return;
        };
        self.registry.announce(&self.hub, &active, false);
    }
}

impl Registry {
    /// Publishes one private update per selector, in the background and in order: announcing
    /// must not hold up the stream, and a publish that fails (the hub closing) has no one to
    /// tell.
    fn announce(&self, hub: &Hub, active: &Active, open: bool) {
        let events: Vec<Event> = active
            .selectors
            .iter()
            .filter_map(|s| {
                let data = active.describe(s, open).to_string();
                match Event::new(data).with_topic(&topic_of(s, &active.subscriber)) {
                    Ok(event) => Some(event.private()),
                    Err(e) => {
                        tracing::warn!("a subscription cannot be announced: {e}");
                        None
                    }
                }
            })
            .collect();
        if events.is_empty() {
            return;
        }
        let sender = self.announcer.get_or_init(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(Hub, Vec<Event>)>();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    while let Some((hub, events)) = rx.recv().await {
                        if let Err(e) = hub.publish(events).await {
                            tracing::debug!("announcing a subscription: {e}");
                        }
                    }
                });
            }
            tx
        });
        let _ = sender.send((hub.clone(), events));
    }
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            open: Mutex::new(BTreeMap::new()),
            next_key: AtomicU64::new(0),
            announcer: OnceLock::new(),
        }
    }

    /// Records and announces a subscription to `selectors` (as the client wrote them), with its
    /// token's `mercure.payload`. Hold the answer as long as the stream lives.
    pub(crate) fn open(
        self: &Arc<Registry>,
        hub: &Hub,
        selectors: Vec<String>,
        payload: Option<Value>,
    ) -> Presence {
        let active = Active {
            subscriber: new_subscriber_id(),
            selectors,
            payload,
        };
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        // Listed first, then announced: a reader of the API and the announcements misses neither.
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, active.clone());
        self.announce(hub, &active, true);
        Presence {
            registry: self.clone(),
            key,
            hub: hub.clone(),
        }
    }

    /// The open subscriptions' objects (one per selector, oldest first) on `selector` if given,
    /// of `subscriber` if given, that `visible` (the reader's token) lets through by topic.
    pub(crate) fn list(
        &self,
        selector: Option<&str>,
        subscriber: Option<&str>,
        visible: impl Fn(&str) -> bool,
    ) -> Vec<Value> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for active in open.values() {
            if subscriber.is_some_and(|s| s != active.subscriber) {
                continue;
            }
            for s in &active.selectors {
                if selector.is_some_and(|want| want != s) {
                    continue;
                }
                if visible(&topic_of(s, &active.subscriber)) {
                    out.push(active.describe(s, true));
                }
            }
        }
        out
    }
}

/// What a stream about to open on the Mercure front would be announced with (its selectors as
/// written), if `--mercure-subscriptions` is on. Read before subscribing, which takes the
/// request; announced with [`announce_stream`] once the subscription is open.
pub(crate) fn to_announce(
    app: &AppState,
    route: StreamRoute,
    request: &SubscribeRequest,
) -> Option<Vec<String>> {
    if route != StreamRoute::Mercure || !app.config.mercure_subscriptions {
        return None;
    }
    Some(match request.selector_set() {
        Some(set) => set
            .selectors()
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        None => request
            .topic_list()
            .iter()
            .map(|t| t.as_str().to_string())
            .collect(),
    })
}

/// Announces an open stream (see [`to_announce`]). Hold the answer as long as the stream lives.
pub(crate) fn announce_stream(
    app: &AppState,
    selectors: Option<Vec<String>>,
    payload: Option<Value>,
) -> Option<Presence> {
    Some(app.subscriptions.open(&app.hub, selectors?, payload))
}

/// `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`: for a bearer of a
/// subscriber token, the open subscriptions whose topics its `mercure.subscribe` covers.
pub(crate) async fn api(
    State(app): State<AppState>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    // The path as sent, still percent-encoded: a topic is one segment only so.
    let rest = uri.path().strip_prefix(PREFIX).unwrap_or("").to_string();
    let not_found = |reason: &str| ApiError::new(StatusCode::NOT_FOUND, reason).into_response();
    if !app.config.mercure_subscriptions {
        return not_found("active subscriptions are off on this hub (--mercure-subscriptions)");
    }
    let unauthorized = |reason: String| ApiError::new(StatusCode::UNAUTHORIZED, reason);
    let grant = match (&app.config.subscriber_jwt_key, jwt::token(&headers, query.as_deref().unwrap_or(""))) {
        (None, _) => Err(unauthorized(
            "the subscriptions API needs a subscriber key to check tokens (--jwt-key or --subscriber-jwt-key)".into(),
        )),
        (Some(_), None) => Err(unauthorized(
            "the subscriptions API needs a subscriber token whose mercure.subscribe covers the subscriptions' topics".into(),
        )),
        (Some(key), Some(token)) => SubscribeGrant::from_token(key, &token).map_err(unauthorized),
    };
    let allowed = match grant {
        Ok(grant) => grant.private,
        Err(e) => return e.into_response(),
    };
    let visible = |topic: &str| {
        let topic = Topic::new(topic);
        allowed
            .as_ref()
            .zip(topic.ok())
            .is_some_and(|(set, t)| set.matches(&t))
    };
    match answer(&app.subscriptions, &rest, &app.hub.last_event_id(), visible) {
        Ok(Some(json)) => {
            ([("content-type", "application/ld+json")], json.to_string()).into_response()
        }
        Ok(None) => not_found("no such active subscription"),
        Err(reason) => ApiError::bad_request(reason).into_response(),
    }
}

/// The subscriptions API's answer for `path` (after [`PREFIX`]: empty, `/{topic}` or
/// `/{topic}/{subscriber}`, percent-encoded): a collection, or one subscription (`None` if it
/// is not open). `last_event_id` is where a client that read this should resume to miss no
/// change.
pub(crate) fn answer(
    registry: &Registry,
    rest: &str,
    last_event_id: &str,
    visible: impl Fn(&str) -> bool,
) -> Result<Option<Value>, String> {
    let parts: Vec<String> = rest
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| format!("{p:?} is not percent-encoded UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    let (selector, subscriber) = match parts.as_slice() {
        [] => (None, None),
        [t] => (Some(t.as_str()), None),
        [t, s] => (Some(t.as_str()), Some(s.as_str())),
        _ => return Err("expected /subscriptions[/{topic}[/{subscriber}]]".into()),
    };
    let mut found = registry.list(selector, subscriber, visible);
    if subscriber.is_some() {
        let Some(mut one) = found.pop() else {
            return Ok(None);
        };
        one["@context"] = json!("https://mercure.rocks/");
        one["lastEventID"] = json!(last_event_id);
        return Ok(Some(one));
    }
    Ok(Some(json!({
        "@context": "https://mercure.rocks/",
        "id": format!("{PREFIX}{rest}"),
        "type": "Subscriptions",
        "lastEventID": last_event_id,
        "subscriptions": found,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_escape_their_parts_and_ids_are_uuids() {
        let t = topic_of("https://example.com/books/{id}", "urn:uuid:1");
        assert_eq!(
            t,
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D/urn%3Auuid%3A1"
        );
        let id = new_subscriber_id();
        assert_eq!(id.len(), "urn:uuid:".len() + 36, "{id}");
        assert_ne!(id, new_subscriber_id());
    }

    #[tokio::test]
    async fn lists_open_subscriptions_and_forgets_closed_ones() {
        let hub = Hub::builder().build();
        let registry = Arc::new(Registry::new());
        let a = registry.open(&hub, vec!["a".into(), "b".into()], Some(json!({"user": 1})));
        let _c = registry.open(&hub, vec!["c".into()], None);
        let all = answer(&registry, "", "x", |_| true).unwrap().unwrap();
        assert_eq!(all["subscriptions"].as_array().unwrap().len(), 3);
        assert_eq!(all["lastEventID"], "x");
        let on_b = answer(&registry, "/b", "x", |_| true).unwrap().unwrap();
        let subs = on_b["subscriptions"].as_array().unwrap();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0]["payload"]["user"], 1);
        let subscriber = subs[0]["subscriber"].as_str().unwrap().to_string();
        let enc = utf8_percent_encode(&subscriber, SEGMENT).to_string();
        let one = answer(&registry, &format!("/b/{enc}"), "x", |_| true)
            .unwrap()
            .unwrap();
        assert_eq!(one["active"], true);
        assert_eq!(one["@context"], "https://mercure.rocks/");
        // What the reader's token does not cover is left out.
        let hidden = answer(&registry, "", "x", |t| !t.contains("/c/"))
            .unwrap()
            .unwrap();
        assert_eq!(hidden["subscriptions"].as_array().unwrap().len(), 2);
        drop(a);
        let left = answer(&registry, "", "x", |_| true).unwrap().unwrap();
        assert_eq!(left["subscriptions"].as_array().unwrap().len(), 1);
        assert_eq!(
            answer(&registry, &format!("/b/{enc}"), "x", |_| true).unwrap(),
            None
        );
        assert!(answer(&registry, "/a/b/c", "x", |_| true).is_err());
        // Opening and closing were announced as private events.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(hub.stats().published_total, 5);
    }
}
