//! `ix-axum`: the axum application of `axum_app.rs` on IX.
#![forbid(unsafe_code)]

#[path = "../axum_app.rs"]
mod axum_app;

use axum::http::StatusCode;
use ix_hyper_compat::{ServerConfig, TimeoutLayer, serve_tower};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    axum_app::init_tracing();
    let timeout = TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, axum_app::REQUEST_TIMEOUT);
    let app = axum_app::router().layer(timeout);
    let runtime = ix_runtime::Runtime::builder().cores(2).backend("kernel".parse()?).build()?;
    serve_tower(runtime, axum_app::port(), app, ServerConfig::default())?;
    Ok(())
}
