//! TLS for the tests: a self-signed certificate for `localhost`, served by
//! the proxy, and a client configuration that trusts it.

use std::sync::Arc;

use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::ring,
    pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
};
use tokio_rustls::TlsAcceptor;

/// The proxy's side (certificate and key) and a client config whose only
/// root is that certificate.
pub fn self_signed() -> (TlsAcceptor, Arc<ClientConfig>) {
    let certified = rcgen::generate_simple_self_signed(["localhost".to_owned()]).expect("generate a certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    // ring explicitly: with more than one provider linked, rustls cannot pick a default.
    let provider = || Arc::new(ring::default_provider());
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("the generated key matches the certificate");
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("a valid certificate");
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (TlsAcceptor::from(Arc::new(server)), Arc::new(client))
}
