//! The HTTP service: plain hyper code, the same on IX and on tokio (no line
//! here knows which runtime runs it). Routes: `GET /`, `GET /bytes/{n}`,
//! `POST /echo`, and static files from a directory, read on the runtime's
//! blocking pool (an [`Offload`] given by the runtime's side).

use std::convert::Infallible;
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

/// Errors a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response's body.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Largest `n` of `GET /bytes/{n}`: 1 GiB (the body is streamed, not held).
pub const BYTES_MAX: u64 = 1 << 30;
/// Largest static file served (read whole into memory): 64 MiB.
pub const STATIC_FILE_MAX_BYTES: u64 = 64 << 20;

/// Bytes of one `/bytes` chunk: a whole number of alphabets, so that chunks
/// follow each other without breaking the pattern.
const PATTERN_BYTES: usize = 26 * 2520;
/// `abc…xyzabc…`: what `GET /bytes/{n}` returns, its first `n` bytes.
static PATTERN: [u8; PATTERN_BYTES] = {
    let mut bytes = [0u8; PATTERN_BYTES];
    let mut i = 0;
    while i < PATTERN_BYTES {
        bytes[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    bytes
};

/// A static file's lookup, done off the serving thread: what the response will be.
#[derive(Debug)]
pub enum StaticFile {
    /// The file's bytes and content type.
    Found(Vec<u8>, &'static str),
    /// No such file under the root (or a path that would leave it).
    NotFound,
    /// Larger than [`STATIC_FILE_MAX_BYTES`].
    TooLarge,
}

/// A blocking file lookup, sent to the runtime's blocking pool.
pub type FileJob = Box<dyn FnOnce() -> StaticFile + Send>;
/// The awaitable result of a [`FileJob`]; `None` when the pool refused or lost it.
pub type FileJobResult = Pin<Box<dyn Future<Output = Option<StaticFile>>>>;
/// Runs a [`FileJob`] on the runtime's blocking pool (`ix_runtime::spawn_blocking`
/// or `tokio::task::spawn_blocking`), so that file reads never block a core.
pub type Offload = fn(FileJob) -> FileJobResult;

/// The service. Cloning is cheap (one `Arc`).
#[derive(Debug, Clone)]
pub struct App {
    static_dir: Option<Arc<Path>>,
    offload: Offload,
}

impl App {
    /// Serves static files from `static_dir` (canonicalised) when given,
    /// reading them through `offload`.
    ///
    /// # Errors
    /// When the directory cannot be resolved.
    pub fn new(static_dir: Option<&Path>, offload: Offload) -> std::io::Result<App> {
        let static_dir = static_dir.map(|d| d.canonicalize().map(Arc::from)).transpose()?;
        Ok(App { static_dir, offload })
    }

    fn route(&self, req: Request<Incoming>) -> Routed {
        let path = req.uri().path();
        let response = match (req.method(), path) {
            (&Method::GET, "/") => text(StatusCode::OK, "Hello, world!"),
            (&Method::GET, p) if p.starts_with("/bytes/") => bytes_response(&p["/bytes/".len()..]),
            (&Method::POST, "/echo") => echo(req),
            (_, "/echo") => not_allowed("POST"),
            (&Method::GET | &Method::HEAD, _) => match &self.static_dir {
                Some(dir) => return Routed::Blocking(self.static_file(dir.clone(), path.to_owned())),
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            },
            _ => not_allowed("GET, HEAD"),
        };
        Routed::Ready(Some(response))
    }

    /// Looks the file up on the blocking pool; the response is built back on the core.
    fn static_file(&self, root: Arc<Path>, url_path: String) -> Pin<Box<dyn Future<Output = Response<ResponseBody>>>> {
        let lookup = (self.offload)(Box::new(move || static_file(&root, &url_path)));
        Box::pin(async move {
            match lookup.await {
                Some(StaticFile::Found(contents, kind)) => {
                    let mut response = Response::new(full(Bytes::from(contents)));
                    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(kind));
                    response
                }
                Some(StaticFile::NotFound) => text(StatusCode::NOT_FOUND, "not found\n"),
                Some(StaticFile::TooLarge) => text(StatusCode::PAYLOAD_TOO_LARGE, "file too large to serve\n"),
                None => text(StatusCode::SERVICE_UNAVAILABLE, "busy: try again\n"),
            }
        })
    }
}

/// A response now, or one that waits for the blocking pool.
pub enum Routed {
    /// Answered on the spot (taken when polled).
    Ready(Option<Response<ResponseBody>>),
    /// Waiting for a static file lookup.
    Blocking(Pin<Box<dyn Future<Output = Response<ResponseBody>>>>),
}

impl std::fmt::Debug for Routed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Routed::Ready(_) => "Routed::Ready",
            Routed::Blocking(_) => "Routed::Blocking",
        })
    }
}

