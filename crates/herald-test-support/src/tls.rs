//! TLS for the tests: a self-signed certificate for `localhost`, served by
//! the proxy, and a client configuration that trusts it; and a test
//! certificate authority whose server certificates Herald's own listener
//! serves from PEM files.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, PublicKeyData,
};
use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client::TlsStream};

/// The proxy's side (certificate and key) and a client config whose only
/// root is that certificate.
pub fn self_signed() -> (TlsAcceptor, Arc<ClientConfig>) {
    let certified = rcgen::generate_simple_self_signed(["localhost".to_owned()]).expect("generate a certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("the generated key matches the certificate");
    (TlsAcceptor::from(Arc::new(server)), trusting(cert))
}

// ring explicitly: with more than one provider linked, rustls cannot pick a default.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A client config whose only root is `root`.
fn trusting(root: CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(root).expect("a valid certificate");
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(client)
}

/// A certificate authority of its own: the only root its clients trust.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: clients look issuers up by name.
        static ROOTS: AtomicU32 = AtomicU32::new(0);
        let name = format!("Herald test root {}", ROOTS.fetch_add(1, Ordering::Relaxed));
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("generate a key");
        Self { issuer: CertifiedIssuer::self_signed(params, key).expect("sign the root") }
    }

    /// The authority's certificate, as PEM (for servers that check clients,
    /// and clients that take a CA file).
    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", self.issuer.der())
    }

    /// A client configuration whose only root is this authority.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        trusting(self.issuer.der().clone())
    }

    /// A server certificate for `localhost` and `127.0.0.1`, with a key of its own.
    pub fn issue(&self) -> Leaf {
        let mut params = CertificateParams::new(["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("valid names");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("generate a key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the certificate");
        Leaf {
            cert_pem: pem("CERTIFICATE", cert.der()),
            key_pem: pem("PRIVATE KEY", &key.serialize_der()),
            der: cert.der().clone(),
            spki: key.subject_public_key_info(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A server certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    /// PKCS#8.
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    spki: Vec<u8>,
}

impl Leaf {
    /// The base64 SHA-256 of the key's SubjectPublicKeyInfo: what
    /// Chromium's `--ignore-certificate-errors-spki-list` takes to trust
    /// exactly this key.
    pub fn spki_sha256(&self) -> String {
        BASE64.encode(::ring::digest::digest(&::ring::digest::SHA256, &self.spki))
    }
}

/// `der` as a PEM block.
fn pem(label: &str, der: &[u8]) -> String {
    let base64 = BASE64.encode(der);
    let lines: Vec<&str> =
        base64.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).expect("base64 is ASCII")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A certificate and key as PEM files in a temporary directory, removed on drop.
pub struct CertFiles {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn new(leaf: &Leaf) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let files = Self { _dir: dir, cert, key };
        files.write(leaf);
        files
    }

    /// Replaces both files, each at once (written aside, then renamed), as
    /// certificate tools do.
    pub fn write(&self, leaf: &Leaf) {
        replace(&self.cert, &leaf.cert_pem);
        replace(&self.key, &leaf.key_pem);
    }
}

fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    fs::write(&aside, contents).expect("write into the temporary directory");
    fs::rename(&aside, path).expect("rename within the temporary directory");
}

/// A TLS connection to `addr` as `localhost`: fails unless the server's
/// certificate checks out against `config`'s roots.
pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("a valid name");
    TlsConnector::from(config).connect(name, tcp).await
}

/// The certificate `stream`'s server presented.
pub fn peer_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let (_, connection) = stream.get_ref();
    let chain = connection.peer_certificates().expect("a completed handshake has the server's certificates");
    chain[0].clone().into_owned()
}
