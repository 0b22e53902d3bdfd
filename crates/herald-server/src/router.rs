//! Herald's routes, with their state and layers.

use std::{convert::Infallible, path::Path, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::Request,
    http::{HeaderName, Method, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use tower::{ServiceExt, util::BoxCloneSyncService};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    services::{ServeDir, ServeFile},
};

use crate::{
    app::{App, origin_in},
    durable, http, stream, ws,
};

pub(crate) fn router(app: Arc<App>) -> Router {
    let router = Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/api/publish", post(http::publish::publish))
        .route("/sse", get(http::sse::sse))
        .route("/sse/send", post(stream::send))
        .route("/api/poll", get(http::poll::poll))
        .route("/api/position", get(http::position::position));
    // Everything above needs the store's epoch and positions (or numbers events).
    let router = match &app.durable {
        Some(_) => router.route_layer(middleware::from_fn_with_state(app.clone(), durable::hold_until_open)),
        None => router,
    };
    let router = router.route("/healthz", get(http::ops::healthz)).route("/metrics", get(http::ops::metrics));
    let router = match &app.config.static_dir {
        Some(dir) => router.fallback_service(web_app(dir)),
        None => router,
    };
    router.layer(cors(&app.config.allowed_origins)).with_state(app)
}

/// The files of a built web app; a path without an extension that names no
/// file gets `index.html`, so that a single-page app can route it.
fn web_app(dir: &Path) -> ServeDir<BoxCloneSyncService<Request, Response, Infallible>> {
    let index = ServeFile::new(dir.join("index.html"));
    let app_route = tower::service_fn(move |request: Request| {
        let index = index.clone();
        async move {
            if Path::new(request.uri().path()).extension().is_some() {
                return Ok(StatusCode::NOT_FOUND.into_response());
            }
            Ok(index.oneshot(request).await.map(IntoResponse::into_response).unwrap_or_else(|error| match error {}))
        }
    });
    ServeDir::new(dir).fallback(BoxCloneSyncService::new(app_route))
}

/// CORS for browsers on other origins (the allow-list, or any origin when
/// it is empty): they read the event streams and post frames and publishes.
/// WebSocket needs none; its origin is checked on upgrade.
fn cors(allowed: &[String]) -> CorsLayer {
    let allowed = allowed.to_vec();
    let origin = AllowOrigin::predicate(move |origin, _| origin.to_str().is_ok_and(|o| origin_in(&allowed, o)));
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("last-event-id")])
        .max_age(Duration::from_secs(600))
}
