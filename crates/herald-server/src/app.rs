//! The state every handler and connection shares.

use std::sync::Arc;

use herald_protocol::Event;
use tokio::task::JoinHandle;

use crate::{
    auth::Auth,
    cluster::{Cluster, Unavailable},
    config::ServerConfig,
    hub::{Hub, PublishId},
    quota::Quotas,
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
    ) -> Self {
        let publish_limits = PublishLimits::new(config.http_publish_rate());
        let quotas = Quotas::new(config.max_connections_per_user, config.max_connections_per_ip);
        let mut tasks = vec![AbortOnDrop(tokio::spawn(crate::hub::maintain(hub.clone(), config.presence_interval)))];
        let cluster = cluster.map(|(cluster, bus)| {
            tasks.push(AbortOnDrop(bus));
            cluster
        });
        Self { config, auth, hub, cluster, sessions: Sessions::default(), publish_limits, quotas, _tasks: tasks }
    }

    /// Publishes a validated event: through Redis on a node of a cluster,
    /// in this process otherwise. With `dedup` (tenant, user, publish id), a
    /// repeat within the dedup window is not broadcast again. Returns the
    /// `seq` and whether it was a repeat.
    pub(crate) async fn publish(&self, event: Event, dedup: Option<PublishId<'_>>) -> Result<(u64, bool), Unavailable> {
        match (&self.cluster, dedup) {
            (Some(cluster), dedup) => cluster.publish(&event, dedup).await,
            (None, Some(dedup)) => Ok(self.hub.publish_once(&dedup, event)),
            (None, None) => Ok((self.hub.publish(event), false)),
        }
    }

    /// Whether the node can serve: always on a single node; on a node of a
    /// cluster while it reaches Redis.
    pub(crate) fn healthy(&self) -> bool {
        self.cluster.as_ref().is_none_or(|cluster| cluster.online())
    }

    pub(crate) fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            // Native clients send no Origin; cross-site hijacking needs a browser, which always does.
            None => true,
            Some(origin) => origin_in(&self.config.allowed_origins, origin),
        }
    }
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
