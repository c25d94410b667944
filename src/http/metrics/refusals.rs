//! `ssehub_refusals_total{reason}`: every refusal is counted where it is logged
//! (`ApiError::log`, on axum's path and the fast path alike), by a reason read from its status
//! and, where one status has several causes, its message.
//!
//! The counts are the process's (a static), not one app's: refusals are made in places that
//! hold no app state (a connection's head, before routing), and a process serves one hub.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;

use super::super::ApiError;

/// The reasons, as the label shows them.
const REASONS: [&str; 17] = [
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "too_large",
    "slow_body",
    "unsupported_type",
    "head_too_large",
    "per_ip",
    "waiting_connections",
    "full",
    "shutting_down",
    "templates",
    "store",
    "not_ready",
    "other",
];

static COUNTS: [AtomicU64; REASONS.len()] = [const { AtomicU64::new(0) }; REASONS.len()];

/// Which of [`REASONS`] a refusal is.
fn reason(error: &ApiError) -> &'static str {
    let says = |s: &str| error.reason.contains(s);
    match error.status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::REQUEST_TIMEOUT => "slow_body",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_type",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "head_too_large",
        _ if says("waiting to send a request") => "waiting_connections",
        StatusCode::TOO_MANY_REQUESTS => "per_ip",
        StatusCode::SERVICE_UNAVAILABLE if error.reason.starts_with("not ready") => "not_ready",
        StatusCode::SERVICE_UNAVAILABLE if says("the hub is full") => "full",
        StatusCode::SERVICE_UNAVAILABLE if says("shutting down") => "shutting_down",
        StatusCode::SERVICE_UNAVAILABLE if says("URI templates") => "templates",
        StatusCode::SERVICE_UNAVAILABLE if says("history store") => "store",
        _ => "other",
    }
}

/// Counts a refusal.
pub(crate) fn count(error: &ApiError) {
    let why = reason(error);
    let i = REASONS
        .iter()
        .position(|r| *r == why)
        .unwrap_or(REASONS.len() - 1);
    COUNTS[i].fetch_add(1, Ordering::Relaxed);
}

/// Every reason with its count (zeros too, so a dashboard's series exist from the start).
pub(super) fn counts() -> Vec<(&'static str, u64)> {
    REASONS
        .iter()
        .zip(&COUNTS)
        .map(|(r, c)| (*r, c.load(Ordering::Relaxed)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::subscribe::{refusal, Refusal};
    use crate::http::WhenFull;
    use crate::hub::SubscribeError;

    #[test]
    fn the_hubs_refusals_get_their_reason() {
        let reason_of = |e: SubscribeError| match refusal(e, WhenFull::Status503, 1000) {
            Refusal::Error(e) => reason(&e),
            Refusal::RetryStream(_) => "retry",
        };
        assert_eq!(reason_of(SubscribeError::Full { max: 1 }), "full");
        assert_eq!(reason_of(SubscribeError::Closing), "shutting_down");
        let e = |status, reason: &str| ApiError::new(status, reason);
        assert_eq!(
            reason(&e(
                StatusCode::TOO_MANY_REQUESTS,
                "too many streams from 1.2.3.4"
            )),
            "per_ip"
        );
        assert_eq!(
            reason(&e(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections waiting to send a request; retry later"
            )),
            "waiting_connections"
        );
        assert_eq!(reason(&e(StatusCode::IM_A_TEAPOT, "?")), "other");
        assert!(REASONS.iter().all(|r| *r == "other" || r.len() > 3));
    }
}
