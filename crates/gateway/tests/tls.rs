//! TLS termination with rustls: the certificate is chosen by SNI (exact name,
//! `*.suffix`, then the default), ALPN offers h2, and requests over TLS are
//! proxied with `X-Forwarded-Proto: https`.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use support::{TestGateway, TestUpstream};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

struct Certs {
    _dir: tempfile::TempDir,
    a: CertificateDer<'static>,
    wild: CertificateDer<'static>,
    default: CertificateDer<'static>,
    config: String,
}

fn write_cert(dir: &Path, name: &str, sans: &[&str]) -> CertificateDer<'static> {
    let ck = rcgen::generate_simple_self_signed(
        sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), ck.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        ck.signing_key.serialize_pem(),
    )
    .unwrap();
    ck.cert.der().clone()
}

fn certs(up: &TestUpstream, server_extra: &str) -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let a = write_cert(p, "a", &["a.test"]);
    let wild = write_cert(p, "wild", &["*.wild.test"]);
    let default = write_cert(p, "default", &["default.test", "127.0.0.1"]);
    let d = p.display();
    let config = format!(
        r#"
        [server]
        {server_extra}
        [server.tls]
        cert = "{d}/default.pem"
        key = "{d}/default.key"
        certs = [
            {{ names = ["a.test"], cert = "{d}/a.pem", key = "{d}/a.key" }},
            {{ names = ["*.wild.test"], cert = "{d}/wild.pem", key = "{d}/wild.key" }},
        ]
        [upstreams.api]
        targets = ["{up}"]
        [[routes]]
        upstream = "api"
        "#,
        up = up.addr
    );
    Certs {
        _dir: dir,
        a,
        wild,
        default,
        config,
    }
}

fn connector(certs: &Certs, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in [&certs.a, &certs.wild, &certs.default] {
        roots.add(c.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(cfg))
}

async fn connect(
    gw: &TestGateway,
    c: &TlsConnector,
    name: ServerName<'static>,
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    c.connect(name, tcp).await.expect("TLS handshake verifies")
}

fn presented(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

#[tokio::test]
async fn certificate_chosen_by_sni() {
    let up = TestUpstream::fixed("hi").await;
    let certs = certs(&up, "");
    let gw = TestGateway::start(&certs.config).await;
    let c = connector(&certs, &[b"http/1.1"]);
    assert_eq!(presented(&connect(&gw, &c, dns("a.test")).await), certs.a);
    assert_eq!(presented(&connect(&gw, &c, dns("A.TEST")).await), certs.a);
    assert_eq!(
        presented(&connect(&gw, &c, dns("x.wild.test")).await),
        certs.wild
    );
    // Not in the SNI table: the default certificate.
    assert_eq!(
        presented(&connect(&gw, &c, dns("default.test")).await),
        certs.default
    );
    // An IP address sends no SNI at all: the default certificate too.
    let ip = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    assert_eq!(presented(&connect(&gw, &c, ip).await), certs.default);
    // A name no certificate covers gets the default, which the client rejects.
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    assert!(c.connect(dns("other.test"), tcp).await.is_err());
}

async fn request_over(s: TlsStream<TcpStream>, h2: bool) -> (http::Version, serde_json::Value) {
    let req = http::Request::get("https://a.test/x")
        .header("host", "a.test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let req = if h2 {
        // HTTP/2 carries the host as :authority, not as a Host header.
        let (mut parts, body) = req.into_parts();
        parts.headers.remove("host");
        http::Request::from_parts(parts, body)
    } else {
        let (mut parts, body) = req.into_parts();
        parts.uri = "/x".parse().unwrap();
        http::Request::from_parts(parts, body)
    };
    let resp = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    assert_eq!(resp.status(), 200);
    let version = resp.version();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (version, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn alpn_h2_and_http1_over_tls() {
    let up = TestUpstream::echo_request().await;
    let certs = certs(&up, "");
    let gw = TestGateway::start(&certs.config).await;

    let c = connector(&certs, &[b"h2", b"http/1.1"]);
    let s = connect(&gw, &c, dns("a.test")).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (version, seen) = request_over(s, true).await;
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(seen["headers"]["host"][0], "a.test");

    let c = connector(&certs, &[b"http/1.1"]);
    let s = connect(&gw, &c, dns("a.test")).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (version, seen) = request_over(s, false).await;
    assert_eq!(version, http::Version::HTTP_11);
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(seen["headers"]["host"][0], "a.test");
}

#[tokio::test]
async fn alpn_offers_no_h2_when_http2_is_off() {
    let up = TestUpstream::echo_request().await;
    let certs = certs(&up, "http2 = false");
    let gw = TestGateway::start(&certs.config).await;
    let c = connector(&certs, &[b"h2", b"http/1.1"]);
    let s = connect(&gw, &c, dns("a.test")).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (version, _) = request_over(s, false).await;
    assert_eq!(version, http::Version::HTTP_11);
}

#[tokio::test]
async fn stalled_tls_handshake_is_closed() {
    use tokio::io::AsyncReadExt;
    let up = TestUpstream::echo_request().await;
    let certs = certs(&up, r#"header_read_timeout = "300ms""#);
    let gw = TestGateway::start(&certs.config).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)));
}
