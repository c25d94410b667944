//! Group commit for `--redis-wait-replicas`: one `WAIT` answers every publish whose writes were
//! acknowledged before it was sent.
//!
//! `WAIT` blocks the connection it is sent on, and a hub sends all its publishes to a master
//! over one connection: with a `WAIT` per publish, concurrent publishes queue behind each
//! other's replica round trip. `WAIT` counts the replicas that hold *every* write the connection
//! sent before it, so one `WAIT` sent after several publishes' writes answers for all of them.
//! Here a publish joins the next round of its target (a master, or every master); a round starts
//! at once when none is running, else right after the running one, with everyone who joined in
//! between. A lone publisher waits exactly as before; many wait about two round trips together.
//!
//! A [`GroupWait`] belongs to one connection: `WAIT` says nothing of writes sent on another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::conn::Conn;

/// Whose replicas a round waits for.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Target {
    /// The master of this key's slot (on one Redis, the one).
    MasterOf(String),
    /// Every master.
    Everywhere,
}

/// The rounds of one connection's `WAIT`s, by target.
pub(crate) struct GroupWait {
    conn: Conn,
    targets: Mutex<HashMap<Target, Round>>,
}

/// A target's round: whether one is running, and who joined the next.
#[derive(Default)]
struct Round {
    running: bool,
    next: Vec<oneshot::Sender<Result<i64, String>>>,
}

impl GroupWait {
    pub(crate) fn new(conn: Conn) -> Arc<GroupWait> {
        Arc::new(GroupWait {
            conn,
            targets: Mutex::new(HashMap::new()),
        })
    }

    /// How many replicas (at least, up to `replicas`) hold every write this connection sent
    /// before the call, waiting up to `within` (`WAIT replicas within`, shared with the
    /// publishes that wait at the same time). Cancel safe: a caller that goes away only misses
    /// its answer.
    pub(crate) async fn wait(
        self: &Arc<Self>,
        target: Target,
        replicas: u16,
        within: Duration,
    ) -> Result<i64, String> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut targets = self.lock();
            let round = targets.entry(target.clone()).or_default();
            round.next.push(tx);
            !std::mem::replace(&mut round.running, true)
        };
        if start {
            tokio::spawn(self.clone().drive(target, replicas, within));
        }
        rx.await
            .unwrap_or_else(|_| Err("the wait for replicas was dropped".to_string()))
    }

    /// Runs rounds for `target` until nobody is waiting.
    async fn drive(self: Arc<Self>, target: Target, replicas: u16, within: Duration) {
        loop {
            let waiting = {
                let mut targets = self.lock();
                let Some(round) = targets.get_mut(&target) else {
                    return;
                };
                if round.next.is_empty() {
                    round.running = false;
                    return;
                }
                std::mem::take(&mut round.next)
            };
            // Sent after every writer in `waiting` had its write acknowledged: it covers them.
            let mut conn = self.conn.clone();
            let wait = async {
                match &target {
                    Target::MasterOf(key) => conn.wait_replicas(key, replicas, within).await,
                    Target::Everywhere => conn.wait_replicas_everywhere(replicas, within).await,
                }
            };
            // `WAIT` answers within `within`; a connection that does not answer at all must not
            // hold the round forever (the publishes give up and the writer connects afresh).
            let answer = match tokio::time::timeout(within * 4, wait).await {
                Ok(Ok(held)) => Ok(held),
                Ok(Err(e)) => Err(format!("Redis: {e}")),
                Err(_) => Err("Redis did not answer WAIT".to_string()),
            };
            for waiter in waiting {
                let _ = waiter.send(answer.clone());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Target, Round>> {
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
