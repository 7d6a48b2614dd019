//! Trust for the collector's HTTP clients (the crawler and `http_poll`):
//! extra CA certificates on top of the built-in Mozilla roots, and telling
//! a certificate that is not trusted apart from other connect errors, so
//! it is reported once with its URL and not retried (it will not change).

use std::path::{Path, PathBuf};

/// Read the PEM certificates of every file in `paths`: each file must hold
/// at least one. The error names the file.
pub(crate) fn load_ca_certs(paths: &[PathBuf]) -> Result<Vec<reqwest::Certificate>, String> {
    let mut out = Vec::new();
    for path in paths {
        out.extend(load_file(path)?);
    }
    Ok(out)
}

fn load_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// A client builder trusting the built-in roots and `extra` CAs.
pub(crate) fn trusting(
    builder: reqwest::ClientBuilder,
    extra: &[reqwest::Certificate],
) -> reqwest::ClientBuilder {
    extra
        .iter()
        .cloned()
        .fold(builder, reqwest::ClientBuilder::add_root_certificate)
}

/// The TLS failure somewhere in `e`'s chain when the server's certificate
/// was refused (unknown issuer, wrong name, expired, …) or the handshake
/// failed: its description, else `None`.
pub(crate) fn certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        return Some(t.to_string());
    }
    // rustls errors travel inside io::Errors (reqwest wraps tokio-rustls's
    // in another), and `io::Error::source()` skips the error it wraps:
    // look inside each one.
    if let Some(found) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| certificate_error(inner))
    {
        return Some(found);
    }
    certificate_error(e.source()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = load_ca_certs(&[missing]).unwrap_err();
        assert!(
            e.contains("missing.pem") && e.contains("cannot read"),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = load_ca_certs(&[empty]).unwrap_err();
        assert!(
            e.contains("empty.pem") && e.contains("no certificate"),
            "{e}"
        );
    }

    #[test]
    fn finds_a_rustls_error_inside_an_io_error() {
        // As reqwest reports it: an io::Error inside an io::Error.
        let io = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(certificate_error(&io).unwrap().contains("UnknownIssuer"));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(certificate_error(&plain), None);
    }
}
