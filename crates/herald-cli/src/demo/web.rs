//! `herald demo --web`: the web demo's backend. It serves the built React
//! app (`web-demo/dist`) and a small gift-list REST API, and after every
//! write it announces the change through Herald, the way seed 000 describes
//! it: the database write first, then the event that makes every open page
//! invalidate its cached list. A simulated shopper makes changes of its own,
//! and two buttons in the page take the Herald server down for a while
//! (history kept: pages recover the missed events) or restart it with the
//! history lost (pages resync).

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, patch, post},
};
use herald_server::{Epoch, Server, ServerHandle};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_http::services::{ServeDir, ServeFile};

/// The one list the demo shows; its topic is `gift-list:family-123`.
const LIST: &str = "family-123";
const TOPIC: &str = "gift-list:family-123";
/// Longest gift name the API accepts.
const MAX_NAME: usize = 80;
/// The shopper stops adding at this many gifts, so the list stays readable.
const MAX_GIFTS: usize = 8;
const IDEAS: &[&str] = &[
    "Kite",
    "Board game",
    "Scarf",
    "Headphones",
    "Cookbook",
    "Puzzle",
    "Tea set",
    "Sketchbook",
    "Plant",
    "Socks",
    "Lego castle",
    "Telescope",
];

/// What `--web` needs from the command line.
pub(crate) struct WebArgs {
    pub(crate) addr: String,
    pub(crate) static_dir: PathBuf,
    pub(crate) shopper_every: Duration,
    pub(crate) outage: Duration,
    pub(crate) duration: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
struct Gift {
    id: String,
    name: String,
    bought: bool,
    /// Who made the last change.
    by: String,
}

#[derive(Debug, Deserialize)]
struct NewGift {
    name: String,
    #[serde(default)]
    by: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GiftChange {
    bought: bool,
    #[serde(default)]
    by: Option<String>,
}

struct Demo {
    started: Instant,
    gifts: Mutex<Vec<Gift>>,
    next_id: AtomicU64,
    /// Behind an async lock because a restart needs `&mut`.
    herald: tokio::sync::Mutex<ServerHandle>,
    herald_port: u16,
    outage: Duration,
    outage_running: AtomicBool,
}

/// An API error: a status and a message the page shows as is.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) async fn run(args: WebArgs) -> Result<(), String> {
    let index = args.static_dir.join("index.html");
    if !index.is_file() {
        return Err(format!(
            "{} is missing: build the web demo first (`cargo xtask demo --web` does, or `npm ci && npm run build` in web-demo/)",
            index.display()
        ));
    }
    let listener = tokio::net::TcpListener::bind(&args.addr).await.map_err(|e| {
        format!("cannot listen on {}: {e}; pick another with --addr (port 0 picks a free one)", args.addr)
    })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Herald listens next to the app, on a port of its own, as it would in production.
    let herald = Server::builder()
        .dev(true)
        .shutdown_spread(Duration::from_secs(1))
        .bind(SocketAddr::new(addr.ip(), 0))
        .await
        .map_err(|e| e.to_string())?;
    let demo = Arc::new(Demo {
        started: Instant::now(),
        gifts: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(1),
        herald_port: herald.local_addr().port(),
        herald: tokio::sync::Mutex::new(herald),
        outage: args.outage,
        outage_running: AtomicBool::new(false),
    });
    for name in ["Kite", "Board game", "Scarf"] {
        demo.add(name.to_owned(), "seed".to_owned()).await;
    }

    let api = Router::new()
        .route("/api/config", get(config))
        .route("/api/lists/{list}", get(list))
        .route("/api/lists/{list}/gifts", post(add))
        .route("/api/lists/{list}/gifts/{id}", patch(change).delete(remove))
        .route("/api/demo/outage", post(outage))
        .route("/api/demo/restart", post(restart))
        .with_state(demo.clone());
    let app = api.fallback_service(ServeDir::new(&args.static_dir).fallback(ServeFile::new(index)));

