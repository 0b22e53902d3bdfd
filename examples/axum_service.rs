//! A REST service on SQLite with Herald mounted on the same port: what a Rust
//! backend adopts in an afternoon.
//!
//! - **Reads** return the data with the topic's position, read *before* the
//!   data. A client that subscribes from that position gets every change
//!   committed after its read: replayed, or `Resync` where that is not
//!   possible. A change in between is in the data and replayed, which
//!   invalidates twice; it is never missed.
//! - **Writes** commit the change and an **outbox** row in one transaction.
//!   A relay publishes each row with the row's id as the publish key, then
//!   deletes the row. A crash after the commit leaves the row, which the
//!   relay publishes when the service starts again; a crash after the publish
//!   but before the delete publishes it again, and Herald answers that it is
//!   a duplicate without broadcasting it twice (its keys outlive the restart
//!   with `data_dir`).
//!
//! The API is the one the web demo's page speaks, so the page runs against
//! this service as it is (`--static web-demo/dist`, built by
//! `cargo xtask demo --web`): its React hooks keep the list fresh.
//!
//! Run with:
//!   cargo run --example axum_service
//! then:
//!   cargo run -p herald-cli -- listen --url ws://127.0.0.1:8080/realtime/ws --token viewer --topic 'gift-list:*'
//!   curl -X POST 127.0.0.1:8080/api/lists/family-123/gifts -H 'content-type: application/json' -d '{"name":"Kite"}'
//!   curl 127.0.0.1:8080/api/lists/family-123
//! or, with the web demo's page on http://127.0.0.1:8080:
//!   cargo run --example axum_service -- --static web-demo/dist

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path as UrlPath, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, patch, post},
};
use clap::Parser;
use herald::{Event, EventData, EventKind, Payload, Position, ProtocolError, Topic};
use herald_server::{Herald, Published, ServerError};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tower_http::services::{ServeDir, ServeFile};

/// The service's state: its database, Herald, and the relay's doorbell.
#[derive(Clone)]
pub(crate) struct Service {
    db: Arc<Mutex<Connection>>,
    herald: Herald,
    outbox: Arc<Notify>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Gift {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) by: String,
    pub(crate) bought: bool,
}

/// `GET /api/lists/{list}`: the gifts, and the position to subscribe from.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct GiftList {
    pub(crate) gifts: Vec<Gift>,
    pub(crate) position: Position,
}

#[derive(Deserialize)]
pub(crate) struct NewGift {
    name: String,
    #[serde(default = "someone")]
    by: String,
}

fn someone() -> String {
    "someone".into()
}

#[derive(Deserialize)]
pub(crate) struct Change {
    bought: bool,
}

/// What a request can fail with, and the status it answers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ApiError {
    #[error("no gift {0} in this list")]
    NotFound(i64),
    #[error("the database failed: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("the real-time layer failed: {0}")]
    Herald(#[from] ServerError),
    #[error("an outbox row is not a valid event: {0}")]
    Outbox(#[from] ProtocolError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Herald(ServerError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, self.to_string()).into_response()
    }
}

/// The topic of a gift list.
pub(crate) fn topic(list: &str) -> String {
    format!("gift-list:{list}")
}

/// Opens (or creates) the database.
pub(crate) fn open(path: &Path) -> rusqlite::Result<Connection> {
    let db = Connection::open(path)?;
    // AUTOINCREMENT: an outbox id is a publish key, so it must never be
    // given again, even after the row with the highest id was deleted.
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE IF NOT EXISTS gifts (
             id INTEGER PRIMARY KEY, list TEXT NOT NULL, name TEXT NOT NULL, by TEXT NOT NULL,
             bought INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE IF NOT EXISTS outbox (
             id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, event TEXT NOT NULL,
             entity_id TEXT NOT NULL, payload TEXT NOT NULL);",
    )?;
    Ok(db)
}

impl Service {
    pub(crate) fn new(db: Connection, herald: Herald) -> Self {
        Self { db: Arc::new(Mutex::new(db)), herald, outbox: Arc::new(Notify::new()) }
    }

