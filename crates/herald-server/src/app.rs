//! The state every handler and connection shares.

use std::{net::IpAddr, sync::Arc};

use herald_protocol::{Connected, Event, PROTOCOL_VERSION, Position, Topic, feature};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    auth::{Auth, Identity},
    cluster::{Cluster, Unavailable},
    config::ServerConfig,
    durable::Durable,
    hub::{Conflict, Fetched, Hub, PublishId, Tenant},
    quota::{OverQuota, Quota, Quotas},
    rate::PublishLimits,
    stream::Sessions,
};

#[derive(Debug)]
pub(crate) struct App {
    pub(crate) config: ServerConfig,
    pub(crate) auth: Auth,
    pub(crate) hub: Arc<Hub>,
    /// Set on a node of a cluster.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// Set with a data directory: publishes go through the store.
    pub(crate) durable: Option<Arc<Durable>>,
    /// The open `mode=frames` streams.
    pub(crate) sessions: Sessions,
    pub(crate) publish_limits: PublishLimits,
    /// What users and addresses hold open.
    pub(crate) quotas: Arc<Quotas>,
    /// The hub's timers and the cluster bus: they hold the hub, not the
    /// app, and end with it.
    _tasks: Vec<AbortOnDrop>,
}

impl App {
    /// Starts the hub's timers (and the cluster bus, `bus`) on the current
    /// tokio runtime.
    pub(crate) fn new(
        config: ServerConfig,
        auth: Auth,
        hub: Arc<Hub>,
        cluster: Option<(Arc<Cluster>, JoinHandle<()>)>,
        durable: Option<Arc<Durable>>,
    ) -> Self {
        let publish_limits = PublishLimits::new(config.http_publish_rate());
        let quotas = Quotas::new(config.max_connections_per_user, config.max_connections_per_ip);
        let mut tasks = vec![AbortOnDrop(tokio::spawn(crate::hub::maintain(hub.clone(), config.presence_interval)))];
        let cluster = cluster.map(|(cluster, bus)| {
            tasks.push(AbortOnDrop(bus));
            cluster
        });
        let sessions = Sessions::default();
        Self { config, auth, hub, cluster, durable, sessions, publish_limits, quotas, _tasks: tasks }
    }

    /// Publishes a validated event: through Redis on a node of a cluster,
    /// through the store with a data directory, in this process otherwise.
    /// With `dedup` (tenant, user, publish id), a repeat within the dedup
    /// window is not broadcast again. With `if_seq`, only while the topic is
    /// at that `seq`. An ephemeral event goes to the subscribers of the
    /// moment only: no `seq`, no history, no store.
    ///
    /// Each numbered publish is logged with the `seq` it got and its trace
    /// id: the publisher's (which the event carries to its subscribers), or
    /// a new one for the log alone (every subscriber's frame would grow by it).
    pub(crate) async fn publish(
        &self,
        event: Event,
        dedup: Option<PublishId<'_>>,
        if_seq: Option<u64>,
    ) -> Result<Published, NotPublished> {
        if event.ephemeral {
            match &self.cluster {
                Some(cluster) => cluster.broadcast(&event).await?,
                None => self.hub.broadcast(&event),
            }
            return Ok(Published { position: None, duplicate: false });
        }
        let trace_id = event.trace_id.clone().unwrap_or_else(new_trace_id);
        let (topic, publisher) = (event.topic.clone(), event.data.user_id.clone());
        let here = |seq| Position::new(self.hub.epoch().to_string(), seq);
        let published = match (&self.cluster, &self.durable, dedup) {
            (Some(cluster), _, dedup) => cluster.publish(&event, dedup, if_seq).await,
            (None, Some(durable), dedup) => {
                durable.publish(event, dedup.map(|d| d.key()), if_seq).await.map(|(seq, dup)| (here(seq), dup))
            }
            (None, None, Some(dedup)) => {
                self.hub.publish_once(&dedup, event, if_seq).map(|(seq, dup)| (here(seq), dup)).map_err(Into::into)
            }
            (None, None, None) => self.hub.publish(event, if_seq).map(|seq| (here(seq), false)).map_err(Into::into),
        };
        match &published {
            Ok((position, duplicate)) => {
                let seq = position.seq;
                info!(target: "herald_server::publish", %topic, seq, duplicate, publisher, %trace_id, "published");
            }
            Err(NotPublished::Conflict(conflict)) => {
                info!(target: "herald_server::publish", %topic, current = conflict.current, ?if_seq, %trace_id, "conflict");
            }
            Err(NotPublished::Unavailable(error)) => {
                warn!(target: "herald_server::publish", %topic, %trace_id, %error, "not published");
            }
        }
        published.map(|(position, duplicate)| Published { position: Some(position), duplicate })
    }

