//! The signed assertion of who a visitor is, for origins that check it
//! rather than trust `Remote-User`: an ES256 JWT in `Warren-Jwt-Assertion`
//! (audience: the resource's name, 5 minutes), whose public keys are
//! published at `https://<sign-in host>/.well-known/warren/jwks.json`.
//!
//! The key pair is made once and kept in the store (`edge_keys`), so every
//! edge on the store signs with it. Signing costs an ECDSA signature, so an
//! assertion is reused for the same session and resource for a minute
//! (bounded cache); the origin sees at most a minute-old `iat`.

use crate::auth::Identity;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long an assertion is valid.
pub(crate) const LIFETIME_S: i64 = 300;
/// How long one is reused.
const REUSE_MS: i64 = 60_000;
/// At most this many cached assertions.
const MAX_CACHED: usize = 10_000;

/// Signs assertions with the store's key pair.
pub(crate) struct Assertions {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
    cache: Mutex<HashMap<(String, String), (i64, String)>>,
}

/// A fresh key pair, as the store keeps it (PKCS#8, hex).
pub(crate) fn new_key() -> String {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .expect("generating a P-256 key cannot fail");
    hex::encode(doc.as_ref())
}

impl Assertions {
    /// From the stored key pair (PKCS#8, hex).
    pub(crate) fn new(pkcs8_hex: &str) -> Result<Assertions, String> {
        let der = hex::decode(pkcs8_hex).map_err(|e| e.to_string())?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|e| e.to_string())?;
        let kid = hex::encode(&Sha256::digest(key.public_key().as_ref())[..8]);
        Ok(Assertions {
            key,
            kid,
            rng: SystemRandom::new(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The JWKS document with the public key.
    pub(crate) fn jwks(&self) -> serde_json::Value {
        let point = self.key.public_key().as_ref();
        // Uncompressed SEC1: 0x04 || X (32) || Y (32).
        let (x, y) = (&point[1..33], &point[33..65]);
        serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]})
    }

    /// The assertion for `who` in session `sid` reaching `resource`, issued
    /// by `issuer` (the sign-in host's URL), at `now_ms`.
    pub(crate) fn assertion(
        &self,
        who: &Identity,
        sid: &str,
        resource: &str,
        issuer: &str,
        now_ms: i64,
    ) -> String {
        let key = (sid.to_owned(), resource.to_owned());
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, jwt)) = cache.get(&key) {
                if now_ms - at < REUSE_MS && now_ms >= *at {
                    return jwt.clone();
                }
            }
        }
        let jwt = self.sign(who, resource, issuer, now_ms / 1000);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| now_ms - *at < REUSE_MS);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (now_ms, jwt.clone()));
        jwt
    }

    fn sign(&self, who: &Identity, resource: &str, issuer: &str, now_s: i64) -> String {
        let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": self.kid });
        let claims = serde_json::json!({
            "iss": issuer, "aud": resource, "sub": who.user_id, "email": who.email,
            "name": who.name, "groups": who.groups, "iat": now_s, "nbf": now_s,
            "exp": now_s + LIFETIME_S,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ECDSA signing cannot fail with a valid key");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn an_assertion_verifies_with_the_published_key_and_names_its_audience() {
        let a = Assertions::new(&new_key()).unwrap();
        let who = Identity {
            session: "s1".into(),
            user_id: "u1".into(),
            email: "alice@corp.com".into(),
            name: "Alice".into(),
            groups: vec!["group:ops".into()],
        };
        let jwt = a.assertion(&who, "s1", "grafana", "https://auth.example.com", 1_000_000);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let jwks = a.jwks();
        let k = &jwks["keys"][0];
        let mut point = vec![4u8];
        point.extend(URL_SAFE_NO_PAD.decode(k["x"].as_str().unwrap()).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(k["y"].as_str().unwrap()).unwrap());
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("verifies with the JWKS key");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "grafana");
        assert_eq!(claims["email"], "alice@corp.com");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            LIFETIME_S
        );
        // Reused within a minute, for the same session and resource only.
        assert_eq!(
            a.assertion(&who, "s1", "grafana", "https://auth.example.com", 1_030_000),
            jwt
        );
        assert_ne!(
            a.assertion(&who, "s1", "wiki", "https://auth.example.com", 1_030_000),
            jwt
        );
        assert_ne!(
            a.assertion(&who, "s1", "grafana", "https://auth.example.com", 1_061_000),
            jwt
        );
    }
}
