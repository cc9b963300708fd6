//! JSON Web Token verification (feature `jwt`): the [`TokenVerifier`] turns a connection token
//! into [`Permissions`].
//!
//! Verification is delegated to the `jsonwebtoken` crate (pure-Rust crypto backend): signature
//! checks are exactly where hand-written code goes wrong.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use rt_core::{ChannelPattern, Error, Permissions};

use crate::auth::Authenticator;

/// Cuts untrusted input down before it is echoed back in an error message.
fn excerpt(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The claims rt reads from a connection token.
///
/// ```json
/// {"sub": "alice", "exp": 1767225600, "subscribe": ["chat:*", "news"], "publish": ["chat:alice"],
///  "presence": ["chat:*"], "info": {"name": "Alice"}}
/// ```
///
/// `exp` (seconds since the Unix epoch) is required: rt accepts no token that lives forever.
/// `subscribe`, `publish` and `presence` (whose presence may be read) are lists of
/// [`ChannelPattern`]s (missing means none); `info` is shown to who reads presence. `nbf`,
/// `aud` and `iss` are checked when present and configured. Other claims are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Channel patterns the holder may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Channel patterns the holder may publish on.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Channel patterns whose presence the holder may read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presence: Vec<String>,
    /// What others see of the holder in presence (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

/// How tokens are signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256, verified with a PEM public key.
    Rs256,
    /// ECDSA P-256 with SHA-256, verified with a PEM public key.
    Es256,
}

impl std::str::FromStr for TokenAlgorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_uppercase().as_str() {
            "HS256" => Ok(TokenAlgorithm::Hs256),
            "RS256" => Ok(TokenAlgorithm::Rs256),
            "ES256" => Ok(TokenAlgorithm::Es256),
            _ => Err(Error::InvalidKey(format!(
                "unknown algorithm {:?}; use HS256, RS256 or ES256",
                excerpt(s)
            ))),
        }
    }
}

/// Verifies connection tokens (JWT) and grants their [`Claims`] as [`Permissions`], adding the
/// anonymous grants every client has. It is the [`Authenticator`] of a server with tokens.
///
/// # Examples
///
/// ```
/// use rt_core::{Channel, ChannelPattern};
/// use rt_http::{Authenticator, TokenVerifier};
///
/// let verifier = TokenVerifier::hs256(b"a long random secret")
///     .unwrap()
///     .anonymous_subscribe(ChannelPattern::parse_list("public:*").unwrap());
/// // No token: only the anonymous namespace.
/// let anon = verifier.authenticate(None).unwrap();
/// assert!(anon.check_subscribe(&Channel::new("public:news").unwrap()).is_ok());
/// assert_eq!(anon.check_subscribe(&Channel::new("chat").unwrap()).unwrap_err().code(), "unauthorized");
/// // A token that is not a JWT.
/// assert_eq!(verifier.authenticate(Some("nope")).unwrap_err().code(), "unauthorized");
/// ```
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    anonymous: Permissions,
}

