//! Static files (`--static-dir`), read on the runtime's blocking pool, on IX
//! over kernel sockets and on tokio: bodies and content types checked with
//! curl, paths that would leave the root refused, oversized files refused.

mod support;

use std::path::PathBuf;

use support::{HttpServer, Target, curl_response, have, upload};

/// A directory of files to serve, removed on drop.
struct StaticRoot {
    dir: PathBuf,
    binary: Vec<u8>,
}

impl StaticRoot {
    fn new(tag: &str) -> StaticRoot {
        let dir = std::env::temp_dir().join(format!("ix-http-static-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>root</h1>\n").unwrap();
        std::fs::write(dir.join("docs/index.html"), "<h1>docs</h1>\n").unwrap();
        std::fs::write(dir.join("docs/site.css"), "body { margin: 0 }\n").unwrap();
        let binary = upload(300_000);
        std::fs::write(dir.join("data.bin"), &binary).unwrap();
        // Sparse: its length passes the 64 MiB bound without writing 64 MiB.
        let huge = std::fs::File::create(dir.join("huge.bin")).unwrap();
        huge.set_len((64 << 20) + 1).unwrap();
        StaticRoot { dir, binary }
    }
}

impl Drop for StaticRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `(status, content type, body)` of one GET.
fn get(server: &HttpServer, path: &str) -> (u16, String, Vec<u8>) {
    let response = curl_response(&[&server.url(path)]);
    (response.status, response.header("content-type").unwrap_or_default(), response.body)
}

fn check_static_files(target: Target, tag: &str) {
    assert!(have("curl"), "curl is missing: apt-get install curl (scripts/test.sh does)");
    let root = StaticRoot::new(tag);
    let dir = format!("--static-dir={}", root.dir.display());
    let server = HttpServer::start(target, &[&dir]);
    assert_eq!(get(&server, "/index.html"), (200, "text/html; charset=utf-8".into(), b"<h1>root</h1>\n".to_vec()));
    assert_eq!(get(&server, "/docs/"), (200, "text/html; charset=utf-8".into(), b"<h1>docs</h1>\n".to_vec()));
    assert_eq!(get(&server, "/docs/site.css").2, b"body { margin: 0 }\n");
    assert_eq!(get(&server, "/data.bin"), (200, "application/octet-stream".into(), root.binary.clone()));
    for outside in ["/../../etc/passwd", "/docs/%2e%2e/%2e%2e/etc/passwd", "/missing.txt"] {
        assert_eq!(get(&server, outside).0, 404, "{outside}");
    }
    assert_eq!(get(&server, "/huge.bin").0, 413);
    // The routes still answer beside the files.
    assert_eq!(get(&server, "/").2, b"Hello, world!");
    assert!(server.stop().success());
}

#[test]
fn static_files_on_ix_over_kernel_sockets() {
    check_static_files(Target::IxKernel, "ix");
}

#[test]
fn static_files_on_tokio() {
    check_static_files(Target::Tokio, "tokio");
}
