//! TLS termination with rustls: certificates loaded from PEM files and chosen
//! by the client's SNI name (exact, then `*.suffix`, then the default), with
//! ALPN offering `h2` and `http/1.1`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::gateway::Error;

/// Build the acceptor for a `[server.tls]` section.
pub(crate) fn acceptor(cfg: &TlsConfig, http2: bool) -> Result<TlsAcceptor, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let load = |cert: &Path, key: &Path| -> Result<Arc<CertifiedKey>, Error> {
        let chain = load_certs(cert)?;
        let key_der = load_key(key)?;
        let signing = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
        Ok(Arc::new(CertifiedKey::new(chain, signing)))
    };
    let default = match (&cfg.cert, &cfg.key) {
        (Some(c), Some(k)) => Some(load(c, k)?),
        (None, None) => None,
        _ => return Err(Error::Tls("server.tls needs both `cert` and `key`".into())),
    };
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    for cc in &cfg.certs {
        let ck = load(&cc.cert, &cc.key)?;
        for name in &cc.names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(suffix) => wildcard.insert(suffix.to_owned(), Arc::clone(&ck)),
                None => exact.insert(name, Arc::clone(&ck)),
            };
        }
    }
    if default.is_none() && exact.is_empty() && wildcard.is_empty() {
        return Err(Error::Tls("server.tls has no certificate".into()));
    }
    let resolver = SniResolver {
        default,
        exact,
        wildcard,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let data = std::fs::read(path).map_err(|source| Error::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| Error::Io {
            context: format!("parsing {}", path.display()),
            source,
        })?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no PEM certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let data = std::fs::read(path).map_err(|source| Error::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|source| Error::Io {
            context: format!("parsing {}", path.display()),
            source,
        })?
        .ok_or_else(|| Error::Tls(format!("{}: no PEM private key found", path.display())))
}

#[derive(Debug)]
struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let name = name.to_ascii_lowercase();
            if let Some(ck) = self.exact.get(&name) {
                return Some(Arc::clone(ck));
            }
            if let Some((_, suffix)) = name.split_once('.')
                && let Some(ck) = self.wildcard.get(suffix)
            {
                return Some(Arc::clone(ck));
            }
        }
        self.default.clone()
    }
}
