//! Why a stream ended.

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum End {
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    Shutdown,
    /// The subscriber fell too far behind; it should resume with its last event id.
    #[error("the subscriber fell too far behind")]
    Lagged,
    /// The history store could not be read for a replay; the client may retry.
    #[error("the history store could not be read")]
    History,
    /// The subscriber's token expired ([`SubscribeRequest::expires_at`](crate::hub::SubscribeRequest::expires_at)).
    #[error("the subscriber's token expired")]
    Expired,
    /// The cluster's history was lost (Redis restarted without its data); a resume with the
    /// last id gets a `gap` (`other-history`), then the new history.
    #[error("the cluster's history was lost")]
    HistoryLost,
    /// The stream reached its maximum age ([`HubConfig::max_stream_age`](crate::hub::HubConfig::max_stream_age)):
    /// it resumes with its last event id, perhaps on another hub.
    #[error("the stream reached its maximum age")]
    MaxAge,
}