    /// For a subscription from `since`: on a node of a cluster that did not
    /// see the events after it, those events as the cluster's history in
    /// Redis holds them (`None` where the node has them, or Redis cannot
    /// say: then the subscription recovers what the node has, or not).
    pub(crate) async fn missed(&self, tenant: &Tenant, topic: &Topic, since: u64) -> Option<Fetched> {
        let cluster = self.cluster.as_ref()?;
        if self.hub.recovers(tenant, topic, since) {
            return None;
        }
        cluster.history(tenant.as_deref(), topic, since).await.ok()
    }

    /// Where `topic` stands in `tenant`'s namespace: on a node of a
    /// cluster, as Redis numbers it.
    pub(crate) async fn position(&self, tenant: &Tenant, topic: &Topic) -> Result<Position, Unavailable> {
        match &self.cluster {
            Some(cluster) => cluster.position(tenant.as_deref(), topic).await,
            None => {
                if let Some(durable) = &self.durable {
                    durable.ready().await?;
                }
                Ok(Position::new(self.hub.epoch().to_string(), self.hub.position(tenant, topic.as_str())))
            }
        }
    }

    /// The `connected` message for `identity`: who, until when, in which
    /// epoch, and what this server supports.
    pub(crate) fn connected(&self, identity: &Identity, epoch: &str) -> Connected {
        Connected {
            user_id: Some(identity.user.to_string()),
            tenant_id: identity.tenant.as_deref().map(str::to_owned),
            expires_in: identity.expires_in(),
            epoch: Some(epoch.to_owned()),
            version: Some(PROTOCOL_VERSION),
            features: [
                feature::RECOVERY,
                feature::EPHEMERAL,
                feature::CONDITIONAL,
                feature::PRESENCE,
                feature::PRESENCE_META,
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }

    /// Why the node cannot serve, if it cannot: a node of a cluster that
    /// cannot reach Redis, or a process that does not hold its store.
    pub(crate) fn unhealthy(&self) -> Option<String> {
        if self.cluster.as_ref().is_some_and(|cluster| !cluster.online()) {
            return Some("the cluster bus (Redis) is unreachable".into());
        }
        self.durable.as_ref().filter(|durable| !durable.is_open()).map(|durable| durable.unavailable().0)
    }

    /// A place for one session of `identity` from `ip` within the quotas;
    /// a refusal is counted.
    pub(crate) fn quota(&self, identity: &Identity, ip: Option<IpAddr>) -> Result<Quota, OverQuota> {
        self.quotas.open(identity, ip).inspect_err(|over| self.hub.metrics.refused(over.refusal))
    }

    pub(crate) fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            // Native clients send no Origin; cross-site hijacking needs a browser, which always does.
            None => true,
            Some(origin) => origin_in(&self.config.allowed_origins, origin),
        }
    }
}

/// A publish the server took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    /// The event's position; none for an ephemeral event.
    pub(crate) position: Option<Position>,
    /// The publish id was taken before: this is the first copy's `seq`.
    pub(crate) duplicate: bool,
}

/// Why a publish was not taken.
#[derive(Debug)]
pub(crate) enum NotPublished {
    /// Redis or the store could not take it; the text says what to do.
    Unavailable(Unavailable),
    /// `if_seq` was not the topic's `seq`.
    Conflict(Conflict),
}

impl From<Unavailable> for NotPublished {
    fn from(unavailable: Unavailable) -> Self {
        Self::Unavailable(unavailable)
    }
}

impl From<Conflict> for NotPublished {
    fn from(conflict: Conflict) -> Self {
        Self::Conflict(conflict)
    }
}

/// A W3C trace id: 16 random bytes as hex.
fn new_trace_id() -> String {
    format!("{:032x}", fastrand::u128(1..))
}

/// The trace id of a W3C `traceparent` header
/// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), if it is one.
pub(crate) fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let valid = hex(version, 2) && version != "ff" && hex(trace_id, 32) && hex(parent, 16) && hex(flags, 2);
    (valid && trace_id.bytes().any(|b| b != b'0')).then(|| trace_id.to_owned())
}

/// Whether `origin` is on the allow-list; an empty list allows every origin.
pub(crate) fn origin_in(allowed: &[String], origin: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|allowed| allowed.trim_end_matches('/') == origin)
}

/// A background task that ends with its owner.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_headers_give_their_trace_id_and_malformed_ones_nothing() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(), Some(id));
        assert_eq!(trace_id_of(&format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32))), None, "all zeros");
        assert_eq!(trace_id_of(&format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase())), None);
        assert_eq!(trace_id_of("00-abc-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id_of("garbage"), None);
        assert_eq!(new_trace_id().len(), 32);
    }
}
