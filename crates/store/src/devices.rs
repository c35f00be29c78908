//! People's devices: a phone or laptop with the stock WireGuard app, known
//! by its WireGuard public key and given one address in the devices' range.
//! Its private key is never here (it is shown once, by the API that made
//! it, or never left the device). Every change is audited, without the key,
//! and bumps `config_version` so that every edge's endpoint follows.

use crate::{audit, bump_config_version, conflict_or, Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::net::Ipv4Addr;

/// A device as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Device {
    /// 1 to 64 of a-z, 0-9, `-`, `_`, `.`.
    pub name: String,
    /// The lower-case email of the person it acts for: whom the policy asks
    /// about its flows.
    pub user: String,
    /// `tag:NAME`s the policy may name it by.
    pub tags: Vec<String>,
    /// Its WireGuard public key (base64 of 32 bytes).
    pub public_key: String,
    /// Its address in the devices' range.
    #[schema(value_type = String, example = "100.96.0.2")]
    pub address: Ipv4Addr,
    /// Who made it (an API key id).
    pub created_by: String,
    /// Made (Unix ms).
    pub created_ms: i64,
}

impl Device {
    /// Whether `name` is a device name: 1 to 64 of a-z, 0-9, `-`, `_`, `.`.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
    }

    /// What its audit rows show: everything but the key.
    fn audit_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "user": self.user,
            "tags": self.tags,
            "address": self.address.to_string(),
            "created_by": self.created_by,
            "created_ms": self.created_ms,
        })
    }
}

fn from_row(row: &AnyRow) -> Result<Device, StoreError> {
    let address: String = row.try_get("address")?;
    Ok(Device {
        name: row.try_get("name")?,
        user: row.try_get("user_email")?,
        tags: serde_json::from_str(&row.try_get::<String, _>("tags")?)
            .map_err(|e| StoreError::Corrupt(format!("devices.tags: {e}")))?,
        public_key: row.try_get("public_key")?,
        address: address
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("devices.address = `{address}`")))?,
        created_by: row.try_get("created_by")?,
        created_ms: row.try_get("created_ms")?,
    })
}

/// What `new` clashes with among `existing` (the devices sharing its name,
/// key or address), named for people: the name first, then the key, then
/// the address.
fn clash(new: &Device, existing: &[Device]) -> Option<String> {
    if existing.iter().any(|d| d.name == new.name) {
        return Some(format!("device `{}` already exists", new.name));
    }
    if let Some(d) = existing.iter().find(|d| d.public_key == new.public_key) {
        return Some(format!(
            "this public key is already device `{}`'s: one key per device",
            d.name
        ));
    }
    existing
        .iter()
        .find(|d| d.address == new.address)
        .map(|d| format!("address {} is already device `{}`'s", new.address, d.name))
}

impl Store {
    /// Stores a new device. A name, public key or address another device
    /// holds is a [`StoreError::Conflict`] naming which, and nothing is
    /// written (two edges adding at the same moment: the second is refused
    /// the same way by the unique indexes).
    pub async fn create_device(&self, actor: &str, device: &Device) -> Result<(), StoreError> {
        let device = Device {
            user: device.user.to_ascii_lowercase(),
            ..device.clone()
        };
        let tags = serde_json::to_string(&device.tags)
            .map_err(|e| StoreError::Corrupt(format!("devices.tags: {e}")))?;
        let mut tx = self.begin().await?;
        let existing =
            sqlx::query("SELECT * FROM devices WHERE name = $1 OR public_key = $2 OR address = $3")
                .bind(device.name.clone())
                .bind(device.public_key.clone())
                .bind(device.address.to_string())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(from_row)
                .collect::<Result<Vec<_>, _>>()?;
        if let Some(message) = clash(&device, &existing) {
            return Err(StoreError::Conflict(message));
        }
        sqlx::query(
            "INSERT INTO devices (name, user_email, tags, public_key, address, created_by, \
             created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(device.name.clone())
        .bind(device.user.clone())
        .bind(tags)
        .bind(device.public_key.clone())
        .bind(device.address.to_string())
        .bind(device.created_by.clone())
        .bind(device.created_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            conflict_or(e, || {
                format!(
                    "device `{}` clashes with one added at the same moment (its name, key or address)",
                    device.name
                )
            })
        })?;
        bump_config_version(&mut tx).await?;
        audit(
            &mut tx,
            actor,
            "device.create",
            &format!("device/{}", device.name),
            None,
            Some(&device.audit_json()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every device, by name.
    pub async fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let rows = sqlx::query("SELECT * FROM devices ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Device `name`, if there is one.
    pub async fn device(&self, name: &str) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query("SELECT * FROM devices WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Removes (revokes) device `name`; `false` when there is none (and
    /// nothing is written).
    pub async fn remove_device(&self, actor: &str, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT * FROM devices WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let before = from_row(&row)?;
        let done = sqlx::query("DELETE FROM devices WHERE name = $1")
            .bind(name.to_owned())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            // Removed by another edge between the read and the delete.
            return Ok(false);
        }
        bump_config_version(&mut tx).await?;
        audit(
            &mut tx,
            actor,
            "device.revoke",
            &format!("device/{name}"),
            Some(&before.audit_json()),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, key: &str, last: u8) -> Device {
        Device {
            name: name.into(),
            user: "alice@corp.com".into(),
            tags: Vec::new(),
            public_key: key.into(),
            address: Ipv4Addr::new(100, 96, 0, last),
            created_by: "k".into(),
            created_ms: 1,
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "alice-phone", "laptop_2", "pixel.8", &"x".repeat(64)] {
            assert!(Device::valid_name(ok), "{ok}");
        }
        for bad in ["", "Alice", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(!Device::valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_clash_names_the_name_first_then_the_key_then_the_address() {
        let new = device("phone", "K1", 2);
        assert_eq!(clash(&new, &[]), None);
        let by_address = device("laptop", "K2", 2);
        let by_key = device("tablet", "K1", 3);
        let by_name = device("phone", "K3", 4);
        let m = clash(&new, std::slice::from_ref(&by_address)).unwrap();
        assert!(
            m.contains("address 100.96.0.2") && m.contains("laptop"),
            "{m}"
        );
        let m = clash(&new, &[by_address.clone(), by_key.clone()]).unwrap();
        assert!(m.contains("public key") && m.contains("tablet"), "{m}");
        let m = clash(&new, &[by_address, by_key, by_name]).unwrap();
        assert!(m.contains("`phone` already exists"), "{m}");
    }

    #[test]
    fn the_audit_row_has_no_key() {
        let d = device("phone", "c2VjcmV0LWtleS1ieXRlcy0xMjM0NTY3ODkwMTI=", 2);
        let text = d.audit_json().to_string();
        assert!(!text.contains(&d.public_key), "{text}");
        assert!(text.contains("100.96.0.2"), "{text}");
    }
}
