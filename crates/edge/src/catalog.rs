//! The catalog: one immutable snapshot of who the edge knows, built by one
//! function ([`Catalog::build`]) from the config file and the store, and
//! swapped whole (`EdgeShared::catalog`, an `ArcSwap`). Admission, routing
//! of agents to sites, the status API and the metrics read it; none of them
//! awaits the database. Today it holds the sites with their credentials
//! and tags, the API keys, the users, and resources' own doors (password,
//! PIN, live share links); devices join it later.
//!
//! It is rebuilt wherever the serving configuration is (start, reload, the
//! store's `config_version` moving, an API write), under the same lock.

use crate::config::EdgeConfig;
use crate::tunnel::credentials::SiteSecret;
use std::collections::BTreeMap;
use warren_store::{
    ApiKeyRecord, ManagedBy, ResourceSecret, SecretKind, SecretRecord, ShareLink, SiteRecord,
    Store, StoreError, UserRecord,
};

/// One secret a site's agents may present.
#[derive(Clone, Debug)]
pub(crate) struct Credential {
    pub(crate) secret: SiteSecret,
    /// For a rotated-out secret: until when it is accepted (Unix ms).
    pub(crate) until_ms: Option<i64>,
    /// A stored secret's id and hash (API sites), to store it again in a
    /// faster form after a good check.
    pub(crate) stored: Option<(String, String)>,
}

/// A site as the edge knows it.
#[derive(Clone, Debug)]
pub(crate) struct CatalogSite {
    /// Current first, then rotated-out ones in their grace period.
    pub(crate) credentials: Vec<Credential>,
    /// The `tag:NAME`s the policy names it by.
    pub(crate) tags: Vec<String>,
}

/// Who the edge knows.
#[derive(Clone, Debug, Default)]
pub(crate) struct Catalog {
    pub(crate) sites: BTreeMap<String, CatalogSite>,
    /// API keys by id (with their hashes), for the access phase: a key
    /// presented on the data path is checked without awaiting the store.
    pub(crate) keys: BTreeMap<String, ApiKeyRecord>,
    /// Users by id (with their password hashes), for sign-in and sessions.
    pub(crate) users: BTreeMap<String, UserRecord>,
    /// Resources' passwords and PINs, by resource and kind.
    pub(crate) secrets: BTreeMap<(String, SecretKind), ResourceSecret>,
    /// Share links by the SHA-256 (hex) of their token.
    pub(crate) links: BTreeMap<String, ShareLink>,
}

