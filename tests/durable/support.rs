//! What the durable tests share: temp dirs, id parts, publishing and reading until an id.

#![allow(dead_code)]

use std::path::PathBuf;

use crate::common::*;
use ssehub::parse::ParsedEvent;

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("ssehub-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
    pub fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn seq_of(id: &str) -> u64 {
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

pub fn epoch_of(id: &str) -> &str {
    id.rsplit_once('-').unwrap().0
}

/// Publishes `data` on `topic`; returns its id.
pub async fn publish(hub: &HubProcess, topic: &str, data: &str) -> String {
    let v = hub.publish_ok(&format!("?topic={topic}"), data).await;
    v["id"].as_str().unwrap().to_string()
}

/// Reads events until one has `last` as its id (or `WAIT` passes).
pub async fn read_until(stream: &mut EventStream, last: &str) -> Vec<ParsedEvent> {
    let mut got = Vec::new();
    loop {
        let e = stream.next_event().await;
        let done = e.id == last;
        got.push(e);
        if done {
            return got;
        }
    }
}
