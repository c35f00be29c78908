//! A resource's own doors (`auth = ["password", "pin", "link"]`): its
//! password or PIN typed on its own page, or a share link. Opening one
//! gives a pass (a signed cookie on that resource's host, `Kind::Pass`)
//! that names the door; it stops opening the resource when the door goes
//! (the method leaves `auth`, the password or PIN changes, the link is
//! revoked or expires). A door admits to its one resource and identifies
//! no one.

use super::{password, AuthState, Catalog, Claims, Kind};

impl AuthState {
    /// A pass through `resource`'s door `door` (`pin`, `password` or
    /// `link:ID`) on `host`, until `exp_ms`.
    pub(crate) fn pass(&self, resource: &str, door: &str, host: &str, exp_ms: i64) -> String {
        let now = warren_store::now_ms();
        self.signer.sign(
            Kind::Pass,
            &Claims {
                sid: resource.to_owned(),
                uid: door.to_owned(),
                host: host.to_owned(),
                iat: now,
                exp: exp_ms,
                ..Claims::default()
            },
        )
    }

    /// The door a pass cookie's value opened, if it still opens `resource`
    /// on `host`: the resource still lists that door, its password or PIN
    /// has not changed since, its link is live.
    pub(crate) fn check_pass(
        &self,
        catalog: &Catalog,
        resource: &crate::config::Resource,
        cookie: &str,
        host: &str,
        now_ms: i64,
    ) -> Option<String> {
        let claims = self.signer.check(Kind::Pass, cookie, now_ms, host).ok()?;
        if claims.sid != resource.name {
            return None;
        }
        let secret = |kind| {
            catalog
                .secrets
                .get(&(resource.name.clone(), kind))
                .is_some_and(|s: &warren_store::ResourceSecret| s.updated_ms <= claims.iat)
        };
        let open = match claims.uid.as_str() {
            "pin" => resource.doors.pin && secret(warren_store::SecretKind::Pin),
            "password" => resource.doors.password && secret(warren_store::SecretKind::Password),
            other => match other.strip_prefix("link:") {
                Some(id) => {
                    resource.doors.link
                        && catalog
                            .links
                            .values()
                            .any(|l| l.id == id && l.resource == resource.name && l.live(now_ms))
                }
                None => false,
            },
        };
        open.then_some(claims.uid)
    }

    /// The live share link of `resource` whose token is `token`.
    pub(crate) fn link<'c>(
        catalog: &'c Catalog,
        resource: &crate::config::Resource,
        token: &str,
        now_ms: i64,
    ) -> Option<&'c warren_store::ShareLink> {
        if !resource.doors.link || token.len() > 128 {
            return None;
        }
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
        catalog
            .links
            .get(&digest)
            .filter(|l| l.resource == resource.name && l.live(now_ms))
    }

    /// Opens `resource`'s password or PIN door with `secret` typed by a
    /// visitor from `client`: the limits first (per source, and per
    /// resource and door as the account), then argon2 in the bounded pool.
    pub(crate) async fn open_door(
        &self,
        catalog: &Catalog,
        resource: &str,
        kind: warren_store::SecretKind,
        secret: &str,
        client: std::net::IpAddr,
    ) -> Result<(), DoorRefused> {
        let account = format!("{}:{resource}", kind.as_str());
        let now = std::time::Instant::now();
        self.limits
            .attempt(client, &account, now)
            .map_err(|_| DoorRefused::Limited)?;
        let hash = catalog
            .secrets
            .get(&(resource.to_owned(), kind))
            .map(|s| s.hash.clone());
        let exists = hash.is_some();
        let ok = password::check(&self.verifier, hash.as_deref(), secret)
            .await
            .map_err(|_| DoorRefused::Busy)?;
        if ok {
            self.limits.succeeded(&account);
            Ok(())
        } else {
            if exists {
                self.limits.failed(&account, now);
            }
            Err(DoorRefused::Wrong)
        }
    }
}

/// Why a door stayed shut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DoorRefused {
    /// Too many attempts (from this source, or at this door).
    Limited,
    /// The password checks are all busy.
    Busy,
    /// Wrong (or no such door).
    Wrong,
}
