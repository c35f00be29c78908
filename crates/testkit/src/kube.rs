//! Kubernetes manifests checked against the API's own types.
//!
//! k8s-openapi's types are generated from the Kubernetes OpenAPI schema.
//! Their deserialisers skip fields they do not know, so a strict check is
//! a round trip: deserialise into the type for the manifest's kind,
//! serialise back, and require the same document. A misspelt, misplaced
//! or invented field is dropped on the way and the two differ; a wrong
//! type fails to deserialise.

use k8s_openapi::api::{apps, core, networking, policy};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn round_trip<T: DeserializeOwned + Serialize>(manifest: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(manifest.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if &back == manifest {
        Ok(())
    } else {
        Err(format!(
            "fields the schema does not have were dropped:\n  given: {manifest}\n  typed: {back}"
        ))
    }
}

/// Checks one manifest strictly against the schema of its kind
/// (`apiVersion` and `kind` must match too). Kinds Warren does not render
/// are refused.
pub fn check_manifest(manifest: &Value) -> Result<(), String> {
    let api = manifest["apiVersion"].as_str().unwrap_or_default();
    let kind = manifest["kind"].as_str().unwrap_or_default();
    let result = match (api, kind) {
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            round_trip::<networking::v1::NetworkPolicy>(manifest)
        }
        ("apps/v1", "Deployment") => round_trip::<apps::v1::Deployment>(manifest),
        ("v1", "Secret") => round_trip::<core::v1::Secret>(manifest),
        ("v1", "ConfigMap") => round_trip::<core::v1::ConfigMap>(manifest),
        ("v1", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(manifest),
        ("policy/v1", "PodDisruptionBudget") => {
            round_trip::<policy::v1::PodDisruptionBudget>(manifest)
        }
        _ => Err("not a kind this check knows".to_owned()),
    };
    result.map_err(|e| format!("{api} {kind}: {e}"))
}
