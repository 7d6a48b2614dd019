//! The dashboard's files over real HTTP: content types, caching, CSP.

use sluice_jobs::ui;

/// Serves only the dashboard's routes on 127.0.0.1:0; returns the base URL.
async fn serve_ui() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, ui::routes::<()>()).await });
    base
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{} has no {name} header", res.url()))
        .to_str()
        .expect("ascii header")
}

#[tokio::test]
async fn index_and_assets_have_types_caching_and_a_strict_csp() {
    let base = serve_ui().await;
    let http = reqwest::Client::new();

    let res = http.get(format!("{base}/")).send().await.expect("GET /");
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&res, "cache-control"), "no-cache");
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    let csp = header(&res, "content-security-policy").to_owned();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "CSP {csp:?} lacks {directive}");
    }
    assert!(
        !csp.contains("unsafe"),
        "CSP {csp:?} allows something unsafe"
    );
    let etag = header(&res, "etag").to_owned();
    let html = res.text().await.expect("index body");

    // Revalidation with the ETag costs no body.
    let res = http
        .get(format!("{base}/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("GET / again");
    assert_eq!(res.status(), 304);

    let version = ui::version();
    let prefix = format!("ui/{version}/");
    let linked: Vec<&str> = html
        .split(prefix.as_str())
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or(""))
        .collect();
    assert_eq!(linked.len(), 3, "index links: {linked:?}");
    let expected = [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ];
    for name in &linked {
        assert!(
            expected.iter().any(|(n, _)| n == name),
            "index links {name}, not checked here"
        );
    }
    for (name, content_type) in expected {
        let url = format!("{base}/{prefix}{name}");
        let res = http.get(&url).send().await.expect("GET asset");
        assert_eq!(res.status(), 200, "{url}");
        assert_eq!(header(&res, "content-type"), content_type, "{url}");
        assert_eq!(
            header(&res, "cache-control"),
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert!(!res.bytes().await.expect("body").is_empty(), "{url} empty");
    }

    // Another version's file would be cached for a year under the wrong
    // name: refused, and not cacheable.
    let res = http
        .get(format!("{base}/ui/0000000000000000/app.js"))
        .send()
        .await
        .expect("GET old version");
    assert_eq!(res.status(), 404);
    assert_eq!(header(&res, "cache-control"), "no-store");
    let res = http
        .get(format!("{base}/{prefix}secrets.js"))
        .send()
        .await
        .expect("GET unknown asset");
    assert_eq!(res.status(), 404);
}
