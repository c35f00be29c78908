//! SSH user certificates, sans I/O: the request `warren ssh` and `warren
//! sign-key` send (checked and bounded before anything is done with it),
//! and the certificate the organisation's CA signs for it. The caller
//! decides who may have one and with what terms (the policy); this module
//! only writes exactly those terms.

use ssh_key::certificate::{Builder, CertType};
use ssh_key::public::KeyData;
use ssh_key::{Certificate, PrivateKey, PublicKey};

/// The largest request body read.
pub const MAX_SIGN_REQUEST: usize = 8 * 1024;
/// The longest resource name accepted (as resource names are).
const MAX_RESOURCE: usize = 64;
/// Smallest RSA modulus signed.
const MIN_RSA_BITS: usize = 2048;

/// A request for a certificate.
#[derive(Debug)]
pub struct SignRequest {
    /// The ssh resource (alias) it is for.
    pub resource: String,
    /// The key to certify.
    pub key: PublicKey,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    resource: String,
    public_key: String,
}

/// Why a request is refused (each says what to send instead).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignRequestError {
    /// Over [`MAX_SIGN_REQUEST`].
    #[error("the request is over {MAX_SIGN_REQUEST} bytes")]
    TooLarge,
    /// Not the JSON object `{"resource", "public_key"}`.
    #[error("expected {{\"resource\": NAME, \"public_key\": \"ssh-ed25519 AAAA...\"}}: {0}")]
    Json(String),
    /// The resource is not a resource name.
    #[error("\"resource\" is not a resource name")]
    Resource,
    /// The key is not one OpenSSH public key line.
    #[error("\"public_key\" is not an OpenSSH public key line: {0}")]
    Key(String),
    /// A certificate, or a key type not signed.
    #[error("{0} keys are not signed (ed25519, sk-ssh-ed25519 and RSA of 2048 bits and more are)")]
    Algorithm(String),
}

/// Reads and checks a request body.
pub fn parse_sign_request(body: &[u8]) -> Result<SignRequest, SignRequestError> {
    if body.len() > MAX_SIGN_REQUEST {
        return Err(SignRequestError::TooLarge);
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| {
        // serde's words, without the input they may quote.
        let s = e.to_string();
        SignRequestError::Json(s.split(" at line").next().unwrap_or("").to_owned())
    })?;
    let ok_name = !raw.resource.is_empty()
        && raw.resource.len() <= MAX_RESOURCE
        && raw
            .resource
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok_name {
        return Err(SignRequestError::Resource);
    }
    let key = PublicKey::from_openssh(raw.public_key.trim())
        .map_err(|e| SignRequestError::Key(e.to_string()))?;
    check_algorithm(&key)?;
    Ok(SignRequest {
        resource: raw.resource,
        key,
    })
}

fn check_algorithm(key: &PublicKey) -> Result<(), SignRequestError> {
    match key.key_data() {
        KeyData::Ed25519(_) | KeyData::SkEd25519(_) => Ok(()),
        KeyData::Rsa(rsa) => {
            let n = rsa.n.as_positive_bytes().unwrap_or_default();
            if n.len() * 8 >= MIN_RSA_BITS {
                Ok(())
            } else {
                Err(SignRequestError::Algorithm(format!(
                    "{}-bit RSA",
                    n.len() * 8
                )))
            }
        }
        other => Err(SignRequestError::Algorithm(
            other.algorithm().as_str().to_owned(),
        )),
    }
}

/// What a certificate says, as the caller decided it.
#[derive(Debug)]
pub struct CertTerms<'a> {
    /// Names the certificate in sshd's log: the user and the request.
    pub key_id: &'a str,
    /// Its serial.
    pub serial: u64,
    /// The principals it may log in as (never empty).
    pub principals: &'a [String],
    /// Extensions (`permit-pty`...), each with an empty value.
    pub extensions: &'a [String],
    /// The `source-address` critical option (comma-separated CIDRs).
    pub source_address: Option<&'a str>,
    /// Valid from (Unix seconds).
    pub valid_after: u64,
    /// Valid until (Unix seconds).
    pub valid_before: u64,
}

