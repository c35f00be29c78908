//! SSH on the sign-in host, for `warren ssh` and `warren sign-key`, with
//! the command line's access token (`Authorization: Bearer`, from `warren
//! login`):
//! * `POST /cli/ssh/sign` `{"resource", "public_key"}`: a certificate for
//!   the key (`ssh::sign`), as JSON (`certificate`, `account`,
//!   `principals`, `key_id`, `serial`, `valid_before`, `sudo`, `vetoed`).
//!   Errors are JSON too: `error` (a code) and `message`.
//! * `GET /cli/ssh/connect?resource=NAME` with `Upgrade: warren-ssh`: the
//!   connection becomes a byte stream to the resource's sshd (the
//!   ProxyCommand of `warren ssh`), for users the policy grants it. sshd
//!   still asks for the certificate; this only carries the bytes.

use super::device::json_answer;
use super::SignIn;
use crate::proxy::dispatch::connect;
use crate::proxy::http::body::ResponseBody;
use crate::ssh::sign::{self, SignError};
use http::header::{self, HeaderMap};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use std::collections::HashMap;
use warren_identity::ssh_cert::{parse_sign_request, MAX_SIGN_REQUEST};
use warren_proto::TargetProtocol;

/// The `Upgrade` token of `GET /cli/ssh/connect`.
pub(crate) const UPGRADE: &str = "warren-ssh";

fn error(status: StatusCode, code: &str, message: &str) -> Response<ResponseBody> {
    json_answer(status, json!({ "error": code, "message": message }))
}

fn refused(e: &SignError) -> Response<ResponseBody> {
    let (status, code) = match e {
        SignError::NotGranted(_) => (StatusCode::FORBIDDEN, "not_granted"),
        SignError::NoPolicy => (StatusCode::FORBIDDEN, "no_policy"),
        SignError::SiteRefused(_) => (StatusCode::FORBIDDEN, "site_refused"),
        SignError::SiteUnavailable => (StatusCode::BAD_GATEWAY, "site_unavailable"),
        SignError::Ca => (StatusCode::INTERNAL_SERVER_ERROR, "ca_unavailable"),
    };
    error(status, code, &e.to_string())
}

impl SignIn<'_> {
    /// `POST /cli/ssh/sign`.
    pub(super) async fn ssh_sign(
        &self,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Response<ResponseBody> {
        let Some((who, _)) = self.bearer(headers) else {
            return self.invalid_token();
        };
        if !self
            .state
            .ssh_rate
            .allow(&who.email, std::time::Instant::now())
        {
            tracing::warn!(event = "ssh_sign_refused", user = %who.email, client = %self.ctx.client, reason = "rate", "more than {} certificates asked for in a minute", sign::PER_MINUTE);
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "too many certificates asked for in a minute",
            );
        }
        let bytes = match super::read_bounded(body, MAX_SIGN_REQUEST).await {
            Ok(b) => b,
            Err(status) => {
                let why = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "the request is too large"
                } else {
                    "the request came too slowly"
                };
                return error(status, "invalid_request", why);
            }
        };
        let request = match parse_sign_request(&bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(event = "ssh_sign_refused", user = %who.email, client = %self.ctx.client, error = %e, "a certificate request that does not parse");
                return error(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string());
            }
        };
        match sign::sign(&self.ctx.shared, &who, self.ctx.client, request).await {
            Ok(issued) => json_answer(StatusCode::OK, json!(issued)),
            Err(e) => refused(&e),
        }
    }

    /// `GET /cli/ssh/connect`.
    pub(super) async fn ssh_connect(
        &self,
        mut req: Request<Incoming>,
        query: &HashMap<String, String>,
    ) -> Response<ResponseBody> {
        let Some((who, _)) = self.bearer(req.headers()) else {
            return self.invalid_token();
        };
        let upgrade = req
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(UPGRADE.as_bytes()));
        if !upgrade {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "send Upgrade: warren-ssh (over HTTP/1.1)",
            );
        }
        let name = query.get("resource").map(String::as_str).unwrap_or("");
        let client = self.ctx.client;
        let shared = self.ctx.shared.clone();
        let (slot, resource, _, _) = match sign::terms(&shared, &who, name, client) {
            Ok(t) => t,
            Err(e) => return refused(&e),
        };
        let connected = match connect(&shared, &slot, TargetProtocol::Tcp, client, None, false)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(event = "connection_failed", resource = %resource.name, client = %client, error = %e, "could not reach the site");
                return refused(&SignError::SiteUnavailable);
            }
        };
        tracing::info!(event = "ssh_connected", resource = %resource.name, user = %who.email, client = %client, "an SSH connection through the edge");
        let crate::proxy::dispatch::Connected { stream, guards } = connected;
        let agent = guards.agent.agent().clone();
        super::splice_upgrade(&mut req, UPGRADE, stream, agent, guards, None)
    }
}
