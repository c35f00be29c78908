//! `warren connect` on the sign-in host: `GET /cli/connect?to=HOST:PORT`
//! with `Upgrade: warren-connect` and the command line's access token
//! becomes a byte stream to a private resource — the same resources and
//! grants a device reaches over WireGuard, for machines where a WireGuard
//! interface is not wanted. `HOST` is a private resource's name, its alias
//! or an address in it; the port must be one of its ports (TCP).
//!
//! The user's grants decide (`access::check_device`, audited as method
//! `connect`), and the stream is opened to an agent of the resource's site
//! before the upgrade is answered, so every refusal is an HTTP answer the
//! command line can show: 404 (no such private resource or port), 403 (not
//! granted, or the agent's allowlist refused), 502 (no agent answered).

use super::device::json_answer;
use super::SignIn;
use crate::access::{check_device, Access, DeviceWho};
use crate::proxy::dispatch::{open_to_site, DispatchError};
use crate::proxy::http::body::ResponseBody;
use http::header;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use std::collections::HashMap;
use warren_proto::TargetProtocol;

/// The `Upgrade` token of `GET /cli/connect`.
pub(crate) const UPGRADE: &str = "warren-connect";

fn error(status: StatusCode, code: &str, message: &str) -> Response<ResponseBody> {
    json_answer(status, json!({ "error": code, "message": message }))
}

impl SignIn<'_> {
    /// `GET /cli/connect`.
    pub(super) async fn connect(
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
                "send Upgrade: warren-connect (over HTTP/1.1)",
            );
        }
        let to = query.get("to").map(String::as_str).unwrap_or("");
        let shared = self.ctx.shared.clone();
        let Some((resource, dst)) = crate::devices::resolve_target(&shared, to) else {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no private resource has that name, alias or address and port",
            );
        };
        let client = self.ctx.client;
        let src = match client {
            std::net::SocketAddr::V4(v4) => v4,
            std::net::SocketAddr::V6(_) => std::net::SocketAddrV4::new([0, 0, 0, 0].into(), 0),
        };
        let principal = DeviceWho {
            device: None,
            email: &who.email,
            groups: &who.groups,
            tags: &[],
        };
        let proto = warren_policy::Proto::Tcp;
        let (access, escalated) = check_device(&shared, &resource, &principal, src, dst, proto);
        if !matches!(access, Access::Granted { .. }) {
            return error(
                StatusCode::FORBIDDEN,
                "not_granted",
                "the policy does not let you reach that",
            );
        }
        let site = resource
            .private
            .as_ref()
            .map(|p| p.site.clone())
            .unwrap_or_default();
        let opened = open_to_site(
            &shared,
            &resource.name,
            &site,
            &dst.to_string(),
            TargetProtocol::Tcp,
            client,
        )
        .await;
        let (stream, guard) = match opened {
            Ok(s) => s,
            Err(DispatchError::Refused { .. }) => {
                return error(
                    StatusCode::FORBIDDEN,
                    "site_refused",
                    "the site refused the connection",
                )
            }
            Err(e) => {
                tracing::warn!(event = "connection_failed", resource = %resource.name, client = %client, error = %e, "could not reach the site");
                return error(
                    StatusCode::BAD_GATEWAY,
                    "site_unavailable",
                    "no agent of the site answered",
                );
            }
        };
        tracing::info!(event = "connect_opened", resource = %resource.name, user = %who.email, client = %client, destination = %dst, "a warren connect stream through the edge");
        let agent = guard.agent().clone();
        // Allowed by an escalated grant: cut when its window ends.
        super::splice_upgrade(&mut req, UPGRADE, stream, agent, guard, escalated)
    }
}