impl Catalog {
    /// The catalog from the config file and the store's API-made sites
    /// with their secrets (`store_sites`). A file site wins over a store
    /// site of the same id. An unreadable stored hash is left out, with a
    /// warning.
    pub(crate) fn build(
        file: &EdgeConfig,
        store_sites: Vec<(SiteRecord, Vec<SecretRecord>)>,
        keys: Vec<ApiKeyRecord>,
        users: Vec<UserRecord>,
    ) -> Catalog {
        let mut sites: BTreeMap<String, CatalogSite> = file
            .sites
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    CatalogSite {
                        credentials: vec![Credential {
                            secret: s.secret.clone(),
                            until_ms: None,
                            stored: None,
                        }],
                        tags: s.tags.clone(),
                    },
                )
            })
            .collect();
        for (site, secrets) in store_sites {
            if site.managed_by != ManagedBy::Api || sites.contains_key(&site.id) {
                continue;
            }
            let credentials = secrets
                .into_iter()
                .filter_map(|s| {
                    let until_ms = s.retired_ms.map(|_| s.grace_until_ms.unwrap_or(0));
                    match SiteSecret::from_hash(&s.secret_hash) {
                        Ok(secret) => Some(Credential {
                            secret,
                            until_ms,
                            stored: Some((s.id, s.secret_hash)),
                        }),
                        Err(e) => {
                            tracing::warn!(site = %site.id, error = %e, "a stored secret is unusable; left out");
                            None
                        }
                    }
                })
                .collect();
            sites.insert(
                site.id,
                CatalogSite {
                    credentials,
                    tags: site.tags,
                },
            );
        }
        let keys = keys.into_iter().map(|k| (k.id.clone(), k)).collect();
        let users = users.into_iter().map(|u| (u.id.clone(), u)).collect();
        Catalog {
            sites,
            keys,
            users,
            ..Catalog::default()
        }
    }

    /// Reads what [`Catalog::build`] needs from the store.
    pub(crate) async fn load(store: &Store, file: &EdgeConfig) -> Result<Catalog, StoreError> {
        let mut with_secrets = Vec::new();
        for site in store.list_sites().await? {
            if site.managed_by != ManagedBy::Api {
                continue;
            }
            let secrets = store.site_secrets(&site.id).await?;
            with_secrets.push((site, secrets));
        }
        let mut catalog = Catalog::build(
            file,
            with_secrets,
            store.list_api_keys().await?,
            store.list_users().await?,
        );
        catalog.secrets = store
            .resource_secrets()
            .await?
            .into_iter()
            .map(|s| ((s.resource.clone(), s.kind), s))
            .collect();
        catalog.links = store
            .share_links()
            .await?
            .into_iter()
            .filter(|l| l.revoked_ms.is_none())
            .map(|l| (l.token_hash.clone(), l))
            .collect();
        Ok(catalog)
    }

    /// The credentials an agent of `site` may present at `now_ms`; `None`
    /// for an unknown site.
    pub(crate) fn credentials(&self, site: &str, now_ms: i64) -> Option<Vec<Credential>> {
        self.sites.get(site).map(|s| {
            s.credentials
                .iter()
                .filter(|c| c.until_ms.is_none_or(|until| now_ms < until))
                .cloned()
                .collect()
        })
    }

    /// The tags of the sites serving `resource` (their union, sorted): what
    /// the policy's `tag:` destinations match it by.
    pub(crate) fn tags_of(&self, resource: &crate::config::Resource) -> Vec<String> {
        let private = resource.private.as_ref().map(|p| &p.site);
        let mut tags: Vec<String> = resource
            .targets
            .iter()
            .map(|t| &t.site)
            .chain(private)
            .filter_map(|site| self.sites.get(site))
            .flat_map(|s| s.tags.iter().cloned())
            .collect();
        tags.sort();
        tags.dedup();
        tags
    }

    /// Every site's tags, by site id.
    pub(crate) fn site_tags(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.sites
            .iter()
            .map(|(id, s)| (id.as_str(), s.tags.as_slice()))
    }

    /// The user with `email` (lower-case).
    pub(crate) fn user_by_email(&self, email: &str) -> Option<&UserRecord> {
        self.users.values().find(|u| u.email == email)
    }

    /// Whether `site` exists.
    pub(crate) fn has_site(&self, site: &str) -> bool {
        self.sites.contains_key(site)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::credentials::{hash_secret, hash_secret_argon2};
    use std::path::Path;

    fn record(id: &str, managed_by: ManagedBy) -> SiteRecord {
        SiteRecord {
            id: id.into(),
            name: id.into(),
            managed_by,
            tags: Vec::new(),
            created_ms: 0,
            updated_ms: 0,
        }
    }

    fn secret(hash: String, retired: Option<i64>, until: Option<i64>) -> SecretRecord {
        SecretRecord {
            id: "s".into(),
            secret_hash: hash,
            created_ms: 0,
            retired_ms: retired,
            grace_until_ms: until,
        }
    }

    #[test]
    fn file_and_store_sites_with_their_live_secrets() {
        let file = EdgeConfig::parse(
            "[edge]\ntunnel_listen = \"127.0.0.1:0\"\n[[site]]\nid = \"home\"\nsecret = \"file-secret\"\n",
            "edge.toml",
            Path::new("/tmp"),
        )
        .unwrap();
        let catalog = Catalog::build(
            &file,
            vec![
                (
                    record("lab", ManagedBy::Api),
                    vec![
                        secret(hash_secret("new"), None, None),
                        // Hashed as earlier versions did: still accepted.
                        secret(hash_secret_argon2("old"), Some(1), Some(2_000)),
                    ],
                ),
                // The file's record of its own site is not a second source.
                (
                    record("home", ManagedBy::Api),
                    vec![secret(hash_secret("x"), None, None)],
                ),
                (record("file-made", ManagedBy::File), vec![]),
            ],
            vec![],
            vec![],
        );
        assert_eq!(catalog.sites.keys().collect::<Vec<_>>(), ["home", "lab"]);
        let home = catalog.credentials("home", 0).unwrap();
        assert_eq!(home.len(), 1);
        assert!(home[0].secret.verify(&"file-secret".into()));
        assert!(!home[0].secret.verify(&"x".into()));
        let before = catalog.credentials("lab", 1_999).unwrap();
        assert_eq!(before.len(), 2, "the old secret within its grace");
        assert!(before[1].secret.verify(&"old".into()));
        let after = catalog.credentials("lab", 2_000).unwrap();
        assert_eq!(after.len(), 1, "grace over");
        assert!(after[0].secret.verify(&"new".into()));
        assert!(catalog.credentials("nope", 0).is_none());
    }
}
