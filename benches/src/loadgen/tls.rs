//! HTTPS load: TLS (rustls with ring's provider) over another [`Net`]'s
//! streams. The handshake is part of connecting, so it counts in connect
//! time and never in a request's latency.

use std::io;
use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::net::Net;

/// The ALPN protocol the generator offers: it speaks HTTP/1.1 only.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Connections of `inner`, each behind a client-side TLS handshake that
/// trusts only the certificates of one PEM file.
#[derive(Clone)]
pub struct TlsNet<N> {
    inner: N,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl<N: std::fmt::Debug> std::fmt::Debug for TlsNet<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsNet").field("inner", &self.inner).field("server_name", &self.server_name).finish()
    }
}

impl<N> TlsNet<N> {
    /// TLS over `inner`, trusting the certificates in `trusted_pem` (the
    /// server's own self-signed certificate, or its CA) and checking that the
    /// server's certificate names `server_name` (a DNS name or an IP address).
    ///
    /// # Errors
    /// The file cannot be read or holds no certificate, a certificate is not
    /// usable as a trust anchor, or `server_name` is neither a DNS name nor an
    /// IP address.
    pub fn new(inner: N, trusted_pem: &Path, server_name: &str) -> io::Result<Self> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        let certs = CertificateDer::pem_file_iter(trusted_pem)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(format!("{}: {e}", trusted_pem.display())))?;
        if certs.is_empty() {
            return Err(bad(format!("{}: no certificate in the file", trusted_pem.display())));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|e| bad(format!("{}: {e}", trusted_pem.display())))?;
        }
        let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| bad(format!("TLS server name `{server_name}`: {e}")))?;
        Ok(TlsNet { inner, connector: TlsConnector::from(Arc::new(config)), server_name })
    }
}

impl<N: Net> Net for TlsNet<N> {
    type Stream = TlsStream<N::Stream>;

    async fn connect(&self, addr: SocketAddrV4) -> io::Result<Self::Stream> {
        let stream = self.inner.connect(addr).await?;
        self.connector.connect(self.server_name.clone(), stream).await
    }

    async fn sleep_until(&self, at: Instant) {
        self.inner.sleep_until(at).await;
    }
}
