//! The file behind [`ServerConfig::data_dir`]: the epoch, every topic's
//! position and history, and the publish ids, in one redb database
//! (`herald.redb`). Blocking: only the store's writer thread
//! (`durable.rs`) and the blocking pool touch it.
//!
//! ```text
//!  meta         "epoch", "lease", "pruned_seq", "pruned_wildcard_seq"
//!  topics       ["tenant","topic"] (JSON)        → position
//!  events       (["tenant","topic"], seq)        → (unix ms, frame)
//!  publish_ids  (unix ms, ["tenant","user","id"]) → seq
//!  marks        (["tenant","resource"], wildcard_seq) → (topic, seq)
//!  resources    ["tenant","resource"]            → floor
//! ```
//!
//! A resource's marks say where its events are, in `wildcard_seq` order,
//! for wildcard recovery (`wildcard.rs`); its floor, below which they are
//! gone. A mark whose event the history no longer holds only makes
//! recovery from before it fail, as it must.
//!
//! Why a restart may keep the epoch: every event is committed (fsync
//! included) before anyone sees it or its `seq`, and redb commits are
//! atomic (a torn write rolls back to the last whole commit). So the store
//! holds every `seq` that was ever shown, and numbering on from it reissues
//! none. That holds only for the file this directory last wrote: a copy
//! restored from a backup lacks what came after it. Each open therefore
//! writes a fresh random lease both into the store and into `herald.lease`
//! beside it; an open that finds the two different (or either missing)
//! starts a new epoch with an empty store.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::{ServerConfig, hub::Dropped, wildcard::resource_of};

const FILE: &str = "herald.redb";
const LEASE: &str = "herald.lease";

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TOPICS: TableDefinition<&[u8], u64> = TableDefinition::new("topics");
const EVENTS: TableDefinition<(&[u8], u64), (u64, &str)> = TableDefinition::new("events");
const PUBLISH_IDS: TableDefinition<(u64, &[u8]), u64> = TableDefinition::new("publish_ids");
const MARKS: TableDefinition<(&[u8], u64), (&str, u64)> = TableDefinition::new("marks");
const RESOURCES: TableDefinition<&[u8], u64> = TableDefinition::new("resources");

/// Why the store could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Another process holds it (the one a `--reuse-port` deploy replaces).
    Held,
    /// The directory or the disk failed; the text says how.
    Failed(String),
}

/// What the store kept, read at open within the configured limits.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) store: Store,
    pub(crate) epoch: String,
    /// Whether the epoch is the one the store had (else a new one started).
    pub(crate) kept: bool,
    pub(crate) pruned_seq: u64,
    pub(crate) pruned_wildcard_seq: u64,
    pub(crate) topics: Vec<KeptTopic>,
    pub(crate) resources: Vec<KeptResource>,
    /// Oldest first.
    pub(crate) publish_ids: Vec<KeptId>,
}

#[derive(Debug)]
pub(crate) struct KeptResource {
    pub(crate) tenant: Option<String>,
    pub(crate) resource: String,
    pub(crate) floor: u64,
    /// `(wildcard_seq, topic, seq)`, oldest first.
    pub(crate) marks: Vec<(u64, String, u64)>,
}

#[derive(Debug)]
pub(crate) struct KeptTopic {
    pub(crate) tenant: Option<String>,
    pub(crate) topic: String,
    pub(crate) seq: u64,
    /// `(seq, unix ms, frame)`, oldest first.
    pub(crate) history: Vec<(u64, u64, String)>,
}

#[derive(Debug)]
pub(crate) struct KeptId {
    pub(crate) tenant: Option<String>,
    pub(crate) user: String,
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) at_ms: u64,
}

/// An event to commit.
pub(crate) struct NewEvent {
    pub(crate) tenant: Option<String>,
    pub(crate) topic: String,
    pub(crate) seq: u64,
    pub(crate) wildcard_seq: u64,
    pub(crate) frame: String,
}

/// One write transaction's worth of changes.
#[derive(Default)]
pub(crate) struct Changes {
    pub(crate) events: Vec<NewEvent>,
    /// `(tenant, user, id, seq)`.
    pub(crate) publish_ids: Vec<(Option<String>, String, String, u64)>,
    /// What prune passes dropped from memory.
    pub(crate) dropped: Vec<Dropped>,
    /// The hub's highest pruned position.
    pub(crate) pruned_seq: u64,
    /// Resources whose floor rose: `(tenant, resource, floor, gone)`.
    pub(crate) floors: Vec<(Option<String>, String, u64, bool)>,
    /// The hub's highest position of a resource dropped while idle.
    pub(crate) pruned_wildcard_seq: u64,
}

