//! A master behind Sentinels (`redis+sentinel://…/name`): the Sentinels are asked
//! which server is the master at start and then once a heartbeat (at once while
//! Redis fails); when they name another one, the bus's connections are replaced by
//! connections to it, every channel is subscribed there again and the outage spool
//! is written there.
//!
//! A failover loses what the old master had not passed to the promoted replica:
//! with `cluster.replica_acks` a publish is confirmed only once a replica has it.
//! Publishes that failed meanwhile were kept in the spool, and are written to the
//! new master (or refused at `cluster.publish_timeout`).

use std::sync::Arc;
use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{ConnectionInfo, RedisConnectionInfo, TlsMode};
use tokio::sync::mpsc;

use super::Inner;
use crate::cluster::target::RedisTarget;

/// Longest one question to the Sentinels may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

impl Inner {
    fn sentinel_client(&self) -> Option<SentinelClient> {
        let RedisTarget::Sentinel {
            sentinels,
            master,
            tls,
            user,
            password,
            db,
        } = &self.target
        else {
            return None;
        };
        let mut settings = RedisConnectionInfo::default().set_db(*db);
        if let Some(u) = user {
            settings = settings.set_username(u);
        }
        if let Some(p) = password {
            settings = settings.set_password(p);
        }
        let mut node = SentinelNodeConnectionInfo::default().set_redis_connection_info(settings);
        if *tls {
            node = node.set_tls_mode(TlsMode::Secure);
        }
        match SentinelClient::build(
            sentinels.clone(),
            master.clone(),
            Some(node),
            SentinelServerType::Master,
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "cluster.redis_url: the Sentinels' addresses are not usable");
                None
            }
        }
    }

    /// The master the Sentinels name at start. If none answers, a connection that
    /// fails until [`Inner::follow_sentinels`] finds the master (publishes wait in
    /// the spool meanwhile, as in any outage).
    pub(super) fn sentinel_first_master(&self) -> ConnectionInfo {
        let asked = self.sentinel_client().and_then(|mut c| {
            // Once, at start, before the bus's tasks run: the blocking client on a
            // thread of its own, waited for at most ASK_TIMEOUT (an unreachable
            // Sentinel must not hold the start up).
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(c.get_client());
            });
            match rx.recv_timeout(ASK_TIMEOUT) {
                Ok(Ok(client)) => Some(client),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "no Sentinel named the master yet");
                    None
                }
                Err(_) => {
                    tracing::warn!("the Sentinels did not answer within {ASK_TIMEOUT:?}");
                    None
                }
            }
        });
        match asked {
            Some(client) => {
                let info = client.get_connection_info().clone();
                tracing::info!(master = %info.addr(), "the Sentinels name the master");
                *self.master.lock() = Some(info.addr().to_string());
                info
            }
            None => redis::IntoConnectionInfo::into_connection_info("redis://127.0.0.1:0")
                .expect("a valid placeholder"),
        }
    }

    /// Asks the Sentinels for the master once a heartbeat (once every `RETRY_MAX`
    /// while Redis fails) and moves the bus to a new one.
    pub(super) async fn follow_sentinels(
        self: Arc<Self>,
        push_tx: mpsc::UnboundedSender<redis::PushInfo>,
    ) {
        let Some(mut client) = self.sentinel_client() else {
            return;
        };
        let beat = self.config.heartbeat.min(Duration::from_secs(1));
        let mut current = self.master.lock().clone();
        loop {
            let wait = if self.is_up() {
                beat
            } else {
                super::health::RETRY_MAX
            };
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let asked = tokio::time::timeout(ASK_TIMEOUT, client.async_get_client()).await;
            let master = match asked {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "the Sentinels did not name a master");
                    continue;
                }
                Err(_) => continue,
            };
            let info = master.get_connection_info().clone();
            let addr = info.addr().to_string();
            if current.as_deref() == Some(addr.as_str()) {
                continue;
            }
            tracing::warn!(node = %self.node_id, master = %addr, "the Sentinels name a new master: moving there");
            let conns = self.single_conns(info, push_tx.clone());
            *self.conns.write() = Some(conns);
            current = Some(addr.clone());
            *self.master.lock() = current.clone();
            // Nothing is subscribed on the new connection yet: the health task
            // subscribes every wanted channel once the new master answers, and the
            // end of the outage writes the spool and fills what Pub/Sub missed.
            self.listening.lock().clear();
            self.set_connected(false, &format!("the master moved to {addr}"));
            self.probe_now.notify_one();
        }
    }
}
