//! `--cors-origin`: exact origins only, on streams, publishes and preflights.

mod common;

use common::*;

const APP: &str = "http://app.example.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_get_cors_headers_and_others_do_not() {
    let hub = HubProcess::start(&[
        "--cors-origin",
        APP,
        "--cors-origin",
        "https://other.example.test",
    ]);
    // A stream (the fast path) for an allowed origin.
    let (_s, status, head) = raw_get(&hub.addr, "/events", &[("origin", APP)]).await;
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains(&format!("access-control-allow-origin: {APP}\r\n")),
        "{head}"
    );
    assert!(head.contains("access-control-allow-credentials: true\r\n"));
    assert!(head.contains("vary: origin\r\n"));
    assert!(!head.contains("allow-origin: *"));
    // Not allowed: no CORS headers at all.
    let (_s, status, head) = raw_get(
        &hub.addr,
        "/events",
        &[("origin", "http://evil.example.test")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !head.to_ascii_lowercase().contains("access-control"),
        "{head}"
    );
    // A publish from an allowed origin.
    let resp = client()
        .post(hub.publish_url("/publish"))
        .header("origin", APP)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], APP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_preflight() {
    let hub = HubProcess::start(&["--cors-origin", APP]);
    let preflight = |origin: &'static str| {
        client()
            .request(reqwest::Method::OPTIONS, hub.url("/publish"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
    };
    let ok = preflight(APP).await.unwrap();
    assert_eq!(ok.status(), 204);
    let h = ok.headers();
    assert_eq!(h["access-control-allow-origin"], APP);
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let allowed_headers = h["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed_headers.contains("content-type") && allowed_headers.contains("authorization"));
    let denied = preflight("http://evil.example.test").await.unwrap();
    assert_eq!(denied.status(), 403);
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_eq!(hub.metric("ssehub_published_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_cors_headers_so_pages_can_read_them() {
    let hub = HubProcess::start(&["--cors-origin", APP, "--max-clients", "1"]);
    let _first = hub.subscribe("").await.opened().await;
    let (_s, status, head) = raw_get(&hub.addr, "/events", &[("origin", APP)]).await;
    assert_eq!(status, 503);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains(&format!("access-control-allow-origin: {APP}\r\n")),
        "{head}"
    );
    assert!(
        head.contains("access-control-expose-headers: retry-after\r\n"),
        "{head}"
    );
}

#[test]
fn a_wildcard_or_a_path_is_refused_at_start() {
    for bad in ["*", "https://example.com/app", "example.com"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
            .args(["serve", "--cors-origin", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--cors-origin"),
            "{bad}"
        );
    }
}
