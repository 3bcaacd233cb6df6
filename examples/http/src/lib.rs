//! The `ix-http` service as a library: the hyper service of the binary
//! (`service`) and its blocking work on IX, for the in-process benchmark
//! (`benches/benches/inprocess`) to serve through the binary's code path.
#![forbid(unsafe_code)]

pub mod service;

use service::{FileJob, FileJobResult};

/// Static file reads on IX's blocking pool; the request's task resumes on its core.
pub fn offload_on_ix(job: FileJob) -> FileJobResult {
    let lookup = ix_runtime::spawn_blocking(job);
    Box::pin(async move { lookup.await.ok() })
}
