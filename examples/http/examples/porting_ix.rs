//! `docs/porting.md`, after: the same hyper server on IX.
#![forbid(unsafe_code)]

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use ix_hyper_compat::{IxIo, IxTimer};
use ix_runtime::{Runtime, net::TcpListener};

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"Hello, world!"))))
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let runtime = Runtime::builder().cores(2).backend("kernel".parse()?).build()?;
    runtime.run(|_core| async {
        let listener = TcpListener::bind(8080).expect("port 8080");
        while let Ok((stream, _)) = listener.accept().await {
            let io = IxIo::new(stream);
            ix_runtime::spawn_local(async move {
                let service = service_fn(hello);
                let served = http1::Builder::new().timer(IxTimer).serve_connection(io, service).await;
                if let Err(e) = served {
                    eprintln!("connection: {e}");
                }
            });
        }
    })?;
    Ok(())
}
