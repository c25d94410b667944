//! JWT authorization with Mercure's claims: a token's `mercure.publish` says which topics its
//! bearer may publish to. Tokens come from `Authorization: Bearer`, else the `authorization`
//! query parameter, else the `mercureAuthorization` cookie. Every refusal says why in one line.

use std::fmt;
use std::str::FromStr;

use axum::http::{header, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::query::parse_query;

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

    /// Checks the token's signature, algorithm and times; returns its `mercure` claims.
    fn verify(&self, token: &str) -> Result<MercureClaims, String> {
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
        match jsonwebtoken::decode::<Claims>(token, &self.key, &validation) {
            Ok(data) => Ok(data.claims.mercure.unwrap_or_default()),
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
    #[serde(default)]
    mercure: Option<MercureClaims>,
}

#[derive(Deserialize, Default)]
struct MercureClaims {
    #[serde(default)]
    publish: Option<Vec<String>>,
}

/// The token a request carries: the `Authorization: Bearer` header, else the `authorization`
/// query parameter, else the `mercureAuthorization` cookie.
pub(crate) fn token(headers: &HeaderMap, query: &str) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or("");
        return Some(value.strip_prefix("Bearer ").unwrap_or("").to_string());
    }
    // Most requests carry no token in the query: don't decode it a second time for nothing.
    let in_query = query
        .contains("authorization=")
        .then(|| parse_query(query).ok());
    if let Some((_, value)) = in_query
        .flatten()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "authorization"))
    {
        return Some(value);
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == "mercureAuthorization").then(|| value.to_string())
        })
}

/// The topics a verified publisher may publish to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishGrant {
    selectors: Vec<String>,
}

impl PublishGrant {
    /// Verifies `token`; its `mercure.publish` claim becomes the grant. `Err`: a one-line reason,
    /// and whether it is a `403` (a valid token without the claim) rather than a `401`.
    pub(crate) fn from_token(key: &JwtKey, token: &str) -> Result<PublishGrant, (bool, String)> {
        let claims = key.verify(token).map_err(|reason| (false, reason))?;
        match claims.publish {
            Some(selectors) => Ok(PublishGrant { selectors }),
            None => Err((
                true,
                "the token has no mercure.publish claim: it may not publish".into(),
            )),
        }
    }

    /// The grant covers `topic`: a selector names it exactly, or is `*`. (URI templates come with
    /// the Mercure front.)
    pub(crate) fn covers(&self, topic: &str) -> bool {
        self.selectors.iter().any(|s| s == "*" || s == topic)
    }
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