impl Future for Routed {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Routed::Ready(response) => Poll::Ready(Ok(response.take().expect("Routed polled after it completed"))),
            Routed::Blocking(lookup) => lookup.as_mut().poll(cx).map(Ok),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for App {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Routed;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.route(req)
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn full(bytes: Bytes) -> ResponseBody {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

fn not_allowed(allow: &'static str) -> Response<ResponseBody> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn bytes_response(n: &str) -> Response<ResponseBody> {
    let Ok(n) = n.parse::<u64>() else {
        return text(StatusCode::BAD_REQUEST, "/bytes/{n}: n must be a decimal number\n");
    };
    if n > BYTES_MAX {
        return text(StatusCode::BAD_REQUEST, "/bytes/{n}: n is at most 1073741824\n");
    }
    let mut response = Response::new(PatternBody { remaining: n }.boxed_unsync());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    response
}

/// `remaining` bytes of [`PATTERN`], in chunks that borrow the static array.
struct PatternBody {
    remaining: u64,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(PATTERN_BYTES as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PATTERN[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Streams the request body back as it arrives.
fn echo(req: Request<Incoming>) -> Response<ResponseBody> {
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    let mut response = Response::new(req.into_body().map_err(BoxError::from).boxed_unsync());
    let content_type = content_type.unwrap_or(HeaderValue::from_static("application/octet-stream"));
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}

/// A file under `root` named by the URL path, or not found. The path is
/// percent-decoded, then every segment must be a plain name (no `..`, no
/// `.`, no separators or NUL once decoded), and the resolved file must still
/// lie under `root` (symbolic links cannot lead out). A directory serves its
/// `index.html`. Blocking: it runs on the runtime's blocking pool.
fn static_file(root: &Path, url_path: &str) -> StaticFile {
    let Some(relative) = safe_relative_path(url_path) else {
        return StaticFile::NotFound;
    };
    let mut file = root.join(relative);
    if file.is_dir() {
        file.push("index.html");
    }
    let Ok(resolved) = file.canonicalize() else {
        return StaticFile::NotFound;
    };
    if !resolved.starts_with(root) || !resolved.is_file() {
        return StaticFile::NotFound;
    }
    match std::fs::metadata(&resolved) {
        Ok(meta) if meta.len() > STATIC_FILE_MAX_BYTES => return StaticFile::TooLarge,
        Ok(_) => {}
        Err(_) => return StaticFile::NotFound,
    }
    match std::fs::read(&resolved) {
        Ok(contents) => StaticFile::Found(contents, content_type(&resolved)),
        Err(_) => StaticFile::NotFound,
    }
}

/// The URL path as a relative file path, or `None` when any segment is not
/// a plain name.
fn safe_relative_path(url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path.strip_prefix('/')?)?;
    let mut out = PathBuf::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment.contains(['\\', '\0']) {
            return None;
        }
        let mut components = Path::new(segment).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(name)), None) => out.push(name),
            _ => return None,
        }
    }
    Some(out)
}

/// `%XX` escapes decoded; `None` for a bad escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The content type for a file name's extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("csv") => "text/csv; charset=utf-8",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("pdf") => "application/pdf",
        Some("woff") => "font/woff",
        Some("woff2") => "font/woff2",
        Some("mp4") => "video/mp4",
        Some("gz") => "application/gzip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_that_could_escape_the_root_are_refused() {
        for bad in ["/../etc/passwd", "/a/../../b", "/%2e%2e/x", "/a%2f..%2fb", "/./a", "/a/%00", "/%zz", "/a\\b"] {
            assert_eq!(safe_relative_path(bad), None, "{bad}");
        }
        assert_eq!(safe_relative_path("/css/site.css"), Some(PathBuf::from("css/site.css")));
        assert_eq!(safe_relative_path("/a%20b.txt"), Some(PathBuf::from("a b.txt")));
        assert_eq!(safe_relative_path("/"), Some(PathBuf::new()));
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type(Path::new("x/INDEX.HTML")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }

    /// The `/bytes/{n}` content: byte `i` is `b'a' + i % 26`.
    fn pattern_byte(i: u64) -> u8 {
        b'a' + (i % 26) as u8
    }

    #[test]
    fn the_pattern_repeats_across_chunks() {
        assert_eq!(PATTERN[..3], *b"abc");
        assert_eq!(PATTERN[PATTERN_BYTES - 1], pattern_byte(PATTERN_BYTES as u64 - 1));
        assert_eq!(pattern_byte(PATTERN_BYTES as u64), b'a');
    }
}
