//! Single sign-on with OpenID Connect providers (`[[auth.oidc]]`), through
//! the `openidconnect` crate: authorization code with PKCE (S256), `state`
//! and `nonce` checked, the ID token's signature, issuer, audience and
//! expiry verified against the provider's published keys.
//!
//! The discovery document and its keys are read on first use and kept for
//! [`METADATA_TTL`]; a token signed by a key not among them makes one
//! early re-read (at most every [`REFRESH_MIN`]), so a provider's key
//! rotation is followed without a restart and a forger cannot make the
//! edge hammer the provider.
//!
//! Nothing here keeps per-visitor state: what the return needs (state,
//! nonce, PKCE verifier, where to go) travels in a signed cookie
//! (`token::Kind::Sso`), so any edge sharing the store can finish a sign-on
//! another began. The pages are `proxy::http::signin::sso`.

pub(crate) mod http;

use crate::config::OidcProvider;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError,
    TokenResponse,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a provider's discovery document and keys are kept.
pub(crate) const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The soonest they are read again for an unknown signing key.
pub(crate) const REFRESH_MIN: Duration = Duration::from_secs(10);

/// Why a sign-on failed: logged in full; the visitor is told only that it
/// failed (and, for a refused email, why).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SsoError {
    /// The provider's discovery document or keys could not be read.
    #[error("discovery: {0}")]
    Discovery(String),
    /// The code was not exchanged for tokens.
    #[error("token exchange: {0}")]
    Exchange(String),
    /// The token answer had no ID token.
    #[error("the provider sent no ID token")]
    NoIdToken,
    /// The ID token did not verify (signature, issuer, audience, expiry,
    /// nonce).
    #[error("ID token: {0}")]
    Claims(String),
    /// No email claim (ask for the `email` scope).
    #[error("the ID token has no email")]
    NoEmail,
    /// The provider says the email is not verified.
    #[error("the provider has not verified the email `{0}`")]
    Unverified(String),
    /// Refused by the domain allowlist, or not an address.
    #[error("email: {0}")]
    Email(#[from] warren_identity::email::EmailError),
}

/// What a redirect to the provider needs remembered until it returns.
pub(crate) struct Start {
    /// Where to send the browser.
    pub(crate) url: String,
    /// The OAuth `state`.
    pub(crate) state: String,
    /// The OpenID `nonce`.
    pub(crate) nonce: String,
    /// The PKCE verifier.
    pub(crate) pkce: String,
}

/// Who the provider says signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SsoUser {
    /// Lower case, allowed by the domain list.
    pub(crate) email: String,
    /// The `name` claim, or the email.
    pub(crate) name: String,
    /// `group:NAME`s from the claims.
    pub(crate) groups: Vec<String>,
}

/// The providers of the live configuration.
#[derive(Default)]
pub(crate) struct Sso {
    providers: Mutex<HashMap<String, Arc<Provider>>>,
}

impl Sso {
    /// The live provider for `config` (made anew when its settings change).
    pub(crate) fn provider(&self, config: &OidcProvider) -> Result<Arc<Provider>, SsoError> {
        let mut map = self.providers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&config.name).filter(|p| p.config == *config) {
            return Ok(p.clone());
        }
        let p = Arc::new(Provider::new(config.clone())?);
        map.insert(config.name.clone(), p.clone());
        Ok(p)
    }
}

/// One provider: its settings, client and cached discovery document.
pub(crate) struct Provider {
    config: OidcProvider,
    http: http::Client,
    /// The discovery document (with the keys), when it was read, and when
    /// it was last read early for an unknown key.
    metadata: tokio::sync::Mutex<Metadata>,
}

#[derive(Default)]
struct Metadata {
    doc: Option<(Arc<CoreProviderMetadata>, Instant)>,
    last_refresh: Option<Instant>,
}

impl Provider {
    fn new(config: OidcProvider) -> Result<Provider, SsoError> {
        let http = http::Client::new(config.ca.as_deref())
            .map_err(|e| SsoError::Discovery(e.to_string()))?;
        Ok(Provider {
            config,
            http,
            metadata: tokio::sync::Mutex::new(Metadata::default()),
        })
    }

