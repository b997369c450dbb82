//! The node's live sessions, for the admin API and the stats line: who, over which
//! transport, since when, last active when — and a way to end one.
//!
//! An entry is a few atomics and a child of the shutdown token; the connection task
//! registers itself, updates `last_activity` on reads, and deregisters on exit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct SessionEntry {
    pub id: String,
    pub transport: &'static str,
    pub connected_at: SystemTime,
    started: Instant,
    /// Milliseconds after `started` of the last frame or heart-beat received.
    last_activity: AtomicU64,
    user: Mutex<Option<String>>,
    /// What the session's application says about it (a plain endpoint's device, ...).
    meta: Mutex<BTreeMap<String, String>>,
    kicked: AtomicBool,
    /// Its client resumed it on another connection ([`SessionEntry::replace`]).
    replaced: AtomicBool,
    /// Cancelled at shutdown (its parent) or by [`SessionRegistry::kick`].
    pub stop: CancellationToken,
}

impl SessionEntry {
    pub fn touch(&self) {
        self.last_activity
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_user(&self, user: &str) {
        *self.user.lock() = Some(user.to_owned());
    }

    pub fn user(&self) -> Option<String> {
        self.user.lock().clone()
    }

    /// Sets one entry of what the admin API shows about the session (`meta`).
    pub fn set_meta(&self, key: &str, value: &str) {
        self.meta.lock().insert(key.to_owned(), value.to_owned());
    }

    /// Whether an administrator ended the session (rather than a shutdown).
    pub fn was_kicked(&self) -> bool {
        self.kicked.load(Ordering::Relaxed)
    }

    /// Ends the session because its client resumed it on a new connection (the old
    /// one may be half-open: nothing says it is gone yet).
    pub fn replace(&self) {
        self.replaced.store(true, Ordering::Relaxed);
        self.stop.cancel();
    }

    /// Whether [`SessionEntry::replace`] ended it.
    pub fn was_replaced(&self) -> bool {
        self.replaced.load(Ordering::Relaxed)
    }

    fn last_activity(&self) -> SystemTime {
        let since_start = Duration::from_millis(self.last_activity.load(Ordering::Relaxed));
        self.connected_at + since_start
    }
}

/// A session as the admin API shows it.
#[derive(Debug, Serialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub user: Option<String>,
    pub transport: &'static str,
    pub node: String,
    pub connected_at: String,
    pub last_activity: String,
    pub subscriptions: Vec<SubscriptionView>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct SubscriptionView {
    pub id: String,
    pub destination: String,
    pub ack: String,
}

#[derive(Debug, Default)]
pub struct SessionRegistry {
    sessions: RwLock<HashMap<String, Arc<SessionEntry>>>,
}

impl SessionRegistry {
    pub fn register(
        &self,
        id: &str,
        transport: &'static str,
        shutdown: &CancellationToken,
    ) -> Arc<SessionEntry> {
        let entry = Arc::new(SessionEntry {
            id: id.to_owned(),
            transport,
            connected_at: SystemTime::now(),
            started: Instant::now(),
            last_activity: AtomicU64::new(0),
            user: Mutex::new(None),
            meta: Mutex::default(),
            kicked: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
            stop: shutdown.child_token(),
        });
        self.sessions.write().insert(id.to_owned(), entry.clone());
        entry
    }

    pub fn deregister(&self, id: &str) {
        self.sessions.write().remove(id);
    }

    pub fn get(&self, id: &str) -> Option<Arc<SessionEntry>> {
        self.sessions.read().get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<SessionEntry>> {
        self.sessions.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.sessions.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions per transport, for the stats line.
    pub fn by_transport(&self) -> Vec<(&'static str, usize)> {
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for e in self.sessions.read().values() {
            *counts.entry(e.transport).or_default() += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }

    /// Ends one session; false when there is none with that id.
    pub fn kick(&self, id: &str) -> bool {
        match self.get(id) {
            Some(e) => {
                e.kicked.store(true, Ordering::Relaxed);
                e.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Ends every session of `user`; returns how many.
    pub fn kick_user(&self, user: &str) -> usize {
        let victims: Vec<_> = self
            .all()
            .into_iter()
            .filter(|e| e.user().as_deref() == Some(user))
            .collect();
        for e in &victims {
            e.kicked.store(true, Ordering::Relaxed);
            e.stop.cancel();
        }
        victims.len()
    }
}

/// RFC 3339 text of a system time.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl SessionEntry {
    pub fn view(&self, node: &str, subscriptions: Vec<SubscriptionView>) -> SessionView {
        SessionView {
            id: self.id.clone(),
            user: self.user(),
            transport: self.transport,
            node: node.to_owned(),
            connected_at: rfc3339(self.connected_at),
            last_activity: rfc3339(self.last_activity()),
            subscriptions,
            meta: self.meta.lock().clone(),
        }
    }
}