    /// The service's routes, with Herald's under `/realtime` on the same port.
    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/api/config", get(page_config))
            .route("/api/lists/{list}", get(list_gifts))
            .route("/api/lists/{list}/gifts", post(add_gift))
            .route("/api/lists/{list}/gifts/{id}", patch(change_gift).delete(remove_gift))
            .with_state(self.clone())
            .nest("/realtime", self.herald.router())
    }

    /// The relay that announces committed changes.
    pub(crate) fn relay(&self) -> Relay {
        Relay { service: self.clone() }
    }

    // SQLite calls are short and local; a service with slow queries would
    // move them to `spawn_blocking` or a pool.
    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Commits `change` and its announcement in one transaction, then rings
    /// the relay. Either both are stored or neither.
    fn commit(
        &self,
        list: &str,
        event: &str,
        change: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<Gift, ApiError>,
    ) -> Result<Gift, ApiError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let gift = change(&tx)?;
        let payload = serde_json::to_string(&gift).expect("a gift is JSON");
        tx.execute(
            "INSERT INTO outbox (topic, event, entity_id, payload) VALUES (?1, ?2, ?3, ?4)",
            params![topic(list), event, gift.id.to_string(), payload],
        )?;
        tx.commit()?;
        self.outbox.notify_one();
        Ok(gift)
    }
}

/// `GET /api/config`: what the web demo's page asks first.
async fn page_config() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "list": PAGE_LIST, "topic": topic(PAGE_LIST), "heraldUrl": "/realtime/ws" }))
}

/// The list the web demo's page shows.
const PAGE_LIST: &str = "family-123";

async fn list_gifts(
    State(service): State<Service>,
    UrlPath(list): UrlPath<String>,
) -> Result<Json<GiftList>, ApiError> {
    // The position first, then the data: see the top of this file.
    let position = service.herald.position(&topic(&list)).await?;
    let db = service.db();
    let mut query = db.prepare("SELECT id, name, by, bought FROM gifts WHERE list = ?1 ORDER BY id")?;
    let rows = query.query_map([&list], |row| {
        Ok(Gift { id: row.get(0)?, name: row.get(1)?, by: row.get(2)?, bought: row.get(3)? })
    })?;
    let gifts = rows.collect::<rusqlite::Result<_>>()?;
    Ok(Json(GiftList { gifts, position }))
}

async fn add_gift(
    State(service): State<Service>,
    UrlPath(list): UrlPath<String>,
    Json(new): Json<NewGift>,
) -> Result<(StatusCode, Json<Gift>), ApiError> {
    let gift = service.commit(&list, "ADDED", |tx| {
        tx.execute("INSERT INTO gifts (list, name, by) VALUES (?1, ?2, ?3)", params![list, new.name, new.by])?;
        Ok(Gift { id: tx.last_insert_rowid(), name: new.name, by: new.by, bought: false })
    })?;
    Ok((StatusCode::CREATED, Json(gift)))
}

async fn change_gift(
    State(service): State<Service>,
    UrlPath((list, id)): UrlPath<(String, i64)>,
    Json(change): Json<Change>,
) -> Result<Json<Gift>, ApiError> {
    let gift = service.commit(&list, "UPDATED", |tx| {
        let mut gift = find(tx, &list, id)?;
        tx.execute("UPDATE gifts SET bought = ?1 WHERE id = ?2", params![change.bought, id])?;
        gift.bought = change.bought;
        Ok(gift)
    })?;
    Ok(Json(gift))
}

async fn remove_gift(
    State(service): State<Service>,
    UrlPath((list, id)): UrlPath<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    service.commit(&list, "DELETED", |tx| {
        let gift = find(tx, &list, id)?;
        tx.execute("DELETE FROM gifts WHERE id = ?1", [id])?;
        Ok(gift)
    })?;
    Ok(StatusCode::NO_CONTENT)
}

fn find(tx: &rusqlite::Transaction<'_>, list: &str, id: i64) -> Result<Gift, ApiError> {
    tx.query_row("SELECT name, by, bought FROM gifts WHERE id = ?1 AND list = ?2", params![id, list], |row| {
        Ok(Gift { id, name: row.get(0)?, by: row.get(1)?, bought: row.get(2)? })
    })
    .optional()?
    .ok_or(ApiError::NotFound(id))
}

