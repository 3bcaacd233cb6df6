//! HTTPS for `ix-http` (`--tls-cert`, `--tls-key`): rustls through tokio-rustls
//! over any listener's connections, on IX (its tokio-io adapter) and on tokio
//! alike. The handshake runs in the connection's task, under the header timeout.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use ix_hyper_compat::Accept;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// ALPN protocols offered, in the server's order of preference.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A rustls server configuration (ring's provider, TLS 1.3 and 1.2) with the
/// certificate chain and key of two PEM files, offering h2 and HTTP/1.1 by ALPN.
///
/// # Errors
/// A file that cannot be read, holds no certificate or key, or a key that
/// does not match the certificate.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("--tls-cert {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("--tls-cert {}: no certificate in the file", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("--tls-key {}", key.display()))?;
    // The process-wide default provider: ring, the only one compiled in (see Cargo.toml).
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("--tls-cert and --tls-key do not make a usable pair")?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener whose connections speak TLS: wraps any [`Accept`].
pub struct TlsAccept<A> {
    inner: A,
    acceptor: TlsAcceptor,
}

impl<A> TlsAccept<A> {
    /// `inner`'s connections, each behind a server-side TLS handshake.
    pub fn new(inner: A, acceptor: TlsAcceptor) -> TlsAccept<A> {
        TlsAccept { inner, acceptor }
    }
}

impl<A: Accept> Accept for TlsAccept<A> {
    type Io = TokioIo<LazyTls<TokioIo<A::Io>>>;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Io, SocketAddr)>> {
        let (io, peer) = ready!(self.inner.poll_accept(cx))?;
        let handshake = self.acceptor.accept(TokioIo::new(io));
        Poll::Ready(Ok((TokioIo::new(LazyTls::Handshaking(Box::new(handshake))), peer)))
    }
}

/// A server-side TLS stream whose handshake runs on its first read or write,
/// so that the accept loop never waits for a client's handshake.
pub enum LazyTls<IO> {
    /// The handshake is under way (boxed, as the established stream: a
    /// rustls session is large, and this keeps the enum two words).
    Handshaking(Box<tokio_rustls::Accept<IO>>),
    /// Established: application data flows.
    Established(Box<TlsStream<IO>>),
    /// The handshake failed; every later call fails.
    Failed,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> LazyTls<IO> {
    /// Drives the handshake; `Ready(Ok(stream))` once established.
    fn poll_established(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut TlsStream<IO>>> {
        if let LazyTls::Handshaking(handshake) = self {
            match ready!(Pin::new(handshake.as_mut()).poll(cx)) {
                Ok(stream) => *self = LazyTls::Established(Box::new(stream)),
                Err(e) => {
                    *self = LazyTls::Failed;
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return Poll::Ready(Err(e));
                }
            }
        }
        match self {
            LazyTls::Established(stream) => Poll::Ready(Ok(stream)),
            _ => Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "the TLS handshake failed"))),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for LazyTls<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_established(cx))?;
        Pin::new(stream).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LazyTls<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let stream = ready!(self.get_mut().poll_established(cx))?;
        Pin::new(stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let stream = ready!(self.get_mut().poll_established(cx))?;
        Pin::new(stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_established(cx))?;
        Pin::new(stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            // Nothing was said yet: nothing to close politely.
            LazyTls::Handshaking(_) | LazyTls::Failed => Poll::Ready(Ok(())),
            LazyTls::Established(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
