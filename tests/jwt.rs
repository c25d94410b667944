//! Publishers with JWTs (Mercure's claims) against the real binary: what a token's
//! `mercure.publish` claim covers is published, anything else refused with a reason.

mod common;

use std::process::Command;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

/// POST /publish on the main listener with `auth` applied; status and body.
async fn publish(
    hub: &HubProcess,
    query: &str,
    body: &str,
    auth: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> (u16, String) {
    let request = client()
        .post(hub.url(&format!("/publish{query}")))
        .header(
            "content-type",
            if body.starts_with(['{', '[']) {
                "application/json"
            } else {
                "text/plain"
            },
        )
        .body(body.to_string());
    let response = auth(request).send().await.unwrap();
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

fn bearer(token: &str) -> impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder + '_ {
    move |r| r.header("authorization", format!("Bearer {token}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_token_publishes_what_its_claim_covers() {
    let hub = HubProcess::start(&["--jwt-key", "s3cret"]);
    let mut stream = hub.subscribe("?topic=a").await.opened().await;
    let a_only = hs256(json!({"mercure": {"publish": ["a"]}}), "s3cret");
    assert_eq!(
        publish(&hub, "?topic=a", "one", bearer(&a_only)).await.0,
        200
    );
    assert_eq!(stream.next_event().await.data, "one");
    // The query parameter and the cookie carry it too.
    let q = format!("?topic=a&authorization={a_only}");
    assert_eq!(publish(&hub, &q, "two", |r| r).await.0, 200);
    // The cookie, from a page of the hub's own origin only: a browser sends it by itself, so a
    // page of another site could publish as its visitor (cross-site request forgery).
    let cookie = format!("mercureAuthorization={a_only}");
    let own = hub.url("");
    let from = |origin: &str| {
        let (cookie, origin) = (cookie.clone(), origin.to_string());
        move |r: reqwest::RequestBuilder| r.header("cookie", cookie).header("origin", origin)
    };
    let (status, _) = publish(&hub, "?topic=a", "three", from(&own)).await;
    assert_eq!(status, 200);
    let (status, reason) = publish(&hub, "?topic=a", "forged", from("https://evil.example")).await;
    assert_eq!(status, 403, "{reason}");
    assert!(reason.contains("https://evil.example"), "{reason}");
    let (status, _) = publish(&hub, "?topic=a", "forged", |r| {
        r.header("cookie", cookie.clone())
    })
    .await;
    assert_eq!(status, 403);
    // A topic the claim does not cover: 403 naming it, and nothing of the batch is published.
    let (status, reason) = publish(&hub, "?topic=b", "x", bearer(&a_only)).await;
    assert_eq!(status, 403, "{reason}");
    assert!(reason.contains("\"b\""), "{reason}");
    let batch = r#"[{"topic": "a", "data": "ok"}, {"topic": ["a", "c"], "data": "not c"}]"#;
    let (status, reason) = publish(&hub, "", batch, bearer(&a_only)).await;
    assert_eq!(status, 403, "{reason}");
    assert_eq!(hub.metric("ssehub_published_total").await, 3);
    // `*` covers every topic (and `default`).
    let all = hs256(json!({"mercure": {"publish": ["*"]}}), "s3cret");
    assert_eq!(publish(&hub, "", "anywhere", bearer(&all)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_token_says_why() {
    let hub = HubProcess::start(&["--publisher-jwt-key", "s3cret", "--jwt-key", "other"]);
    let claims = json!({"mercure": {"publish": ["*"]}});
    let cases = [
        (String::new(), 401, "needs a token"),
        (hs256(claims.clone(), "wrong"), 401, "signature"),
        (
            hs256(
                json!({"exp": 1000, "mercure": {"publish": ["*"]}}),
                "s3cret",
            ),
            401,
            "expired",
        ),
        (
            encode(
                &Header::new(Algorithm::HS512),
                &claims,
                &EncodingKey::from_secret(b"s3cret"),
            )
            .unwrap(),
            401,
            "HS512",
        ),
        (
            hs256(json!({"mercure": {"subscribe": ["*"]}}), "s3cret"),
            403,
            "mercure.publish",
        ),
        ("not.a.jwt".into(), 401, "not a valid JWT"),
    ];
    for (token, status, why) in cases {
        let auth = |r: reqwest::RequestBuilder| {
            if token.is_empty() {
                r
            } else {
                r.header("authorization", format!("Bearer {token}"))
            }
        };
        let (got, reason) = publish(&hub, "?topic=a", "x", auth).await;
        assert_eq!(
            (got, reason.contains(why)),
            (status, true),
            "{why}: {reason}"
        );
        assert_eq!(reason.matches('\n').count(), 1, "one line: {reason:?}");
    }
    // --publisher-jwt-key beats --jwt-key for publishers.
    let good = hs256(claims, "s3cret");
    assert_eq!(publish(&hub, "?topic=a", "x", bearer(&good)).await.0, 200);
    // The static token keeps working beside JWTs.
    let both = HubProcess::start(&["--jwt-key", "s3cret", "--publish-token", "static"]);
    assert_eq!(
        publish(&both, "?topic=a", "x", bearer("static")).await.0,
        200
    );
    assert_eq!(publish(&both, "?topic=a", "x", bearer(&good)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_with_a_pem_public_key() {
    let dir = std::env::temp_dir().join(format!("ssehub-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let key = format!("@{}", public.display());
    let hub = HubProcess::start(&["--jwt-alg", "RS256", "--jwt-key", &key]);
    let pem = std::fs::read(&private).unwrap();
    let token = encode(
        &Header::new(Algorithm::RS256),
        &json!({"mercure": {"publish": ["a"]}}),
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap();
    assert_eq!(publish(&hub, "?topic=a", "x", bearer(&token)).await.0, 200);
    // An HS256 token is refused: the algorithm is the operator's choice, not the token's.
    let (status, reason) = publish(&hub, "?topic=a", "x", bearer(&hs256(json!({}), "s"))).await;
    assert_eq!(status, 401, "{reason}");
    // A key that is not a PEM public key stops the start, naming the flag.
    let out = bare_command()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--jwt-alg",
            "ES256",
            "--jwt-key",
            &key,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--jwt-key") && err.contains("EC public key"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
