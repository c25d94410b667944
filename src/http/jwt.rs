//! JWT authorization with Mercure's claims: a token's `mercure.publish` says which topics its
//! bearer may publish to, its `mercure.subscribe` which topics' private events its bearer may
//! receive. Tokens come from `Authorization: Bearer`, else the `authorization` query parameter,
//! else the `mercureAuthorization` cookie. Every refusal says why in one line.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::query::parse_query;
use crate::event::Topic;
use crate::selector::{Selector, SelectorSet};

/// The signing algorithms the hub accepts (`--jwt-alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JwtAlg {
    /// HMAC with SHA-256 and a shared secret (the usual setup).
    #[default]
    Hs256,
    /// RSA with SHA-256: the key is a PEM public key.
    Rs256,
    /// ECDSA P-256 with SHA-256: the key is a PEM public key.
    Es256,
}

impl FromStr for JwtAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<JwtAlg, String> {
        match s {
            "HS256" => Ok(JwtAlg::Hs256),
            "RS256" => Ok(JwtAlg::Rs256),
            "ES256" => Ok(JwtAlg::Es256),
            _ => Err(format!("expected HS256, RS256 or ES256, got {s:?}")),
        }
    }
}

impl fmt::Display for JwtAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwtAlg::Hs256 => "HS256",
            JwtAlg::Rs256 => "RS256",
            JwtAlg::Es256 => "ES256",
        })
    }
}

/// A key that verifies tokens, with the one algorithm it accepts.
#[derive(Clone)]
pub struct JwtKey {
    key: DecodingKey,
    alg: JwtAlg,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.debug_struct("JwtKey").field("alg", &self.alg).finish()
    }
}

impl JwtKey {
    /// A key as the flags give it: the secret itself for HS256, or `@path` to a file holding the
    /// secret (HS256; one trailing newline is dropped) or the PEM public key (RS256, ES256).
    ///
    /// ```
    /// use ssehub::http::{JwtAlg, JwtKey};
    /// assert!(JwtKey::from_flag("a-long-shared-secret", JwtAlg::Hs256).is_ok());
    /// assert!(JwtKey::from_flag("not a PEM", JwtAlg::Rs256).is_err());
    /// ```
    pub fn from_flag(value: &str, alg: JwtAlg) -> Result<JwtKey, String> {
        let bytes = match value.strip_prefix('@') {
            Some(path) => {
                let mut bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
                if alg == JwtAlg::Hs256 && bytes.ends_with(b"\n") {
                    bytes.pop();
                }
                bytes
            }
            None => value.as_bytes().to_vec(),
        };
        let key = match alg {
            JwtAlg::Hs256 if bytes.is_empty() => return Err("the secret is empty".into()),
            JwtAlg::Hs256 => DecodingKey::from_secret(&bytes),
            JwtAlg::Rs256 => DecodingKey::from_rsa_pem(&bytes)
                .map_err(|e| format!("not an RSA public key in PEM: {e}"))?,
            JwtAlg::Es256 => DecodingKey::from_ec_pem(&bytes)
                .map_err(|e| format!("not an EC public key in PEM: {e}"))?,
        };
        Ok(JwtKey { key, alg })
    }

    /// Checks the token's signature, algorithm and times; returns its claims.
    fn verify(&self, token: &str) -> Result<Claims, String> {
        if token.is_empty() {
            return Err(
                "the token is empty: send it as Authorization: Bearer <token>, the authorization query parameter or the mercureAuthorization cookie".into(),
            );
        }
        let alg = match self.alg {
            JwtAlg::Hs256 => Algorithm::HS256,
            JwtAlg::Rs256 => Algorithm::RS256,
            JwtAlg::Es256 => Algorithm::ES256,
        };
        let mut validation = Validation::new(alg);
        // Mercure tokens often have no `exp`; one that has it is held to it.
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        validation.validate_nbf = true;
        // As the reference hub: an `aud` claim is not this hub's to check.
        validation.validate_aud = false;
        match jsonwebtoken::decode::<Claims>(token, &self.key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::InvalidSignature => {
                    "the token's signature does not match the key".into()
                }
                ErrorKind::ExpiredSignature => "the token has expired (exp)".into(),
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
                ErrorKind::InvalidAlgorithm => {
                    let used = jsonwebtoken::decode_header(token)
                        .map(|h| format!("{:?}", h.alg))
                        .unwrap_or_else(|_| "another algorithm".into());
                    format!(
                        "the token is signed with {used}; this hub takes {} (--jwt-alg)",
                        self.alg
                    )
                }
                _ => format!("the token is not a valid JWT: {e}"),
            }),
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    /// Seconds since the epoch (a NumericDate may have a fraction).
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    mercure: Option<MercureClaims>,
}

