//! [`ApiKey`]: the secret an application backend presents to a server-side route, such as
//! rt-server's `POST /api/publish`.

use http::header::{self, HeaderMap};
use subtle::ConstantTimeEq;

use crate::{AuthFailure, Error, Observer};

/// A backend's API key, presented in `X-Api-Key` or `Authorization: Bearer`. Without a key
/// the route refuses everyone: a server API is never open by omission.
#[derive(Clone, Default)]
pub struct ApiKey {
    key: Option<String>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.key.as_ref().map(|_| "<redacted>");
        f.debug_struct("ApiKey").field("key", &key).finish()
    }
}

impl ApiKey {
    /// Accepts requests presenting `key`; an empty key (or `None`) accepts none.
    pub fn new(key: Option<String>) -> Self {
        // An empty key would let an empty header in.
        ApiKey {
            key: key.filter(|k| !k.is_empty()),
        }
    }

    /// `Ok` when `headers` present the key; otherwise why not (answered `401`), with the
    /// failure reported to `observer` under `route`.
    pub fn check(
        &self,
        headers: &HeaderMap,
        route: &'static str,
        observer: &dyn Observer,
    ) -> Result<(), Error> {
        let refused = |error| {
            let presented =
                headers.contains_key("x-api-key") || headers.contains_key(header::AUTHORIZATION);
            let failure = if presented {
                AuthFailure::Invalid
            } else {
                AuthFailure::Missing
            };
            observer.auth_failed(route, failure);
            Err(error)
        };
        let Some(expected) = &self.key else {
            return refused(Error::NoApiKey);
        };
        // Constant time, so the key cannot be guessed byte by byte from response timings.
        match presented(headers) {
            Some(key) if bool::from(key.ct_eq(expected.as_bytes())) => Ok(()),
            _ => refused(Error::WrongApiKey),
        }
    }
}

/// The key a request presents in `X-Api-Key` or `Authorization: Bearer`.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get("x-api-key") {
        return Some(v.as_bytes());
    }
    let auth = headers.get(header::AUTHORIZATION)?.as_bytes();
    auth.strip_prefix(b"Bearer ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Log;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn only_the_configured_key_passes() {
        let key = ApiKey::new(Some("s3cret".into()));
        assert!(key
            .check(&headers(&[("x-api-key", "s3cret")]), "api", &Log)
            .is_ok());
        let bearer = headers(&[("authorization", "Bearer s3cret")]);
        assert!(key.check(&bearer, "api", &Log).is_ok());
        for wrong in [headers(&[("x-api-key", "s3cre")]), headers(&[])] {
            let refused = key.check(&wrong, "api", &Log).unwrap_err();
            assert_eq!(refused.status(), http::StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn no_key_or_an_empty_key_refuses_everyone() {
        for key in [ApiKey::new(None), ApiKey::new(Some(String::new()))] {
            let empty = headers(&[("x-api-key", "")]);
            assert!(key.check(&empty, "api", &Log).is_err());
        }
    }
}
