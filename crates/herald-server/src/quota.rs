//! What one user, and one client address, may hold open at once: WebSocket
//! and SSE connections and long polls. Counted per request, so the limits
//! hold behind a proxy (the address comes through trusted proxies, see
//! [`Remote`](crate::extract::Remote)) and in a router mounted on someone
//! else's listener.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use axum::http::StatusCode;

use crate::{auth::Identity, extract::Refusal, hub::Tenant, metrics};

#[derive(Debug, Default)]
pub(crate) struct Quotas {
    /// 0: no limit.
    per_user: usize,
    /// 0: no limit.
    per_ip: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    by_user: HashMap<(Tenant, Arc<str>), usize>,
    by_ip: HashMap<IpAddr, usize>,
}

/// Why a session was refused, fit for a close reason or an HTTP error.
#[derive(Debug)]
pub(crate) struct OverQuota {
    pub(crate) refusal: metrics::Refusal,
    pub(crate) message: String,
}

impl From<OverQuota> for Refusal {
    fn from(over: OverQuota) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, over.message).retry_after(5)
    }
}

impl Quotas {
    pub(crate) fn new(per_user: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Self { per_user, per_ip, counts: Mutex::default() })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Nothing panics while holding the lock, so the counts stay consistent.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place for one session of `identity` from `ip`, or says which
    /// limit it is over.
    pub(crate) fn open(self: &Arc<Self>, identity: &Identity, ip: Option<IpAddr>) -> Result<Quota, OverQuota> {
        let user = (identity.tenant.clone(), identity.user.clone());
        let mut counts = self.counts();
        let by_user = counts.by_user.get(&user).copied().unwrap_or(0);
        if self.per_user > 0 && by_user >= self.per_user {
            let limit = self.per_user;
            let message = format!("this user holds {limit} connections, the server's limit; close some");
            return Err(OverQuota { refusal: metrics::Refusal::PerUser, message });
        }
        let by_ip = ip.map_or(0, |ip| counts.by_ip.get(&ip).copied().unwrap_or(0));
        if self.per_ip > 0 && by_ip >= self.per_ip {
            let limit = self.per_ip;
            let message = format!("this address holds {limit} connections, the server's limit; close some");
            return Err(OverQuota { refusal: metrics::Refusal::PerAddress, message });
        }
        *counts.by_user.entry(user.clone()).or_default() += 1;
        if let Some(ip) = ip {
            *counts.by_ip.entry(ip).or_default() += 1;
        }
        Ok(Quota { quotas: self.clone(), user, ip })
    }
}

/// A session's place within the quotas, given back on drop.
#[derive(Debug)]
pub(crate) struct Quota {
    quotas: Arc<Quotas>,
    user: (Tenant, Arc<str>),
    ip: Option<IpAddr>,
}

impl Drop for Quota {
    fn drop(&mut self) {
        let mut counts = self.quotas.counts();
        release(&mut counts.by_user, &self.user);
        if let Some(ip) = self.ip {
            release(&mut counts.by_ip, &ip);
        }
    }
}

/// Takes one off `key`'s count, forgetting it at zero.
pub(crate) fn release<K: Eq + std::hash::Hash>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}