    demo.log("app", format!("open http://{addr} in a browser (two windows side by side show the sync)"));
    demo.log("herald", format!("listening on ws://{}:{}/ws (dev mode)", addr.ip(), demo.herald_port));
    let shopper = (!args.shopper_every.is_zero()).then(|| tokio::spawn(shopper(demo.clone(), args.shopper_every)));
    let stop = async move {
        match args.duration {
            Some(duration) => tokio::select! {
                () = tokio::time::sleep(duration) => {}
                _ = tokio::signal::ctrl_c() => {}
            },
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    axum::serve(listener, app).with_graceful_shutdown(stop).await.map_err(|e| e.to_string())?;
    demo.log("app", "stopping".into());
    if let Some(shopper) = shopper {
        shopper.abort();
    }
    // Pausing is the graceful shutdown (1001 and a reconnect hint to every page).
    demo.herald.lock().await.pause().await;
    Ok(())
}

impl Demo {
    fn log(&self, who: &str, line: String) {
        println!("{:7.2}s  {who:<8} {line}", self.started.elapsed().as_secs_f64());
    }

    /// Announces a change that is already saved; logs the `seq` it got.
    async fn announce(&self, kind: &str, id: &str, payload: serde_json::Value, by: &str) {
        let herald = self.herald.lock().await;
        match herald.publish(TOPIC, kind, id, &payload).await {
            Ok(seq) => self.log("backend", format!("{kind} {id} by {by}: saved, announced as seq {seq}")),
            Err(error) => self.log("backend", format!("{kind} {id}: could not announce: {error}")),
        }
    }

    async fn add(&self, name: String, by: String) -> Gift {
        let id = format!("gift-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let gift = Gift { id, name, bought: false, by };
        self.gifts.lock().expect("gift list poisoned").push(gift.clone());
        self.announce("ADDED", &gift.id, json!(gift), &gift.by).await;
        gift
    }

    async fn set_bought(&self, id: &str, bought: bool, by: String) -> Option<Gift> {
        let gift = {
            let mut gifts = self.gifts.lock().expect("gift list poisoned");
            let gift = gifts.iter_mut().find(|gift| gift.id == id)?;
            gift.bought = bought;
            gift.by = by;
            gift.clone()
        };
        self.announce("UPDATED", id, json!(gift), &gift.by).await;
        Some(gift)
    }

    async fn remove(&self, id: &str, by: String) -> bool {
        let removed = {
            let mut gifts = self.gifts.lock().expect("gift list poisoned");
            let before = gifts.len();
            gifts.retain(|gift| gift.id != id);
            gifts.len() < before
        };
        if removed {
            self.announce("DELETED", id, json!({ "id": id, "by": by }), &by).await;
        }
        removed
    }
}

fn known_list(list: &str) -> Result<(), ApiError> {
    if list == LIST {
        Ok(())
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no gift list {list:?}; the demo has one: {LIST:?}")))
    }
}

fn author(by: Option<String>) -> String {
    by.filter(|by| !by.trim().is_empty()).unwrap_or_else(|| "someone".into())
}

async fn config(State(demo): State<Arc<Demo>>) -> Json<serde_json::Value> {
    Json(json!({ "heraldPort": demo.herald_port, "topic": TOPIC, "list": LIST, "outageSecs": demo.outage.as_secs() }))
}

async fn list(State(demo): State<Arc<Demo>>, Path(list): Path<String>) -> Result<Json<Vec<Gift>>, ApiError> {
    known_list(&list)?;
    Ok(Json(demo.gifts.lock().expect("gift list poisoned").clone()))
}

async fn add(
    State(demo): State<Arc<Demo>>,
    Path(list): Path<String>,
    Json(new): Json<NewGift>,
) -> Result<(StatusCode, Json<Gift>), ApiError> {
    known_list(&list)?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("a gift needs a name of 1 to {MAX_NAME} characters")));
    }
    Ok((StatusCode::CREATED, Json(demo.add(name.to_owned(), author(new.by)).await)))
}

async fn change(
    State(demo): State<Arc<Demo>>,
    Path((list, id)): Path<(String, String)>,
    Json(change): Json<GiftChange>,
) -> Result<Json<Gift>, ApiError> {
    known_list(&list)?;
    let gift = demo.set_bought(&id, change.bought, author(change.by)).await;
    gift.map(Json).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no gift {id:?} (deleted meanwhile?)")))
}

async fn remove(
    State(demo): State<Arc<Demo>>,
    Path((list, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    known_list(&list)?;
    if demo.remove(&id, "someone".into()).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no gift {id:?} (deleted meanwhile?)")))
    }
}

/// Takes Herald down for `--outage` with its history kept; the backend keeps
/// saving and announcing meanwhile, and the pages recover what they missed.
async fn outage(State(demo): State<Arc<Demo>>) -> Result<StatusCode, ApiError> {
    if demo.outage_running.swap(true, Ordering::AcqRel) {
        return Err(ApiError(StatusCode::CONFLICT, "an outage is already running".into()));
    }
    demo.log("herald", format!("down for {} s; the backend keeps saving and announcing", demo.outage.as_secs()));
    demo.herald.lock().await.pause().await;
    let back = demo.clone();
    tokio::spawn(async move {
        tokio::time::sleep(back.outage).await;
        let resumed = back.herald.lock().await.resume(Epoch::Same).await;
        match resumed {
            Ok(()) => back.log("herald", "back with its history: pages recover the missed events by seq".into()),
            Err(error) => back.log("herald", format!("could not come back: {error}")),
        }
        back.outage_running.store(false, Ordering::Release);
    });
    Ok(StatusCode::ACCEPTED)
}

/// Restarts Herald with its history lost: pages cannot recover, so they resync.
async fn restart(State(demo): State<Arc<Demo>>) -> Result<StatusCode, ApiError> {
    if demo.outage_running.load(Ordering::Acquire) {
        return Err(ApiError(StatusCode::CONFLICT, "wait for the outage to end".into()));
    }
    demo.herald
        .lock()
        .await
        .restart(Epoch::New)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    demo.log("herald", "restarted with the history lost: pages resync (refetch everything)".into());
    Ok(StatusCode::NO_CONTENT)
}

/// Another family member, changing the list from elsewhere.
async fn shopper(demo: Arc<Demo>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (len, pick) = {
            let gifts = demo.gifts.lock().expect("gift list poisoned");
            (gifts.len(), (!gifts.is_empty()).then(|| gifts[fastrand::usize(..gifts.len())].clone()))
        };
        let by = "grandma (simulated)".to_owned();
        match (fastrand::u8(..10), pick) {
            (0..=5, Some(gift)) => {
                demo.set_bought(&gift.id, !gift.bought, by).await;
            }
            (6, Some(gift)) if len > 3 => {
                demo.remove(&gift.id, by).await;
            }
            _ if len < MAX_GIFTS => {
                demo.add(IDEAS[fastrand::usize(..IDEAS.len())].to_owned(), by).await;
            }
            _ => {}
        }
    }
}
