//! Asking a site to let a user into an SSH host: one `ssh-user` stream to
//! the resource's target (`warren_proto::ssh_user`), a request out, the
//! site's answer back, each bounded in size and time.

use crate::config::Resource;
use crate::proxy::dispatch::open_to_site;
use crate::EdgeShared;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_proto::ssh_user::{SshUserReply, SshUserRequest, MAX_MESSAGE};
use warren_proto::TargetProtocol;

/// How long the site may take (it may run `useradd` and `visudo`).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the site gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SiteError {
    #[error(transparent)]
    Dispatch(#[from] crate::proxy::dispatch::DispatchError),
    #[error("the site's answer did not come within {ANSWER_TIMEOUT:?}")]
    Timeout,
    #[error("the site's answer could not be read: {0}")]
    Garbled(String),
}

/// The site's answer for `request` on `resource`'s (one) target.
pub(crate) async fn let_in(
    shared: &EdgeShared,
    resource: &Resource,
    client: SocketAddr,
    request: &SshUserRequest,
) -> Result<SshUserReply, SiteError> {
    let target = &resource.targets[0];
    let bytes = request
        .encode()
        .map_err(|e| SiteError::Garbled(e.to_string()))?;
    let (mut stream, _guard) = open_to_site(
        shared,
        &resource.name,
        &target.site,
        &target.address,
        TargetProtocol::SshUser,
        client,
    )
    .await?;
    let exchange = async {
        stream.write_all(&bytes).await?;
        let len = stream.read_u16().await? as usize;
        if len > MAX_MESSAGE {
            return Err(std::io::Error::other(format!(
                "{len} bytes, over {MAX_MESSAGE}"
            )));
        }
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await?;
        Ok(buf)
    };
    let buf = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .map_err(|_| SiteError::Timeout)?
        .map_err(|e| SiteError::Garbled(e.to_string()))?;
    SshUserReply::decode(&buf).map_err(|e| SiteError::Garbled(e.to_string()))
}
