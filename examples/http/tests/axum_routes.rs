//! The axum example on IX (`ix-axum`, through `ix-hyper-compat`) and on tokio
//! (`ix-axum-tokio`): curl and hyper's client exercise every route and every
//! middleware (path, query and JSON extractors, shared state, gzip, CORS,
//! the timeout), every body checked.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use support::{HttpServer, curl_response, have};

/// `line N: all systems nominal`, as `GET /report` returns it.
fn report_text() -> Vec<u8> {
    (0..2000).flat_map(|i| format!("line {i}: all systems nominal\n").into_bytes()).collect()
}

fn check_with_curl(server: &HttpServer) {
    let url = |path: &str| server.url(path);
    let hello = curl_response(&[&url("/")]);
    assert_eq!((hello.status, hello.body.as_slice()), (200, &b"Hello from axum"[..]));

    // Path extractor and shared state.
    let ada = curl_response(&[&url("/users/1")]);
    assert_eq!((ada.status, ada.body.as_slice()), (200, &br#"{"id":1,"name":"ada"}"#[..]));
    assert_eq!(ada.header("content-type").as_deref(), Some("application/json"));
    assert_eq!(curl_response(&[&url("/users/999")]).status, 404);
    assert_eq!(curl_response(&[&url("/users/not-a-number")]).status, 400);

    // JSON body extractor; the new user is visible to later requests (on any core).
    let json = ["-H", "content-type: application/json", "--data-binary"];
    let created = curl_response(&[json[0], json[1], json[2], r#"{"name":"adele"}"#, &url("/users")]);
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let user: serde_json::Value = serde_json::from_slice(&created.body).unwrap();
    assert_eq!(user["name"], "adele");
    let id = user["id"].as_u64().expect("a numeric id");
    assert!(id >= 3, "ids 1 and 2 are taken: {id}");
    let fetched = curl_response(&[&url(&format!("/users/{id}"))]);
    assert_eq!(String::from_utf8_lossy(&fetched.body), format!(r#"{{"id":{id},"name":"adele"}}"#));
    let malformed = curl_response(&[json[0], json[1], json[2], r#"{"name":"#, &url("/users")]);
    assert_eq!(malformed.status, 400);
    let wrong_type = curl_response(&["-H", "content-type: text/plain", "--data-binary", "x", &url("/users")]);
    assert_eq!(wrong_type.status, 415);

    // Query extractor.
    let found = curl_response(&[&url("/search?q=ad&limit=1")]);
    assert_eq!(found.body, br#"[{"id":1,"name":"ada"}]"#);
    assert_eq!(curl_response(&[&url("/search?q=zzz")]).body, b"[]");
    assert_eq!(curl_response(&[&url("/search?limit=2")]).status, 400, "q is required");

    // Compression: gzip when asked for, identity otherwise, the same text either way.
    let gzipped = curl_response(&["--compressed", &url("/report")]);
    assert_eq!(gzipped.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(gzipped.body, report_text());
    let plain = curl_response(&[&url("/report")]);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, report_text());

    // CORS: a preflight and a simple cross-origin request.
    let preflight = curl_response(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://example.org",
        "-H",
        "Access-Control-Request-Method: POST",
        &url("/users"),
    ]);
    assert_eq!(preflight.status, 200);
    assert_eq!(preflight.header("access-control-allow-origin").as_deref(), Some("*"));
    let methods = preflight.header("access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("GET") && methods.contains("POST"), "{methods}");
    let cross = curl_response(&["-H", "Origin: https://example.org", &url("/users/2")]);
    assert_eq!(cross.header("access-control-allow-origin").as_deref(), Some("*"));
    assert_eq!(cross.body, br#"{"id":2,"name":"grace"}"#);

    // The timeout layer answers a handler that never does.
    let hung = curl_response(&[&url("/hang")]);
    assert_eq!((hung.status, hung.body.len()), (408, 0));
    assert_eq!(curl_response(&[&url("/nowhere")]).status, 404);
}

/// hyper's client over HTTP/1.1 and HTTP/2: a JSON round trip and the user list.
fn check_with_hyper_client(server: &HttpServer) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let authority = format!("{}:{}", server.ip, server.port);
        let stream = tokio::net::TcpStream::connect((server.ip, server.port)).await.unwrap();
        let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let post = Request::post(format!("http://{authority}/users"))
            .header("host", &authority)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"name":"hopper"}"#)))
            .unwrap();
        let response = h1.send_request(post).await.unwrap();
        assert_eq!(response.status(), 201);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let user: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(user["name"], "hopper");

        let stream = tokio::net::TcpStream::connect((server.ip, server.port)).await.unwrap();
        let (mut h2, conn) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let list = Request::get(format!("http://{authority}/users")).body(Full::new(Bytes::new())).unwrap();
        let response = h2.send_request(list).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let users: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let names: Vec<&str> = users.iter().map(|u| u["name"].as_str().unwrap()).collect();
        assert!(names.starts_with(&["ada", "grace"]) && names.contains(&"hopper"), "{names:?}");
    });
}

fn check(binary: &str) {
    assert!(have("curl"), "curl is missing: apt-get install curl (scripts/test.sh does)");
    let server = HttpServer::start_axum(binary);
    check_with_curl(&server);
    check_with_hyper_client(&server);
}

#[test]
fn every_route_of_the_axum_example_on_ix() {
    check(env!("CARGO_BIN_EXE_ix-axum"));
}

#[test]
fn every_route_of_the_axum_example_on_tokio() {
    check(env!("CARGO_BIN_EXE_ix-axum-tokio"));
}