impl TokenVerifier {
    /// Verifies HS256 tokens signed with `secret` (which must not be empty).
    pub fn hs256(secret: &[u8]) -> Result<Self, Error> {
        if secret.is_empty() {
            return Err(Error::InvalidKey("the HS256 secret is empty".into()));
        }
        Ok(Self::with(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// Verifies RS256 or ES256 tokens with a PEM-encoded public key (`-----BEGIN PUBLIC
    /// KEY-----`; for RS256 also `BEGIN RSA PUBLIC KEY`).
    pub fn from_pem(algorithm: TokenAlgorithm, pem: &[u8]) -> Result<Self, Error> {
        let bad = |e: jsonwebtoken::errors::Error| {
            Error::InvalidKey(format!(
                "the public key is not a valid {algorithm:?} PEM key: {e}"
            ))
        };
        let (key, alg) = match algorithm {
            TokenAlgorithm::Hs256 => {
                return Err(Error::InvalidKey(
                    "HS256 uses a shared secret, not a PEM public key".into(),
                ))
            }
            TokenAlgorithm::Rs256 => (
                DecodingKey::from_rsa_pem(pem).map_err(bad)?,
                Algorithm::RS256,
            ),
            TokenAlgorithm::Es256 => (
                DecodingKey::from_ec_pem(pem).map_err(bad)?,
                Algorithm::ES256,
            ),
        };
        Ok(Self::with(key, alg))
    }

    fn with(key: DecodingKey, alg: Algorithm) -> Self {
        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        TokenVerifier {
            key,
            validation,
            anonymous: Permissions::anonymous(),
        }
    }

    /// Tolerated clock difference with the token issuer (default none). A connection lives
    /// until `exp` plus this.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// Only accepts tokens whose `aud` claim names `audience`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self
    }

    /// Only accepts tokens whose `iss` claim is `issuer`.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self
    }

    /// Channels anyone may subscribe to without a token.
    pub fn anonymous_subscribe(mut self, patterns: Vec<ChannelPattern>) -> Self {
        self.anonymous = self.anonymous.allow_subscribe(patterns);
        self
    }

    /// Channels anyone may publish on without a token.
    pub fn anonymous_publish(mut self, patterns: Vec<ChannelPattern>) -> Self {
        self.anonymous = self.anonymous.allow_publish(patterns);
        self
    }

    /// Checks `token`'s signature, algorithm, expiry (and `nbf`, `aud`, `iss`) and returns its
    /// claims. Errors are [`Error::TokenExpired`] or [`Error::Unauthorized`] saying why.
    pub fn verify(&self, token: &str) -> Result<Claims, Error> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Error::TokenExpired,
                ErrorKind::InvalidSignature => {
                    Error::Unauthorized("the token's signature does not verify".into())
                }
                ErrorKind::InvalidAlgorithm => Error::Unauthorized(format!(
                    "the token must be signed with {:?}",
                    self.validation.algorithms
                )),
                ErrorKind::MissingRequiredClaim(c) => {
                    Error::Unauthorized(format!("the token has no `{}` claim", excerpt(c)))
                }
                ErrorKind::ImmatureSignature => {
                    Error::Unauthorized("the token is not valid yet (`nbf`)".into())
                }
                ErrorKind::InvalidAudience => {
                    Error::Unauthorized("the token is for another audience (`aud`)".into())
                }
                ErrorKind::InvalidIssuer => {
                    Error::Unauthorized("the token is from another issuer (`iss`)".into())
                }
                // Our own words: the library's (`InvalidToken`, serde's lists of expected
                // variants) mean nothing to a client and say which library verifies tokens.
                ErrorKind::InvalidToken => Error::Unauthorized(
                    "the token is not a JWT: expected three base64url parts separated by dots"
                        .into(),
                ),
                ErrorKind::Base64(_) => {
                    Error::Unauthorized("the token is not valid base64url".into())
                }
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => Error::Unauthorized(
                    "the token's header or claims are not the JSON expected: a supported `alg`, \
                     `exp` as seconds since the Unix epoch, `subscribe` and `publish` as lists \
                     of channel patterns"
                        .into(),
                ),
                _ => Error::Unauthorized("the token could not be verified".into()),
            })
    }

    /// The permissions `claims` grant, plus the anonymous ones.
    pub fn permissions(&self, claims: Claims) -> Result<Permissions, Error> {
        let patterns = |list: &[String], claim: &str| {
            list.iter()
                .map(|p| ChannelPattern::new(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Unauthorized(format!("the token's `{claim}` claim: {e}")))
        };
        let subscribe = patterns(&claims.subscribe, "subscribe")?;
        let publish = patterns(&claims.publish, "publish")?;
        let presence = patterns(&claims.presence, "presence")?;
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(claims.exp))
            .and_then(|t| t.checked_add(Duration::from_secs(self.validation.leeway)))
            .unwrap_or_else(SystemTime::now);
        Ok(Permissions::new(claims.sub, Some(expires_at))
            .allow_subscribe(subscribe)
            .allow_subscribe(self.anonymous.subscribe_patterns().iter().cloned())
            .allow_publish(publish)
            .allow_publish(self.anonymous.publish_patterns().iter().cloned())
            .allow_presence(presence)
            .allow_presence(self.anonymous.presence_patterns().iter().cloned())
            .with_info(claims.info))
    }
}

