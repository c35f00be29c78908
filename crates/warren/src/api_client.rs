//! A small client for the edge's admin API (`--api URL`, `--token`), used
//! by `warren status`, `warren site create|list|rotate|delete` and
//! `warren resource ...`. Plain HTTP only: the admin listener is meant for
//! loopback or a private network.

use crate::Failure;
use anyhow::{anyhow, Context};
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where the admin API is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub(crate) struct ApiArgs {
    /// The edge's admin API.
    #[arg(
        long,
        alias = "admin",
        env = "WARREN_API",
        default_value = "http://127.0.0.1:7080"
    )]
    pub(crate) api: String,
    /// An API token (`wrn_...`); the first one is in the edge's `data_dir/admin-token`.
    #[arg(long, env = "WARREN_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

impl ApiArgs {
    /// `host:port` of the API.
    pub(crate) fn authority(&self) -> Result<&str, Failure> {
        self.api
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'))
            .ok_or_else(|| {
                Failure::Usage("--api must be an http:// URL (the edge's admin_listen)".to_owned())
            })
    }

    /// Sends one request; a JSON body back on success. An API refusal
    /// (4xx) is a usage failure (exit 2) carrying the API's code and
    /// message; anything else exits 1.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let authority = self.authority()?.to_owned();
        let token = self.token.as_deref().ok_or_else(|| {
            Failure::Usage("the admin API needs a token: --token or WARREN_TOKEN (the first one is in the edge's data_dir/admin-token, and `warren up` prints it)".to_owned())
        })?;
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .with_context(|| format!("connecting to the admin API at {authority}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(anyhow::Error::from)?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &authority)
            .header("authorization", format!("Bearer {token}"));
        let bytes = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                v.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let req = req
            .body(Full::new(bytes::Bytes::from(bytes)))
            .map_err(anyhow::Error::from)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(anyhow::Error::from)?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(anyhow::Error::from)?
            .to_bytes();
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        if status.is_success() {
            return Ok(value);
        }
        let code = value["code"].as_str().unwrap_or("error");
        let message = value["message"].as_str().unwrap_or("(no message)");
        let text = format!("the edge refused: {code}: {message} (HTTP {status})");
        if status.is_client_error() {
            Err(Failure::Usage(text))
        } else {
            Err(Failure::Other(anyhow!(text)))
        }
    }
}
