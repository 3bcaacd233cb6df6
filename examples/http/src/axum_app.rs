//! A typical axum application, runtime-agnostic: routes with path, query and
//! JSON extractors, shared state, and tower-http's trace, compression and CORS.
//! `ix-axum` serves it on IX and `ix-axum-tokio` on tokio (`docs/porting.md`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;

/// How long a request may take before the timeout layer answers 408 (short,
/// so that the tests see it happen).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Lines of `GET /report`: a body large and repetitive enough to compress well.
pub const REPORT_LINES: usize = 2000;

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// Given by the server.
    pub id: u64,
    /// Given by the client.
    pub name: String,
}

/// `POST /users`'s body.
#[derive(Debug, Deserialize)]
pub struct NewUser {
    /// The new user's name.
    pub name: String,
}

/// `GET /search`'s query string.
#[derive(Debug, Deserialize)]
pub struct Search {
    /// Substring to find in user names.
    pub q: String,
    /// At most this many results (default 10).
    pub limit: Option<usize>,
}

/// State shared by every request on every core (one `Arc`, so one lock
/// crosses cores: an application's choice, not the runtime's).
#[derive(Debug, Clone)]
pub struct AppState {
    users: Arc<Mutex<BTreeMap<u64, User>>>,
    next_id: Arc<AtomicU64>,
}

impl AppState {
    /// Starts with two users, 1 "ada" and 2 "grace".
    pub fn new() -> AppState {
        let users = [(1, "ada"), (2, "grace")].map(|(id, name)| (id, User { id, name: name.to_owned() }));
        AppState { users: Arc::new(Mutex::new(users.into())), next_id: Arc::new(AtomicU64::new(3)) }
    }

    fn users(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, User>> {
        // No code panics while holding the lock; keep serving if one ever did.
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for AppState {
    fn default() -> Self {
        AppState::new()
    }
}

/// The router with its state, trace, compression and CORS (the timeout layer,
/// whose timer depends on the runtime, is added by each `main`).
pub fn router() -> Router {
    let cors = CorsLayer::new().allow_origin(Any).allow_methods([Method::GET, Method::POST]);
    Router::new()
        .route("/", get(|| async { "Hello from axum" }))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", get(get_user))
        .route("/search", get(search))
        .route("/report", get(report))
        .route("/hang", get(std::future::pending::<()>))
        .with_state(AppState::new())
        .layer(TraceLayer::new_for_http())
        .layer(CompressionLayer::new())
        .layer(cors)
}

async fn list_users(State(state): State<AppState>) -> Json<Vec<User>> {
    Json(state.users().values().cloned().collect())
}

async fn get_user(State(state): State<AppState>, Path(id): Path<u64>) -> Result<Json<User>, StatusCode> {
    state.users().get(&id).cloned().map(Json).ok_or(StatusCode::NOT_FOUND)
}

async fn create_user(State(state): State<AppState>, Json(new): Json<NewUser>) -> (StatusCode, Json<User>) {
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let user = User { id, name: new.name };
    state.users().insert(id, user.clone());
    (StatusCode::CREATED, Json(user))
}

async fn search(State(state): State<AppState>, Query(search): Query<Search>) -> Json<Vec<User>> {
    let users = state.users();
    let found = users.values().filter(|u| u.name.contains(&search.q)).take(search.limit.unwrap_or(10));
    Json(found.cloned().collect())
}

/// `REPORT_LINES` lines of `line N: all systems nominal`.
pub fn report_text() -> String {
    (0..REPORT_LINES).map(|i| format!("line {i}: all systems nominal\n")).collect()
}

async fn report() -> String {
    report_text()
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// The port to listen on: `PORT`, default 3000.
pub fn port() -> u16 {
    std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000)
}