/// The limits a store keeps within (the hub's, from the configuration).
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    history_len: u64,
    history_max_age: Duration,
    dedup_window: Duration,
    max_publish_ids: u64,
}

impl From<&ServerConfig> for Limits {
    fn from(config: &ServerConfig) -> Self {
        Self {
            history_len: config.history_len as u64,
            history_max_age: config.history_max_age,
            dedup_window: config.dedup_window,
            max_publish_ids: config.max_publish_ids as u64,
        }
    }
}

/// An open store: this process numbers events until it drops it.
#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
    path: PathBuf,
    limits: Limits,
}

/// The store's file in `dir`.
pub(crate) fn file(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn ms(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

fn topic_key(tenant: Option<&str>, topic: &str) -> Vec<u8> {
    serde_json::json!([tenant, topic]).to_string().into_bytes()
}

fn id_key(tenant: Option<&str>, user: &str, id: &str) -> Vec<u8> {
    serde_json::json!([tenant, user, id]).to_string().into_bytes()
}

/// A failure while reading or writing an open store.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct StoreError(String);

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(error: E) -> Self {
        Self(error.into().to_string())
    }
}

/// Whether `error` says the file cannot be read as a store (rather than
/// that the disk or the directory failed, which moving it aside would not
/// mend).
fn unreadable(error: &redb::Error) -> bool {
    match error {
        // redb reports a file that is not a store, or a cut-off one, as such.
        redb::Error::Io(error) => matches!(error.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof),
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => false,
        _ => true,
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` and reads what it kept. A
    /// store that cannot be read is moved aside, loudly, and a fresh one
    /// starts a new epoch: clients resync, as after a restart without a
    /// store, instead of the server failing to start until someone mends
    /// the file by hand.
    pub(crate) fn open(dir: &Path, limits: Limits) -> Result<Opened, OpenError> {
        let failed = |what: &str, error: &dyn std::fmt::Display| OpenError::Failed(format!("{what}: {error}"));
        fs::create_dir_all(dir).map_err(|e| failed("cannot create the directory", &e))?;
        let path = dir.join(FILE);
        let lease_path = dir.join(LEASE);
        let lease = match fs::read_to_string(&lease_path) {
            Ok(lease) => Some(lease.trim().to_owned()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(failed("cannot read the lease", &error)),
        };
        let opened = match Self::try_open(&path, limits.clone(), lease.as_deref()) {
            Err(error) if unreadable(&error) => {
                set_aside(&path, &error).map_err(|e| failed("cannot move the unreadable store aside", &e))?;
                Self::try_open(&path, limits, lease.as_deref())
            }
            other => other,
        };
        let opened = opened.map_err(|error| match error {
            redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => OpenError::Held,
            error => failed("cannot open the store", &error),
        })?;
        write_lease(dir, &lease_path, &opened.1).map_err(|e| failed("cannot write the lease", &e))?;
        Ok(opened.0)
    }

    /// Opens the file and reads it; returns it with its new lease.
    fn try_open(path: &Path, limits: Limits, lease: Option<&str>) -> Result<(Opened, String), redb::Error> {
        let db = Database::create(path)?;
        let new_lease = format!("{:016x}", fastrand::u64(..));
        let now = now_ms();
        let txn = db.begin_write()?;
        let (epoch, kept, pruned_seq, pruned_wildcard_seq) = {
            let mut meta = txn.open_table(META)?;
            let text = |value: Option<redb::AccessGuard<'_, &[u8]>>| {
                value.map(|v| String::from_utf8_lossy(v.value()).into_owned())
            };
            let epoch = text(meta.get("epoch")?);
            let stored_lease = text(meta.get("lease")?);
            let kept = epoch.is_some() && stored_lease.is_some() && stored_lease.as_deref() == lease;
            let pruned_seq = read_u64(&meta, "pruned_seq")?;
            let pruned_wildcard_seq = read_u64(&meta, "pruned_wildcard_seq")?;
            meta.insert("lease", new_lease.as_bytes())?;
            match epoch {
                Some(epoch) if kept => (epoch, true, pruned_seq, pruned_wildcard_seq),
                _ => {
                    let epoch = format!("{:012x}", fastrand::u64(..) >> 16);
                    meta.insert("epoch", epoch.as_bytes())?;
                    meta.remove("pruned_seq")?;
                    meta.remove("pruned_wildcard_seq")?;
                    (epoch, false, 0, 0)
                }
            }
        };
        if !kept {
            // What the store held belongs to an epoch no client will be
            // told again.
            txn.delete_table(TOPICS)?;
            txn.delete_table(EVENTS)?;
            txn.delete_table(PUBLISH_IDS)?;
            txn.delete_table(MARKS)?;
            txn.delete_table(RESOURCES)?;
        }
        let (topics, publish_ids) = read(&txn, &limits, now)?;
        let resources = read_resources(&txn)?;
        txn.commit()?;
        let store = Self { db, path: path.to_owned(), limits };
        let opened = Opened { store, epoch, kept, pruned_seq, pruned_wildcard_seq, topics, resources, publish_ids };
        Ok((opened, new_lease))
    }

    /// The size of the store's file, in bytes.
    pub(crate) fn size(&self) -> u64 {
        fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Commits `changes` in one transaction, on disk (fsync) when it returns.
    pub(crate) fn commit(&self, changes: &Changes) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut topics = txn.open_table(TOPICS)?;
            let mut events = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(PUBLISH_IDS)?;
            let mut marks = txn.open_table(MARKS)?;
            let now = now_ms();
            for event in &changes.events {
                let key = topic_key(event.tenant.as_deref(), &event.topic);
                topics.insert(&*key, event.seq)?;
                if self.limits.history_len > 0 {
                    events.insert((&*key, event.seq), (now, event.frame.as_str()))?;
                    let resource = topic_key(event.tenant.as_deref(), resource_of(&event.topic));
                    marks.insert((&*resource, event.wildcard_seq), (event.topic.as_str(), event.seq))?;
                    // The event that just left the history's count.
                    if let Some(gone) = event.seq.checked_sub(self.limits.history_len) {
                        events.remove((&*key, gone))?;
                    }
                }
            }
            for (tenant, user, id, seq) in &changes.publish_ids {
                ids.insert((now, &*id_key(tenant.as_deref(), user, id)), seq)?;
            }
            for _ in 0..ids.len()?.saturating_sub(self.limits.max_publish_ids) {
                ids.pop_first()?;
            }
            if !changes.dropped.is_empty() {
                self.prune(&txn, &mut topics, &mut events, changes)?;
                let expired = now.saturating_sub(ms(self.limits.dedup_window));
                ids.retain_in(..(expired, &[][..]), |_, _| false)?;
            }
            if !changes.floors.is_empty() {
                let mut resources = txn.open_table(RESOURCES)?;
                for (tenant, resource, floor, gone) in &changes.floors {
                    let key = topic_key(tenant.as_deref(), resource);
                    marks.retain_in((&*key, 0)..=(&*key, *floor), |_, _| false)?;
                    if *gone {
                        resources.remove(&*key)?;
                    } else {
                        resources.insert(&*key, floor)?;
                    }
                }
                let mut meta = txn.open_table(META)?;
                let stored = read_u64(&meta, "pruned_wildcard_seq")?;
                let pruned = changes.pruned_wildcard_seq.max(stored);
                meta.insert("pruned_wildcard_seq", &pruned.to_le_bytes()[..])?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Drops what the hub's prune passes dropped. A topic's row goes only
    /// if it is still at the position it was pruned at (an event may have
    /// been published to it since), and the highest pruned position is kept,
    /// so that a topic numbers on from above it after a restart too.
    fn prune(
        &self,
        txn: &redb::WriteTransaction,
        topics: &mut redb::Table<'_, &[u8], u64>,
        events: &mut redb::Table<'_, (&[u8], u64), (u64, &str)>,
        changes: &Changes,
    ) -> Result<(), StoreError> {
        for dropped in &changes.dropped {
            let key = topic_key(dropped.tenant.as_deref(), &dropped.topic);
            // A topic pruned whole had no history left; events published to
            // it since are above its position then.
            let end = dropped.keep_from.unwrap_or(dropped.seq + 1);
            events.retain_in((&*key, 0)..(&*key, end), |_, _| false)?;
            let at = topics.get(&*key)?.map(|seq| seq.value());
            if dropped.keep_from.is_none() && at == Some(dropped.seq) {
                topics.remove(&*key)?;
            }
        }
        let mut meta = txn.open_table(META)?;
        let stored = read_u64(&meta, "pruned_seq")?;
        meta.insert("pruned_seq", &changes.pruned_seq.max(stored).to_le_bytes()[..])?;
        Ok(())
    }
}

/// Reads the topics, their histories and the publish ids within `limits`.
fn read(txn: &redb::WriteTransaction, limits: &Limits, now: u64) -> Result<(Vec<KeptTopic>, Vec<KeptId>), redb::Error> {
    let topics = txn.open_table(TOPICS)?;
    let events = txn.open_table(EVENTS)?;
    let ids = txn.open_table(PUBLISH_IDS)?;
    let oldest = now.saturating_sub(ms(limits.history_max_age));
    let mut kept = Vec::new();
    for entry in topics.iter()? {
        let (key, seq) = entry?;
        let (key, seq) = (key.value(), seq.value());
        let (tenant, topic): (Option<String>, String) =
            serde_json::from_slice(key).map_err(|_| corrupt("a topic's name"))?;
        let from = seq.saturating_sub(limits.history_len) + 1;
        let mut history = Vec::new();
        for entry in events.range((key, from)..=(key, seq))? {
            let (event, stored) = entry?;
            let ((_, event_seq), (at, frame)) = (event.value(), stored.value());
            if at >= oldest {
                history.push((event_seq, at, frame.to_owned()));
            }
        }
        // A history has no holes: what recovery replays starts at its oldest event.
        let contiguous = history.iter().rev().zip((0..=seq).rev()).take_while(|((s, ..), want)| s == want).count();
        history.drain(..history.len() - contiguous);
        kept.push(KeptTopic { tenant, topic, seq, history });
    }
    let expired = now.saturating_sub(ms(limits.dedup_window));
    let mut publish_ids = Vec::new();
    for entry in ids.range((expired, &[][..])..)? {
        let (key, seq) = entry?;
        let ((at_ms, id), seq) = (key.value(), seq.value());
        let (tenant, user, id): (Option<String>, String, String) =
            serde_json::from_slice(id).map_err(|_| corrupt("a publish id"))?;
        publish_ids.push(KeptId { tenant, user, id, seq, at_ms });
    }
    let excess = publish_ids.len().saturating_sub(limits.max_publish_ids.try_into().unwrap_or(usize::MAX));
    publish_ids.drain(..excess);
    Ok((kept, publish_ids))
}

/// Every resource's floor and marks.
fn read_resources(txn: &redb::WriteTransaction) -> Result<Vec<KeptResource>, redb::Error> {
    let floors = txn.open_table(RESOURCES)?;
    let marks = txn.open_table(MARKS)?;
    let mut kept: Vec<KeptResource> = Vec::new();
    let name = |key: &[u8]| -> Result<(Option<String>, String), redb::Error> {
        serde_json::from_slice(key).map_err(|_| corrupt("a resource's name"))
    };
    for entry in floors.iter()? {
        let (key, floor) = entry?;
        let (tenant, resource) = name(key.value())?;
        kept.push(KeptResource { tenant, resource, floor: floor.value(), marks: Vec::new() });
    }
    for entry in marks.iter()? {
        let (key, at) = entry?;
        let ((key, wildcard_seq), (topic, seq)) = (key.value(), at.value());
        let (tenant, resource) = name(key)?;
        let found = kept.iter().rposition(|kept| kept.tenant == tenant && kept.resource == resource);
        let at = found.unwrap_or_else(|| {
            kept.push(KeptResource { tenant, resource, floor: 0, marks: Vec::new() });
            kept.len() - 1
        });
        if wildcard_seq > kept[at].floor {
            kept[at].marks.push((wildcard_seq, topic.to_owned(), seq));
        }
    }
    Ok(kept)
}

/// A `u64` of the meta table, 0 if absent.
fn read_u64(meta: &impl ReadableTable<&'static str, &'static [u8]>, key: &str) -> Result<u64, redb::Error> {
    match meta.get(key)? {
        Some(v) => v.value().try_into().map(u64::from_le_bytes).map_err(|_| corrupt(key)),
        None => Ok(0),
    }
}

fn corrupt(what: &str) -> redb::Error {
    redb::Error::Corrupted(format!("{what} is not what Herald writes"))
}

/// Moves an unreadable store to `herald.redb.unreadable-<unix seconds>`,
/// where someone can look at it, and says so loudly.
fn set_aside(path: &Path, error: &redb::Error) -> io::Result<()> {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let aside = path.with_file_name(format!("{FILE}.unreadable-{secs}"));
    fs::rename(path, &aside)?;
    tracing::error!(
        store = %path.display(), moved_to = %aside.display(), %error,
        "the store cannot be read: moved aside, starting a new epoch with an empty store (clients resync)"
    );
    Ok(())
}

/// Replaces the lease file whole (write, fsync, rename, fsync the directory).
fn write_lease(dir: &Path, path: &Path, lease: &str) -> io::Result<()> {
    let fresh = dir.join(format!("{LEASE}.new"));
    let mut file = fs::File::create(&fresh)?;
    io::Write::write_all(&mut file, lease.as_bytes())?;
    file.sync_all()?;
    fs::rename(&fresh, path)?;
    fs::File::open(dir)?.sync_all()
}