/// Why no certificate was signed.
#[derive(Debug, thiserror::Error)]
#[error("the certificate could not be signed: {0}")]
pub struct IssueError(String);

/// Signs a user certificate for `key` with exactly `terms`, with a random
/// `nonce`.
pub fn issue(
    ca: &PrivateKey,
    key: &PublicKey,
    terms: &CertTerms<'_>,
    nonce: [u8; 32],
) -> Result<Certificate, IssueError> {
    if terms.principals.is_empty() {
        // An empty list would be valid for every account.
        return Err(IssueError("no principal".into()));
    }
    let e = |e: ssh_key::Error| IssueError(e.to_string());
    let mut b = Builder::new(
        nonce.to_vec(),
        key.key_data().clone(),
        terms.valid_after,
        terms.valid_before,
    )
    .map_err(e)?;
    b.serial(terms.serial).map_err(e)?;
    b.cert_type(CertType::User).map_err(e)?;
    b.key_id(terms.key_id).map_err(e)?;
    for p in terms.principals {
        b.valid_principal(p.as_str()).map_err(e)?;
    }
    for x in terms.extensions {
        b.extension(x.as_str(), "").map_err(e)?;
    }
    if let Some(cidrs) = terms.source_address {
        b.critical_option("source-address", cidrs).map_err(e)?;
    }
    b.sign(ca).map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::rand_core::OsRng;
    use ssh_key::Algorithm;

    fn key() -> PrivateKey {
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap()
    }

    fn body(resource: &str, key: &str) -> Vec<u8> {
        serde_json::json!({ "resource": resource, "public_key": key })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn a_request_and_its_certificate() {
        let ca = key();
        let user = key();
        let line = user.public_key().to_openssh().unwrap();
        let req = parse_sign_request(&body("vm-01", &line)).unwrap();
        assert_eq!(req.resource, "vm-01");
        let principals = vec!["alice@corp.com".to_owned()];
        let extensions = vec!["permit-pty".to_owned()];
        let cert = issue(
            &ca,
            &req.key,
            &CertTerms {
                key_id: "alice@corp.com#1",
                serial: 7,
                principals: &principals,
                extensions: &extensions,
                source_address: Some("10.0.0.0/8"),
                valid_after: 1000,
                valid_before: 1300,
            },
            [1; 32],
        )
        .unwrap();
        assert_eq!(cert.valid_principals(), principals.as_slice());
        assert_eq!(cert.serial(), 7);
        assert_eq!(cert.key_id(), "alice@corp.com#1");
        assert_eq!(cert.extensions().len(), 1);
        let fp = ca.public_key().fingerprint(Default::default());
        cert.validate_at(1100, [&fp]).unwrap();
        assert!(cert.validate_at(1400, [&fp]).is_err(), "expired");
        let other = key().public_key().fingerprint(Default::default());
        assert!(cert.validate_at(1100, [&other]).is_err(), "another CA");
        assert!(issue(
            &ca,
            &req.key,
            &CertTerms {
                principals: &[],
                key_id: "",
                serial: 0,
                extensions: &[],
                source_address: None,
                valid_after: 0,
                valid_before: 1
            },
            [0; 32]
        )
        .is_err());
    }

    #[test]
    fn bad_requests_are_refused_with_their_reason() {
        let line = key().public_key().to_openssh().unwrap();
        assert_eq!(
            parse_sign_request(&vec![b' '; MAX_SIGN_REQUEST + 1]).unwrap_err(),
            SignRequestError::TooLarge
        );
        assert!(matches!(
            parse_sign_request(b"{\"resource\":\"x\"}").unwrap_err(),
            SignRequestError::Json(_)
        ));
        assert!(matches!(
            parse_sign_request(
                format!(
                    "{{\"resource\":\"x\",\"public_key\":\"{line}\",\"principals\":[\"root\"]}}"
                )
                .as_bytes()
            )
            .unwrap_err(),
            SignRequestError::Json(_)
        ));
        assert_eq!(
            parse_sign_request(&body("../x y", &line)).unwrap_err(),
            SignRequestError::Resource
        );
        assert!(matches!(
            parse_sign_request(&body("x", "ssh-ed25519 AAAA")).unwrap_err(),
            SignRequestError::Key(_)
        ));
    }
}