impl Authenticator for TokenVerifier {
    fn authenticate(&self, token: Option<&str>) -> Result<Permissions, Error> {
        match token {
            None => Ok(self.anonymous.clone()),
            Some(token) => self.permissions(self.verify(token)?),
        }
    }
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("TokenVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("leeway", &self.validation.leeway)
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use rt_core::Channel;

    const SECRET: &[u8] = b"test secret";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: &serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::default(),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn ch(s: &str) -> Channel {
        Channel::new(s).unwrap()
    }

    #[test]
    fn hs256_grants_and_refusals() {
        let v = TokenVerifier::hs256(SECRET)
            .unwrap()
            .anonymous_subscribe(ChannelPattern::parse_list("public:*").unwrap());
        let good = token(
            &serde_json::json!({"sub":"alice","exp":now()+60,"subscribe":["chat:*"],"publish":["chat:alice"]}),
            SECRET,
        );
        let p = v.authenticate(Some(&good)).unwrap();
        assert_eq!(p.subject(), Some("alice"));
        assert!(p.check_subscribe(&ch("chat:x")).is_ok());
        assert!(p.check_subscribe(&ch("public:x")).is_ok());
        assert_eq!(
            p.check_subscribe(&ch("other")).unwrap_err().code(),
            "forbidden"
        );
        assert!(p.check_publish(&ch("chat:alice")).is_ok());
        assert_eq!(
            p.check_publish(&ch("chat:bob")).unwrap_err().code(),
            "forbidden"
        );
        assert!(p.expires_at().is_some());

        let expired = token(&serde_json::json!({"exp": now() - 10}), SECRET);
        assert_eq!(
            v.authenticate(Some(&expired)).unwrap_err(),
            Error::TokenExpired
        );
        let wrong = token(&serde_json::json!({"exp": now() + 60}), b"other secret");
        let e = v.authenticate(Some(&wrong)).unwrap_err();
        assert_eq!(e.code(), "unauthorized");
        assert!(e.to_string().contains("signature"), "{e}");
        let no_exp = token(&serde_json::json!({"sub": "x"}), SECRET);
        let e = v.authenticate(Some(&no_exp)).unwrap_err();
        assert!(e.to_string().contains("exp"), "{e}");
        let bad_pattern = token(
            &serde_json::json!({"exp": now() + 60, "subscribe": ["a*b"]}),
            SECRET,
        );
        let e = v.authenticate(Some(&bad_pattern)).unwrap_err();
        assert!(e.to_string().contains("subscribe"), "{e}");
        for garbage in ["", "a.b.c", "....", "eyJ.eyJ.x"] {
            assert_eq!(
                v.authenticate(Some(garbage)).unwrap_err().code(),
                "unauthorized"
            );
        }
        // Messages are in our words, never the library's.
        let b64 =
            |s: &str| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s);
        let unknown_alg = format!("{}.{}.x", b64(r#"{"alg":"XX1"}"#), b64("{}"));
        let bad_claims = format!(
            "{}.{}.x",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"exp":"soon"}"#)
        );
        for garbage in ["nope", "a.b", "!!.!!.!!", &unknown_alg, &bad_claims] {
            let message = v.authenticate(Some(garbage)).unwrap_err().to_string();
            for library in [
                "InvalidToken",
                "Base64",
                "Json",
                "Error(",
                "variant",
                "line ",
            ] {
                assert!(!message.contains(library), "{garbage}: {message}");
            }
            assert!(message.contains("token"), "{message}");
        }
        // The `none` algorithm is never accepted.
        let none = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                format!(r#"{{"exp":{}}}"#, now() + 60)
            )
        );
        assert_eq!(
            v.authenticate(Some(&none)).unwrap_err().code(),
            "unauthorized"
        );
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(TokenVerifier::hs256(b"").unwrap_err().code(), "invalid_key");
        assert_eq!(
            TokenVerifier::from_pem(TokenAlgorithm::Rs256, b"not a pem")
                .unwrap_err()
                .code(),
            "invalid_key"
        );
        assert!("hs256".parse::<TokenAlgorithm>().is_ok());
        assert!("none".parse::<TokenAlgorithm>().is_err());
    }
}