#[derive(Deserialize, Default)]
struct MercureClaims {
    #[serde(default)]
    publish: Option<Vec<String>>,
    #[serde(default)]
    subscribe: Option<Vec<String>>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

/// Reads a claim's selectors, or names the first that is not one.
fn selectors(claim: &str, texts: &[String]) -> Result<SelectorSet, String> {
    texts
        .iter()
        .map(|s| {
            Selector::parse_granted(s)
                .map_err(|e| format!("the token's {claim} claim holds {s:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(SelectorSet::new)
}

/// The token a request carries: the `Authorization: Bearer` header, else the `authorization`
/// query parameter, else the `mercureAuthorization` cookie.
pub(crate) fn token(headers: &HeaderMap, query: &str) -> Option<String> {
    token_and_source(headers, query).map(|(token, _)| token)
}

/// [`token`], and whether it came from the cookie (which a browser sends by itself, so a page
/// of another site could make it publish: see `publish::auth`).
pub(crate) fn token_and_source(headers: &HeaderMap, query: &str) -> Option<(String, bool)> {
    let mut from_cookie = true;
    let token = token_from(
        headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
        || {
            // Most requests carry no token in the query: don't decode it a second time for nothing.
            let pairs = query
                .contains("authorization=")
                .then(|| parse_query(query).ok())??;
            pairs
                .into_iter()
                .find_map(|(k, v)| (k == "authorization").then_some(v))
        },
        headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()),
    );
    // Asked for only when neither the header nor the query had one.
    if headers.contains_key(header::AUTHORIZATION) || query_has_token(query) {
        from_cookie = false;
    }
    token.map(|t| (t, from_cookie))
}

fn query_has_token(query: &str) -> bool {
    query.contains("authorization=")
        && parse_query(query).is_ok_and(|pairs| pairs.iter().any(|(k, _)| k == "authorization"))
}

/// [`token`] from the parts as any request reader has them: the `Authorization` header's value,
/// the `authorization` query parameter (asked for only without the header), and the `Cookie`
/// headers' values.
pub(crate) fn token_from<'a>(
    authorization: Option<&[u8]>,
    in_query: impl FnOnce() -> Option<String>,
    cookies: impl Iterator<Item = &'a [u8]>,
) -> Option<String> {
    if let Some(value) = authorization {
        // Not `Bearer <token>`: an empty token, refused as such (not silently anonymous).
        let value = std::str::from_utf8(value).unwrap_or("");
        return Some(value.strip_prefix("Bearer ").unwrap_or("").to_string());
    }
    if let Some(value) = in_query() {
        return Some(value);
    }
    cookies
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == "mercureAuthorization").then(|| value.to_string())
        })
}

/// The topics a verified publisher may publish to.
#[derive(Debug, Clone)]
pub(crate) struct PublishGrant {
    selectors: SelectorSet,
}

impl PublishGrant {
    /// Verifies `token`; its `mercure.publish` claim becomes the grant. `Err`: a one-line reason,
    /// and whether it is a `403` (a valid token without the claim, or with a selector that is
    /// not one) rather than a `401`.
    pub(crate) fn from_token(key: &JwtKey, token: &str) -> Result<PublishGrant, (bool, String)> {
        let claims = key.verify(token).map_err(|reason| (false, reason))?;
        match claims.mercure.unwrap_or_default().publish {
            Some(texts) => selectors("mercure.publish", &texts)
                .map(|selectors| PublishGrant { selectors })
                .map_err(|reason| (true, reason)),
            None => Err((
                true,
                "the token has no mercure.publish claim: it may not publish".into(),
            )),
        }
    }

    /// The grant covers `topic`: a selector names it exactly, is `*`, or is a URI template that
    /// could expand to it.
    pub(crate) fn covers(&self, topic: &str) -> bool {
        Topic::new(topic).is_ok_and(|t| self.selectors.matches(&t))
    }
}

/// What a verified subscriber's token grants.
#[derive(Debug, Clone)]
pub(crate) struct SubscribeGrant {
    /// The topics whose private events it may receive (`mercure.subscribe`); `None`: the claim
    /// is absent, so public events only.
    pub(crate) private: Option<SelectorSet>,
    /// When the token expires (`exp`): the stream ends then.
    pub(crate) expires_at: Option<Instant>,
    /// `mercure.payload`, as given: the active-subscription events show it.
    pub(crate) payload: Option<serde_json::Value>,
}

impl SubscribeGrant {
    /// Verifies `token` (signature, algorithm, `exp`, `nbf`) and reads its claims. `Err`: a
    /// one-line reason (a `401`), naming a `mercure.subscribe` selector that is not one.
    pub(crate) fn from_token(key: &JwtKey, token: &str) -> Result<SubscribeGrant, String> {
        let claims = key.verify(token)?;
        let mercure = claims.mercure.unwrap_or_default();
        let private = match &mercure.subscribe {
            Some(texts) => Some(selectors("mercure.subscribe", texts)?),
            None => None,
        };
        Ok(SubscribeGrant {
            private,
            expires_at: claims.exp.map(instant_of),
            payload: mercure.payload,
        })
    }
}

