//! `ix-axum-tokio`: the axum application of `axum_app.rs` on tokio.
#![forbid(unsafe_code)]

#[path = "../axum_app.rs"]
mod axum_app;

use axum::http::StatusCode;
use tower_http::timeout::TimeoutLayer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    axum_app::init_tracing();
    let timeout = TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, axum_app::REQUEST_TIMEOUT);
    let app = axum_app::router().layer(timeout);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", axum_app::port())).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