/// One outbox row: a committed change not yet known to be announced.
#[derive(Debug)]
pub(crate) struct OutboxRow {
    id: i64,
    event: Event,
}

/// Announces the outbox's rows, oldest first, until the service stops.
pub(crate) struct Relay {
    service: Service,
}

impl Relay {
    /// Runs until the task is dropped: drains the outbox whenever a write
    /// rings, and every second (a failed publish is retried then).
    pub(crate) async fn run(self) {
        loop {
            if let Err(error) = self.drain().await {
                eprintln!("outbox relay: {error}; retrying in 1 s");
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.service.outbox.notified()).await;
        }
    }

    /// Announces every pending row and deletes it. Returns how many.
    pub(crate) async fn drain(&self) -> Result<usize, ApiError> {
        let rows = self.pending()?;
        for row in &rows {
            self.announce(row).await?;
            self.done(row)?;
        }
        Ok(rows.len())
    }

    /// The rows still to announce, oldest first.
    pub(crate) fn pending(&self) -> Result<Vec<OutboxRow>, ApiError> {
        let db = self.service.db();
        let mut query = db.prepare("SELECT id, topic, event, entity_id, payload FROM outbox ORDER BY id LIMIT 100")?;
        let rows = query.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get(3)?, row.get(4)?))
        })?;
        let mut pending = Vec::new();
        for row in rows {
            let (id, topic, kind, entity_id, payload): (i64, String, String, String, String) = row?;
            let data = EventData {
                entity_id,
                payload: Payload::from_json(payload).map_err(ProtocolError::Json)?,
                user_id: None,
                tenant_id: None,
                timestamp: herald_protocol::now_timestamp(),
            };
            let topic = Topic::new(topic).map_err(ProtocolError::from)?;
            let event = Event {
                topic,
                event: EventKind::from(kind.as_str()),
                data,
                trace_id: None,
                seq: None,
                wildcard_seq: None,
                ephemeral: false,
            };
            pending.push(OutboxRow { id, event });
        }
        Ok(pending)
    }

    /// Publishes `row` with its id as the key: a second announcement of
    /// the same row (after a crash before [`done`](Self::done)) is a
    /// duplicate, not a second event.
    pub(crate) async fn announce(&self, row: &OutboxRow) -> Result<Published, ApiError> {
        Ok(self.service.herald.publish_once(row.event.clone(), &format!("outbox-{}", row.id)).await?)
    }

    /// Deletes an announced row.
    pub(crate) fn done(&self, row: &OutboxRow) -> Result<(), ApiError> {
        self.service.db().execute("DELETE FROM outbox WHERE id = ?1", [row.id])?;
        Ok(())
    }
}

/// Herald with durable history in `data_dir`, so that epoch, positions
/// and publish keys survive a restart of the service.
pub(crate) async fn herald(data_dir: &Path) -> Result<Herald, ServerError> {
    let mut builder = Herald::builder().dev(true);
    builder.config_mut().data_dir = Some(data_dir.to_owned());
    builder.build().await
}

/// The service's command line.
#[derive(Parser)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Where the database and Herald's history live.
    #[arg(long, default_value = ".")]
    data: PathBuf,
    /// A web app to serve (e.g. web-demo/dist), whose `index.html` answers
    /// every path the API does not.
    #[arg(long = "static")]
    static_dir: Option<PathBuf>,
    /// Commit changes without announcing them: their outbox rows wait for
    /// a run with the relay (to see a crash between commit and publish).
    #[arg(long)]
    no_relay: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let db = open(&args.data.join("gifts.db"))?;
    let service = Service::new(db, herald(&args.data.join("herald-data")).await?);
    if !args.no_relay {
        tokio::spawn(service.relay().run());
    }
    let mut app = service.router();
    if let Some(dir) = &args.static_dir {
        app = app.fallback_service(ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html"))));
    }
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!("gifts on http://{}/api/lists/<list>, Herald on /realtime/ws", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
