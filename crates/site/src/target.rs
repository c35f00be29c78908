//! Which addresses a requested target may reach: the allowlist check, before
//! any connection attempt.
//!
//! For a name target the agent resolves the name itself and connects only to
//! addresses it has just checked, so a DNS answer cannot slip a forbidden
//! address in between check and connect.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use warren_egress::{Allowlist, NameDecision, Protocol};
use warren_proto::RefuseReason;

/// Why a stream was not served.
pub(crate) struct Refusal {
    pub(crate) reason: RefuseReason,
    pub(crate) message: String,
}

pub(crate) fn refuse(reason: RefuseReason, message: String) -> Refusal {
    Refusal { reason, message }
}

/// Splits `host:port` / `[v6]:port`.
fn split_target(target: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        (h, tail.strip_prefix(':')?)
    } else {
        target.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    (!host.is_empty()).then_some((host, port))
}

/// The addresses the agent may connect to for this request, or a refusal.
pub(crate) async fn permitted_addrs(
    allow: &Allowlist,
    target: &str,
    protocol: Protocol,
) -> Result<Vec<SocketAddr>, Refusal> {
    let (host, port) = split_target(target).ok_or_else(|| {
        refuse(
            RefuseReason::BadRequest,
            format!("target `{target}` is not HOST:PORT"),
        )
    })?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if allow.permits_addr(ip, port, protocol) {
            Ok(vec![SocketAddr::new(ip, port)])
        } else {
            Err(refuse(
                RefuseReason::NotAllowed,
                format!("{target}/{protocol} is not on this agent's allowlist"),
            ))
        };
    }
    let decision = allow.check_name(host, port, protocol);
    if decision == NameDecision::NotCovered {
        // Nothing could be permitted on this port: not even a lookup.
        return Err(refuse(
            RefuseReason::NotAllowed,
            format!("{target}/{protocol} is not on this agent's allowlist"),
        ));
    }
    let resolved: Vec<SocketAddr> = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((host, port)),
    )
    .await
    .map_err(|_| {
        refuse(
            RefuseReason::ResolveFailed,
            format!("resolving `{host}` timed out"),
        )
    })?
    .map_err(|e| {
        refuse(
            RefuseReason::ResolveFailed,
            format!("resolving `{host}`: {e}"),
        )
    })?
    .collect();
    match decision {
        NameDecision::Listed => Ok(resolved),
        // (NotCovered returned above; checking its addresses would refuse too.)
        NameDecision::CheckAddresses | NameDecision::NotCovered => {
            let ok: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| allow.permits_addr(a.ip(), port, protocol))
                .collect();
            if ok.is_empty() {
                let shown: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
                Err(refuse(
                    RefuseReason::NotAllowed,
                    format!(
                        "{target}/{protocol} is not on this agent's allowlist (resolves to {})",
                        if shown.is_empty() {
                            "nothing".into()
                        } else {
                            shown.join(", ")
                        }
                    ),
                ))
            } else {
                Ok(ok)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split() {
        assert_eq!(split_target("127.0.0.1:80"), Some(("127.0.0.1", 80)));
        assert_eq!(split_target("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split_target("nas.lan:445"), Some(("nas.lan", 445)));
        assert_eq!(split_target("nas.lan:0"), None);
        assert_eq!(split_target(":80"), None);
        assert_eq!(split_target("nas.lan"), None);
    }

    #[tokio::test]
    async fn names_not_listed_are_checked_by_address() {
        let allow = Allowlist::parse(["127.0.0.1:8080/tcp"]).unwrap();
        // `localhost` is not listed, but resolves to a listed address.
        // Only the listed address is kept (a `::1` for it is dropped).
        let addrs = match permitted_addrs(&allow, "localhost:8080", Protocol::Tcp).await {
            Ok(addrs) => addrs,
            Err(r) => panic!("localhost (127.0.0.1 is listed) refused: {}", r.message),
        };
        assert!(!addrs.is_empty());
        let listed: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(addrs.iter().all(|a| *a == listed), "{addrs:?}");
        let refused = permitted_addrs(&allow, "localhost:8081", Protocol::Tcp).await;
        assert!(matches!(
            refused,
            Err(Refusal {
                reason: RefuseReason::NotAllowed,
                ..
            })
        ));
        let refused = permitted_addrs(&allow, "127.0.0.2:8080", Protocol::Tcp).await;
        assert!(matches!(
            refused,
            Err(Refusal {
                reason: RefuseReason::NotAllowed,
                ..
            })
        ));
    }
}