    /// The discovery document, read again when older than
    /// [`METADATA_TTL`] or when `refresh` (and not read in the last
    /// [`REFRESH_MIN`]).
    async fn metadata(&self, refresh: bool) -> Result<Arc<CoreProviderMetadata>, SsoError> {
        let mut m = self.metadata.lock().await;
        let fresh = m
            .doc
            .as_ref()
            .filter(|(_, at)| at.elapsed() < METADATA_TTL)
            .map(|(doc, _)| doc.clone());
        let may_refresh = m.last_refresh.is_none_or(|at| at.elapsed() >= REFRESH_MIN);
        match fresh {
            Some(doc) if !(refresh && may_refresh) => return Ok(doc),
            _ => {}
        }
        if refresh {
            m.last_refresh = Some(Instant::now());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| SsoError::Discovery(e.to_string()))?;
        let doc = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| SsoError::Discovery(chain(&e)))?;
        let doc = Arc::new(doc);
        m.doc = Some((doc.clone(), Instant::now()));
        tracing::info!(event = "sso_discovered", provider = %self.config.name, issuer = %self.config.issuer, "read the provider's discovery document and keys");
        Ok(doc)
    }

    fn client(
        &self,
        doc: &CoreProviderMetadata,
        redirect: &str,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        SsoError,
    > {
        let redirect = RedirectUrl::new(redirect.to_owned())
            .map_err(|e| SsoError::Discovery(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            doc.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_owned(),
            )),
        )
        .set_redirect_uri(redirect))
    }

    /// The provider's authorization URL for a new sign-on returning to
    /// `redirect`, with what its return must be checked against.
    pub(crate) async fn start(&self, redirect: &str) -> Result<Start, SsoError> {
        let doc = self.metadata(false).await?;
        let client = self.client(&doc, redirect)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Start {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce: verifier.secret().clone(),
        })
    }

    /// Exchanges `code` (with the PKCE verifier) for tokens, verifies the
    /// ID token (nonce included), and maps its claims.
    pub(crate) async fn finish(
        &self,
        redirect: &str,
        code: &str,
        nonce: &str,
        pkce: &str,
    ) -> Result<SsoUser, SsoError> {
        let doc = self.metadata(false).await?;
        let client = self.client(&doc, redirect)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SsoError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| SsoError::Exchange(chain(&e)))?;
        let id_token = tokens.id_token().ok_or(SsoError::NoIdToken)?;
        let nonce = Nonce::new(nonce.to_owned());
        match self.verify(&client, id_token, &nonce) {
            Err(SsoError::Claims(why)) if why == UNKNOWN_KEY => {
                // Perhaps the provider rotated its keys: read them again
                // (rate limited) and try once more.
                let doc = self.metadata(true).await?;
                let client = self.client(&doc, redirect)?;
                self.verify(&client, id_token, &nonce)
            }
            other => other,
        }
    }

    fn verify(
        &self,
        client: &CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        id_token: &CoreIdToken,
        nonce: &Nonce,
    ) -> Result<SsoUser, SsoError> {
        let claims = id_token
            .claims(&client.id_token_verifier(), nonce)
            .map_err(|e| match e {
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                ) => SsoError::Claims(UNKNOWN_KEY.into()),
                other => SsoError::Claims(chain(&other)),
            })?;
        let email = claims.email().ok_or(SsoError::NoEmail)?.as_str();
        if claims.email_verified() == Some(false) {
            return Err(SsoError::Unverified(email.to_owned()));
        }
        let email = warren_identity::email::check(email, &self.config.allowed_domains)?;
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().chars().take(128).collect())
            .unwrap_or_else(|| email.clone());
        // The same bytes whose signature was just verified, read for the
        // claims the crate does not model (groups and the like).
        let raw = payload(&id_token.to_string()).unwrap_or_default();
        let groups = warren_identity::claims::groups(
            &raw,
            self.config.groups_claim.as_deref(),
            self.config
                .group_rules
                .iter()
                .map(|r| (r.claim.as_str(), r.value.as_str(), r.group.as_str())),
        );
        Ok(SsoUser {
            email,
            name,
            groups,
        })
    }
}

const UNKNOWN_KEY: &str = "signed with a key the provider does not publish";

/// The JSON payload of a compact JWS (already verified by the caller).
fn payload(jws: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let part = jws.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An error with its causes, for the log.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
