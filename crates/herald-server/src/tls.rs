//! TLS on Herald's own listener: the certificate and key from PEM files,
//! replaced without a restart. New handshakes get the certificate loaded
//! last; open connections keep the one they started with.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock, Weak},
    time::{Duration, SystemTime},
};

use rustls::{
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio_rustls::TlsAcceptor;
use tracing::{error, info};

/// How often the files are checked for changes: a renewed certificate is
/// served within seconds, at the cost of two `stat`s.
const POLL: Duration = Duration::from_secs(2);

/// The certificate and private key Herald's own listener serves HTTPS and
/// `wss://` with, as PEM files (see [`ServerConfig::tls`](crate::ServerConfig::tls)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// The certificate chain: the server's certificate first, then its
    /// intermediates (a `fullchain.pem`).
    pub cert: PathBuf,
    /// The certificate's private key, unencrypted: PKCS#8 (`BEGIN PRIVATE
    /// KEY`), PKCS#1 (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The certificate chain at `cert` and its private key at `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self { cert: cert.into(), key: key.into() }
    }
}

/// Why a certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("cannot read the TLS {what} {path}: {source}; check the path and that herald may read it")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the TLS certificate file {path} is not usable: {reason}; it should hold PEM certificates (-----BEGIN CERTIFICATE-----), the server's own first"
    )]
    Certificate { path: PathBuf, reason: String },
    #[error(
        "the TLS key file {path} is not usable: {reason}; it should hold one unencrypted PEM private key (BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)"
    )]
    Key { path: PathBuf, reason: String },
    #[error("the TLS key {key} is not the key of the certificate {cert}; pass the key the certificate was issued for")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// Checks that `files` hold a certificate and its key, reading them now.
pub(crate) fn check(files: &TlsFiles) -> Result<(), LoadError> {
    let read = |what, path: &Path| std::fs::read(path).map_err(|source| read_error(what, path, source));
    certified_key(&provider(), files, &read("certificate", &files.cert)?, &read("key", &files.key)?).map(drop)
}

/// The listener's certificate, reloaded in place: it answers every
/// handshake with the one loaded last.
#[derive(Debug)]
pub(crate) struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files as last loaded (or tried): a change means a reload.
    stamp: Mutex<Option<Stamp>>,
}

impl Tls {
    /// Loads `files`: a bad one stops the server at start.
    pub(crate) async fn load(files: &TlsFiles) -> Result<Arc<Self>, LoadError> {
        let provider = provider();
        let stamp = stamp(files).await;
        let key =
            certified_key(&provider, files, &read("certificate", &files.cert).await?, &read("key", &files.key).await?)?;
        Ok(Arc::new(Self {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(key)),
            stamp: Mutex::new(stamp),
        }))
    }

    /// Handshakes with the current certificate, offering HTTP/1.1 only (the
    /// listener speaks nothing else, and WebSocket upgrades need it).
    pub(crate) fn acceptor(self: &Arc<Self>) -> TlsAcceptor {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports rustls's default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }

    /// Loads the files again; on an error, logs what to fix and keeps the
    /// current certificate.
    pub(crate) async fn reload(&self) -> Result<(), LoadError> {
        let stamp = stamp(&self.files).await;
        // Remembered even if loading fails: a bad file is reported once, and
        // again only once it changes.
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        let loaded = async {
            let cert = read("certificate", &self.files.cert).await?;
            certified_key(&self.provider, &self.files, &cert, &read("key", &self.files.key).await?)
        };
        match loaded.await {
            Ok(key) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                info!(cert = %self.files.cert.display(), "TLS certificate reloaded; new connections use it");
                Ok(())
            }
            Err(error) => {
                error!(%error, "TLS certificate not reloaded; still serving the previous one");
                Err(error)
            }
        }
    }
}

impl ResolvesServerCert for Tls {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// Reloads `tls` whenever its files change, until the listener is gone.
pub(crate) async fn watch(tls: Weak<Tls>) {
    loop {
        tokio::time::sleep(POLL).await;
        let Some(tls) = tls.upgrade() else { return };
        let now = stamp(&tls.files).await;
        // Missing files (mid-replacement) are left for the next check.
        let changed = now.is_some() && now != *tls.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        if changed {
            // `reload` logs its error.
            let _ = tls.reload().await;
        }
    }
}

/// Reloads `tls` on every SIGHUP, registered now, until the listener is gone.
#[cfg(unix)]
pub(crate) fn reload_on_hangup(tls: Weak<Tls>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(error) => {
            tracing::warn!(%error, "cannot catch SIGHUP; the TLS files are still reloaded when they change");
            return;
        }
    };
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let Some(tls) = tls.upgrade() else { return };
            info!("SIGHUP: reloading the TLS certificate");
            let _ = tls.reload().await;
        }
    });
}

// ring explicitly: with more than one provider linked, rustls cannot pick a default.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn read_error(what: &'static str, path: &Path, source: io::Error) -> LoadError {
    LoadError::Read { what, path: path.to_owned(), source }
}

async fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, LoadError> {
    tokio::fs::read(path).await.map_err(|source| read_error(what, path, source))
}

/// The certificate chain in `cert_pem` with the key in `key_pem`, checked
/// to belong together.
fn certified_key(
    provider: &CryptoProvider,
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, LoadError> {
    let bad_cert = |reason: String| LoadError::Certificate { path: files.cert.clone(), reason };
    let bad_key = |reason: String| LoadError::Key { path: files.key.clone(), reason };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad_cert(error.to_string()))?;
    if chain.is_empty() {
        return Err(bad_cert("no certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => bad_key("no private key in it".into()),
        error => bad_key(error.to_string()),
    })?;
    let key = provider.key_provider.load_private_key(key).map_err(|error| bad_key(error.to_string()))?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        // Unknown: the key cannot tell its public half; the handshake will.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err(LoadError::Mismatch { cert: files.cert.clone(), key: files.key.clone() })
        }
        Err(error) => Err(bad_cert(error.to_string())),
    }
}

/// What identifies a version of the files: their modification times and sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    cert: (SystemTime, u64),
    key: (SystemTime, u64),
}

/// The files' [`Stamp`]; `None` while either cannot be read.
async fn stamp(files: &TlsFiles) -> Option<Stamp> {
    let of = |path: &Path| {
        let path = path.to_owned();
        async move {
            let metadata = tokio::fs::metadata(path).await.ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        }
    };
    Some(Stamp { cert: of(&files.cert).await?, key: of(&files.key).await? })
}
