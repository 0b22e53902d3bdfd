//! The state every handler and connection shares.

use std::{net::IpAddr, sync::Arc};

use herald_protocol::{Connected, Event, PROTOCOL_VERSION, Position, Topic, feature};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{
    auth::{Auth, Identity},
    cluster::{Cluster, Numbered, Unavailable},
    config::ServerConfig,
    durable::Durable,
    hub::{Conflict, Fetched, Hub, PublishId, Tenant},
    quota::{OverQuota, Quota, Quotas},
    rate::PublishLimits,
    stream::Sessions,
    wildcard,
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
        let logged = Logged::of(&event, if_seq);
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
        logged.log(published)
    }

    /// Publishes a connection's `batch` in its order, each as
    /// [`publish`](Self::publish) does with the publisher's id (`tenant`,
    /// `user`, the publish's own id; none for an ephemeral one): through
    /// Redis in one script call, through the store with one wait, so that a
    /// connection publishing fast is not held to one publish per round trip.
    pub(crate) async fn publish_batch(
        &self,
        tenant: &Tenant,
        user: &Arc<str>,
        batch: Vec<Request>,
    ) -> Vec<Result<Published, NotPublished>> {
        let numbered = batch.iter().all(|request| !request.event.ephemeral);
        if !numbered || batch.len() == 1 {
            // Ephemeral events are rare in a batch: each as it comes.
            let mut published = Vec::with_capacity(batch.len());
            for Request { event, id, if_seq } in batch {
                let dedup = (!event.ephemeral).then(|| PublishId { tenant, user, id: &id });
                published.push(self.publish(event, dedup, if_seq).await);
            }
            return published;
        }
        let logged: Vec<Logged> = batch.iter().map(|request| Logged::of(&request.event, request.if_seq)).collect();
        let here = |seq| Position::new(self.hub.epoch().to_string(), seq);
        let published: Vec<Result<(Position, bool), NotPublished>> = match (&self.cluster, &self.durable) {
            (Some(cluster), _) => {
                let items: Vec<Numbered<'_>> = batch
                    .iter()
                    .map(|request| Numbered {
                        event: &request.event,
                        dedup: Some(PublishId { tenant, user, id: &request.id }),
                        if_seq: request.if_seq,
                    })
                    .collect();
                cluster.publish_many(&items).await
            }
            (None, Some(durable)) => {
                let key = |id: &str| PublishId { tenant, user, id }.key();
                let items = batch.into_iter().map(|Request { event, id, if_seq }| (event, Some(key(&id)), if_seq));
                let published = durable.publish_many(items.collect()).await;
                published.into_iter().map(|result| result.map(|(seq, dup)| (here(seq), dup))).collect()
            }
            (None, None) => batch
                .into_iter()
                .map(|Request { event, id, if_seq }| {
                    let dedup = PublishId { tenant, user, id: &id };
                    let published = self.hub.publish_once(&dedup, event, if_seq);
                    published.map(|(seq, dup)| (here(seq), dup)).map_err(Into::into)
                })
                .collect(),
        };
        logged.into_iter().zip(published).map(|(logged, published)| logged.log(published)).collect()
    }

    /// What a node of a cluster reads from Redis for a subscription, before
    /// it registers it: from `since`, the events after it where the node did
    /// not see them; without, the topic's position where the node has seen
    /// none of its events since it joined, so that the subscriber has a
    /// position to recover from after a reconnect. `None` where the node
    /// knows, or Redis cannot say (then the subscription goes on with what
    /// the node has).
    pub(crate) async fn missed(&self, tenant: &Tenant, topic: &Topic, since: Option<u64>) -> Option<Fetched> {
        let cluster = self.cluster.as_ref()?;
        match since {
            Some(since) if self.hub.recovers(tenant, topic, since) => None,
            Some(since) => cluster.history(tenant.as_deref(), topic, since).await.ok(),
            None if self.hub.knows(tenant, topic) => None,
            None => {
                let position = cluster.position(tenant.as_deref(), topic).await.ok()?;
                (*position.epoch == *self.hub.epoch()).then(|| Fetched { seq: position.seq, events: Vec::new() })
            }
        }
    }

    /// What a node of a cluster reads from Redis for a wildcard subscription
    /// from `since`, before it registers it: the events of its resource
    /// after `since`, where the node did not see them all. `None` where the
    /// node has them, or Redis cannot say.
    pub(crate) async fn missed_wildcard(
        &self,
        tenant: &Tenant,
        wildcard: &Topic,
        since: Option<u64>,
    ) -> Option<wildcard::Fetched> {
        let (cluster, since) = (self.cluster.as_ref()?, since?);
        if self.hub.recovers_wildcard(tenant, wildcard, since) {
            return None;
        }
        cluster.wildcard_history(tenant.as_deref(), wildcard.resource(), since).await.ok()
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

/// One publish of a connection's batch: see [`App::publish_batch`].
pub(crate) struct Request {
    pub(crate) event: Event,
    /// The publish's id (its dedup key, with the publisher's tenant and user).
    pub(crate) id: String,
    pub(crate) if_seq: Option<u64>,
}

/// What the log says of a publish: its topic, publisher and trace id (the
/// publisher's, which the event carries to its subscribers, or a new one
/// for the log alone: every subscriber's frame would grow by it).
struct Logged {
    topic: Topic,
    publisher: Option<String>,
    trace_id: String,
    if_seq: Option<u64>,
}

impl Logged {
    fn of(event: &Event, if_seq: Option<u64>) -> Self {
        let trace_id = event.trace_id.clone().unwrap_or_else(new_trace_id);
        Self { topic: event.topic.clone(), publisher: event.data.user_id.clone(), trace_id, if_seq }
    }

    /// Logs how the publish went, with the `seq` it got; returns it as the caller's answer.
    fn log(self, published: Result<(Position, bool), NotPublished>) -> Result<Published, NotPublished> {
        let Self { topic, publisher, trace_id, if_seq } = self;
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
