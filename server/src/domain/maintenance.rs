//! Chores over all files, for the operator and the background sweeper: re-wrapping data
//! keys under the current key-encryption key, and removing blobs nobody references.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;

use super::error::{DomainError, Internal, Result};
use super::files::{blob_internal, FileServices};
use super::shared::Shared;
use crate::audit::{self, Action, Event as AuditEvent, Outcome, RequestMeta};
use crate::blob::keys::TOTP_DOMAIN;
use crate::store::{files, users};

/// Key rotation and the orphan sweep.
#[derive(Clone)]
pub struct Maintenance {
    shared: Shared,
    files: Arc<FileServices>,
}

impl Maintenance {
    pub(super) fn new(shared: Shared, files: Arc<FileServices>) -> Self {
        Maintenance { shared, files }
    }

    fn files(&self) -> &FileServices {
        &self.files
    }

    /// The configured KEK ids and the current one.
    pub fn kek_ids(&self) -> (Vec<String>, String) {
        let keys = &self.files().keys;
        (
            keys.ids().map(str::to_owned).collect(),
            keys.current_id().to_owned(),
        )
    }

    /// Re-wraps every data key under the current KEK (blobs untouched). Returns how
    /// many were re-wrapped; afterwards older KEKs can be removed.
    pub async fn rotate_keys(&self) -> Result<u64> {
        let current = self.files().keys.current_id().to_owned();
        let mut done = 0;
        loop {
            let batch = {
                let mut conn = self.shared.store().conn().await?;
                files::wrapped_not_by(&mut conn, &current, 500).await?
            };
            if batch.is_empty() {
                break;
            }
            let mut tx = self.shared.store().begin().await?;
            for row in &batch {
                let (Some(old), Some(wrapped)) = (&row.kek_id, &row.wrapped_key) else {
                    continue;
                };
                let dek = self
                    .files()
                    .keys
                    .unwrap(old, &row.id, wrapped)
                    .map_err(|e| {
                        DomainError::Internal(Internal::caused_by(format!("file {}", row.id), e))
                    })?;
                let (kek, rewrapped) = self.files().keys.wrap(&row.id, &dek);
                if files::rewrap(&mut tx, &row.id, old, &kek, &rewrapped).await? {
                    done += 1;
                }
            }
            audit::append(
                &mut tx,
                &RequestMeta {
                    user_agent: Some("tsunagu-server keys rotate".into()),
                    ..Default::default()
                },
                AuditEvent::new(Action::KeyRotated, Outcome::Success, &Default::default())
                    .detail(json!({ "kek_id": current, "files": batch.len() })),
            )
            .await?;
            tx.commit().await?;
        }
        done += super::webhooks::rewrap_secrets(&self.shared, self.files()).await?;
        Ok(done)
    }

    /// Records a key rotation done at the shell (`keys jwt-rotate`, `keys audit-rotate`):
    /// `key_rotated` with no actor, what was rotated in `detail` (key ids only).
    pub async fn record_key_rotation(
        &self,
        command: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        audit::append_alone(
            self.shared.store(),
            &RequestMeta {
                user_agent: Some(format!("tsunagu-server {command}")),
                ..Default::default()
            },
            AuditEvent::new(Action::KeyRotated, Outcome::Success, &Default::default())
                .detail(detail),
        )
        .await?;
        Ok(())
    }

    /// Seals TOTP secrets under the current KEK, in transactions of 500 users: with
    /// `only_plain`, just those still in plain text (the start-up pass after migration
    /// 0011); otherwise also those sealed by an older KEK (`keys rotate`). Each row is
    /// replaced only if it still holds what was read, so concurrent passes on several
    /// nodes, or an enrolment meanwhile, are safe. Audited as `key_rotated` (no actor)
    /// when anything was sealed. Returns how many were.
    pub async fn seal_totp_secrets(&self, only_plain: bool) -> Result<u64> {
        let keys = &self.files().keys;
        let current = keys.current_id().to_owned();
        let mut done = 0;
        let mut skipped_races = 0_u64;
        loop {
            let batch = {
                let mut conn = self.shared.store().conn().await?;
                users::totp_not_sealed_by(&mut conn, &current, 500).await?
            };
            let batch: Vec<_> = batch
                .into_iter()
                .filter(|(_, _, kek)| !only_plain || kek.is_none())
                .collect();
            if batch.is_empty() {
                break;
            }
            let mut tx = self.shared.store().begin().await?;
            let mut sealed_here = 0;
            for (id, stored, kek) in &batch {
                let plain = match kek {
                    None => zeroize::Zeroizing::new(stored.as_bytes().to_vec()),
                    Some(old) => keys.open(TOTP_DOMAIN, old, id, stored).map_err(|e| {
                        DomainError::Internal(Internal::caused_by(format!("TOTP of user {id}"), e))
                    })?,
                };
                let (kek_id, sealed) = keys.seal(TOTP_DOMAIN, id, &plain);
                if users::reseal_totp(&mut tx, id, (stored, kek.as_deref()), &kek_id, &sealed)
                    .await?
                {
                    sealed_here += 1;
                } else {
                    skipped_races += 1;
                }
            }
            if sealed_here > 0 {
                audit::append(
                    &mut tx,
                    &RequestMeta {
                        user_agent: Some(if only_plain {
                            "tsunagu-server start-up".into()
                        } else {
                            "tsunagu-server keys rotate".into()
                        }),
                        ..Default::default()
                    },
                    AuditEvent::new(Action::KeyRotated, Outcome::Success, &Default::default())
                        .detail(json!({ "key": "totp", "kek_id": current, "users": sealed_here })),
                )
                .await?;
            }
            tx.commit().await?;
            done += sealed_here;
            // Rows changed under us are read again; give up on ones that keep changing.
            if sealed_here == 0 && skipped_races > 10_000 {
                break;
            }
        }
        Ok(done)
    }

    /// Removes blobs that have no live metadata and are older than `grace_secs`:
    /// interrupted uploads, and blobs whose delete failed after the key was shredded.
    pub async fn sweep_orphans(&self, grace_secs: u64) -> Result<u64> {
        let cutoff = chrono::Utc::now() - chrono::Duration::seconds(grace_secs as i64);
        let staging_cutoff =
            std::time::SystemTime::now() - std::time::Duration::from_secs(grace_secs);
        let mut removed = self
            .files()
            .blobs
            .sweep_staging(staging_cutoff)
            .map_err(|e| DomainError::Internal(Internal::caused_by("sweeping staging files", e)))?;
        let prefix = object_store::path::Path::from("files");
        let mut listing = self.files().blobs.raw().list(Some(&prefix));
        while let Some(item) = listing.next().await {
            let meta =
                item.map_err(|e| DomainError::Internal(Internal::caused_by("listing blobs", e)))?;
            if meta.last_modified > cutoff {
                continue;
            }
            let Some(id) = meta.location.filename().map(str::to_owned) else {
                continue;
            };
            let live = {
                let mut conn = self.shared.store().conn().await?;
                files::get_live(&mut conn, &id).await?.is_some()
            };
            if !live {
                self.files()
                    .blobs
                    .delete(&id)
                    .await
                    .map_err(blob_internal)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
