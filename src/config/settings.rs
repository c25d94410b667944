//! From flags to settings: what `ssehub serve`'s arguments make of the hub, its history store
//! and its HTTP server.

use std::sync::Arc;
use std::time::Duration;

use super::ServeArgs;
use crate::http::{HttpConfig, JwtAlg, JwtKey, WhenFull};
use crate::hub::HubConfig;
use crate::store::{Memory, Store, StoreError};

impl ServeArgs {
    /// The hub's settings.
    pub fn hub_config(&self) -> HubConfig {
        HubConfig {
            max_clients: self.max_clients as usize,
            history: self.history as usize,
            history_bytes: self.history_bytes,
            memory_history: self.memory_history as usize,
            history_age: self.history_age,
            heartbeat: (self.heartbeat > 0).then(|| Duration::from_secs(self.heartbeat)),
            retry_ms: self.retry,
            max_backlog_bytes: self.max_backlog,
            max_topics_per_client: self.max_topics_per_client as usize,
            max_topics_per_event: self.max_topics_per_event as usize,
            batch_window: Duration::from_millis(self.batch_window),
            max_stream_age: self.ops.max_stream_age.0,
        }
    }

    /// The history store: on disk in --data-dir, or memory. Fails, naming the path, if the data
    /// dir cannot be used.
    pub fn history_store(&self) -> Result<Arc<dyn Store>, StoreError> {
        let Some(dir) = &self.data_dir else {
            return Ok(Arc::new(Memory::new()));
        };
        #[cfg(feature = "durable")]
        {
            let retention = crate::store::Retention {
                events: self.history as usize,
                age: self.history_age,
            };
            Ok(Arc::new(crate::store::Disk::open(dir, retention)?))
        }
        #[cfg(not(feature = "durable"))]
        Err(StoreError(format!(
            "--data-dir {}: this ssehub was built without the `durable` feature",
            dir.display()
        )))
    }

    /// The HTTP settings. Fails, naming the flag, if a JWT key cannot be read, or if
    /// --subscribers-need-token has no key to verify tokens with.
    pub fn http_config(&self) -> Result<HttpConfig, String> {
        let alg: JwtAlg = self.jwt_alg.parse()?;
        // The side's own flag beats --jwt-key, which sets both.
        let key = |own: &Option<String>, own_flag: &str| -> Result<Option<JwtKey>, String> {
            let (value, flag) = match (own, &self.jwt_key) {
                (Some(key), _) => (key, own_flag),
                (None, Some(key)) => (key, "--jwt-key"),
                (None, None) => return Ok(None),
            };
            JwtKey::from_flag(value, alg)
                .map(Some)
                .map_err(|e| format!("{flag}: {e}"))
        };
        let publisher_jwt_key = key(&self.publisher_jwt_key, "--publisher-jwt-key")?;
        let subscriber_jwt_key = key(&self.subscriber_jwt_key, "--subscriber-jwt-key")?;
        if self.subscribers_need_token && subscriber_jwt_key.is_none() {
            return Err(
                "--subscribers-need-token needs a key to verify tokens: --jwt-key or --subscriber-jwt-key"
                    .into(),
            );
        }
        Ok(HttpConfig {
            max_body: self.max_body as usize,
            body_timeout: self.publish_body_timeout,
            publish_token: self.publish_token.clone().filter(|t| !t.is_empty()),
            publisher_jwt_key,
            subscriber_jwt_key,
            subscribers_need_token: self.subscribers_need_token,
            mercure_subscriptions: self.mercure_subscriptions,
            publish_open: self.publish_open,
            when_full: if self.when_full == "retry" {
                WhenFull::Retry
            } else {
                WhenFull::Status503
            },
            max_clients_per_ip: self.max_clients_per_ip as usize,
            cors_origins: self.cors_origins.clone(),
            max_pending_connections: self.max_pending_connections as usize,
            max_pending_per_ip: self.max_pending_per_ip as usize,
            event_topic: self.event_topic.clone(),
            extra_metrics: crate::http::ExtraMetrics::default(),
        })
    }
}