/// The instant a NumericDate (seconds since the epoch) falls on: now plus what is left of it.
fn instant_of(exp: f64) -> Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    // `verify` refused a past `exp`; a huge one must not overflow the instant.
    let left = Duration::try_from_secs_f64((exp - now).max(0.0)).unwrap_or(Duration::MAX);
    Instant::now() + left.min(Duration::from_secs(100 * 365 * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn hs256(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn grants_and_reasons() {
        let key = JwtKey::from_flag("s3cret", JwtAlg::Hs256).unwrap();
        let good = hs256(
            serde_json::json!({"mercure": {"publish": ["a", "b"]}}),
            "s3cret",
        );
        let grant = PublishGrant::from_token(&key, &good).unwrap();
        assert!(grant.covers("a") && grant.covers("b") && !grant.covers("c"));
        let all = hs256(serde_json::json!({"mercure": {"publish": ["*"]}}), "s3cret");
        assert!(PublishGrant::from_token(&key, &all)
            .unwrap()
            .covers("anything"));
        let reason = |token: &str| PublishGrant::from_token(&key, token).unwrap_err();
        assert!(reason(&hs256(serde_json::json!({"mercure": {}}), "s3cret")).0);
        let (forbidden, why) = reason(&hs256(serde_json::json!({}), "other"));
        assert!(!forbidden && why.contains("signature"), "{why}");
        let expired = serde_json::json!({"exp": 1, "mercure": {"publish": ["*"]}});
        assert!(reason(&hs256(expired, "s3cret")).1.contains("expired"));
        assert!(reason("garbage").1.contains("not a valid JWT"));
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &serde_json::json!({"mercure": {"publish": ["*"]}}),
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        let why = reason(&hs384).1;
        assert!(why.contains("HS384") && why.contains("HS256"), "{why}");
    }

    #[test]
    fn a_publish_claim_selector_that_is_not_one_is_named() {
        let key = JwtKey::from_flag("s3cret", JwtAlg::Hs256).unwrap();
        let bad = hs256(
            serde_json::json!({"mercure": {"publish": ["a", ""]}}),
            "s3cret",
        );
        let (forbidden, why) = PublishGrant::from_token(&key, &bad).unwrap_err();
        assert!(forbidden && why.contains("mercure.publish"), "{why}");
    }

    #[test]
    fn publish_claims_hold_uri_templates() {
        let key = JwtKey::from_flag("s3cret", JwtAlg::Hs256).unwrap();
        let token = hs256(
            serde_json::json!({"mercure": {"publish": ["https://example.com/books/{id}"]}}),
            "s3cret",
        );
        let grant = PublishGrant::from_token(&key, &token).unwrap();
        assert!(grant.covers("https://example.com/books/1"));
        assert!(!grant.covers("https://example.com/authors/1"));
    }

    #[test]
    fn subscriber_grants() {
        let key = JwtKey::from_flag("s3cret", JwtAlg::Hs256).unwrap();
        let grant =
            |claims: serde_json::Value| SubscribeGrant::from_token(&key, &hs256(claims, "s3cret"));
        // Selectors, the payload as given, no expiry.
        let g = grant(serde_json::json!({"mercure": {
            "subscribe": ["a", "*", "https://example.com/books/{id}"],
            "payload": {"user": "ann", "n": [1, 2]},
        }}))
        .unwrap();
        let private = g.private.unwrap();
        assert_eq!(private.selectors().len(), 3);
        assert!(private.is_any());
        assert_eq!(g.payload.unwrap()["user"], "ann");
        assert!(g.expires_at.is_none());
        // No claim at all: a valid token, public events only.
        let g = grant(serde_json::json!({})).unwrap();
        assert!(g.private.is_none() && g.payload.is_none());
        // `exp` becomes an instant about that far ahead.
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let at = grant(serde_json::json!({"exp": exp}))
            .unwrap()
            .expires_at
            .unwrap();
        let left = at - Instant::now();
        assert!(
            left > Duration::from_secs(55) && left <= Duration::from_secs(61),
            "{left:?}"
        );
        // A selector that is not one is named; a bad token says why, as for publishers.
        let why = grant(serde_json::json!({"mercure": {"subscribe": ["ok", ""]}})).unwrap_err();
        assert!(
            why.contains("mercure.subscribe") && why.contains("\"\""),
            "{why}"
        );
        let why = grant(serde_json::json!({"exp": 1})).unwrap_err();
        assert!(why.contains("expired"), "{why}");
        let why = SubscribeGrant::from_token(&key, &hs256(serde_json::json!({}), "other"));
        assert!(why.unwrap_err().contains("signature"));
    }

    #[test]
    fn the_token_comes_from_header_then_query_then_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=b; mercureAuthorization=c".parse().unwrap(),
        );
        assert_eq!(token(&headers, "").as_deref(), Some("c"));
        assert_eq!(token(&headers, "authorization=q").as_deref(), Some("q"));
        headers.insert(header::AUTHORIZATION, "Bearer h".parse().unwrap());
        assert_eq!(token(&headers, "authorization=q").as_deref(), Some("h"));
        assert_eq!(token(&HeaderMap::new(), "topic=a"), None);
    }
}
