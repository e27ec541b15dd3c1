//! The directory: professionals find the colleague they want to add to a patient's
//! group by name or kana, without asking an administrator for an id. Patients, family
//! and apps are never listed, nobody sees another region, and the region's policy may
//! narrow it to one's own organisation plus the people one already shares a group with.
//! People edit their own display name, kana and profile line here too.

use std::collections::HashSet;

use serde_json::json;
use tsunagu_protocol::accounts::{
    DirectoryEntry, DirectoryPage, DirectoryScope, Organization, Profession, UpdateMe,
};
use tsunagu_protocol::apps::Scope;
use tsunagu_protocol::ids::{OrganizationId, UserId};

use super::access::{Member, Session};
use super::error::{DomainError, Result};
use super::groups::is_patient_side_profession;
use super::search::normalize::normalize;
use super::shared::Shared;
use super::{convert, validate};
use crate::audit::{self, Action, Event, Outcome, RequestMeta};
use crate::clock::now_ms;
use crate::store::directory::{self, DirectoryRow};
use crate::store::{organizations, regions, users};

/// Longest search term, in characters.
const MAX_Q: usize = 100;
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;

/// What the directory is asked for.
#[derive(Debug, Default, Clone)]
pub struct DirectoryQuery {
    /// Name or kana, any width or kana script (`さとう` finds `サトウ` and, by its kana,
    /// `佐藤`).
    pub q: Option<String>,
    pub organization_id: Option<OrganizationId>,
    pub profession: Option<Profession>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<UserId>,
    pub limit: Option<usize>,
}

#[derive(Clone)]
pub struct Directory {
    shared: Shared,
}

impl Directory {
    pub(super) fn new(shared: Shared) -> Self {
        Directory { shared }
    }

    /// Professionals and apps with `users:read` may look people up; patients and family
    /// talk in their patient group and get 403.
    async fn lister(&self, member: &Member) -> Result<Option<Profession>> {
        let s = member.session();
        if s.is_app() {
            s.require(Scope::UsersRead)?;
            return Ok(None);
        }
        let mut conn = self.shared.store().conn().await?;
        let me = users::get(&mut conn, &s.user_id().to_string())
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        if is_patient_side_profession(me.profession) {
            return Err(DomainError::Forbidden("the directory is for professionals"));
        }
        Ok(Some(me.profession))
    }

    /// A page of the directory in kana order.
    pub async fn users(&self, member: &Member, q: DirectoryQuery) -> Result<DirectoryPage> {
        self.lister(member).await?;
        let term = match q.q.as_deref() {
            Some(t) if t.chars().count() > MAX_Q => {
                return Err(DomainError::Invalid(format!(
                    "q must have at most {MAX_Q} characters"
                )))
            }
            Some(t) if t.chars().any(char::is_control) => {
                return Err(DomainError::Invalid(
                    "q must not contain control characters".into(),
                ))
            }
            Some(t) => Some(squash(&normalize(t))).filter(|t| !t.is_empty()),
            None => None,
        };
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(DomainError::Invalid(format!(
                "limit must be 1 to {MAX_LIMIT}"
            )));
        }
        let s = member.session();
        let region = s.region_id().to_string();
        let mut conn = self.shared.store().conn().await?;
        let scope = regions::get(&mut conn, &region)
            .await?
            .ok_or_else(|| DomainError::Internal("session without region".into()))?
            .directory_scope;
        let visible: Option<HashSet<String>> = match scope {
            DirectoryScope::Region => None,
            DirectoryScope::Organization => Some(
                directory::group_peers(&mut conn, &s.user_id().to_string())
                    .await?
                    .into_iter()
                    .collect(),
            ),
        };
        let my_org = s.organization_id.map(|o| o.to_string());
        let organization = q.organization_id.map(|o| o.to_string());
        let mut rows: Vec<(String, DirectoryRow)> = directory::professionals(&mut conn, &region)
            .await?
            .into_iter()
            .filter(|r| match &visible {
                None => true,
                Some(peers) => {
                    peers.contains(&r.id) || (my_org.is_some() && r.organization_id == my_org)
                }
            })
            .filter(|r| organization.is_none() || r.organization_id == organization)
            .filter(|r| q.profession.is_none_or(|p| r.profession == p))
            .filter(|r| {
                term.as_deref().is_none_or(|t| {
                    squash(&normalize(&r.display_name)).contains(t)
                        || r.display_name_kana
                            .as_deref()
                            .is_some_and(|k| squash(&normalize(k)).contains(t))
                })
            })
            .map(|r| (sort_key(&r), r))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        let start = match q.cursor {
            Some(after) => {
                let after = after.to_string();
                rows.iter()
                    .position(|(_, r)| r.id == after)
                    .map_or(0, |i| i + 1)
            }
            None => 0,
        };
        let page: Vec<&DirectoryRow> = rows
            .iter()
            .skip(start)
            .take(limit)
            .map(|(_, r)| r)
            .collect();
        let next_cursor = (start + page.len() < rows.len())
            .then(|| page.last().map(|r| r.id.clone()))
            .flatten();
        Ok(DirectoryPage {
            users: page.into_iter().map(entry).collect::<Result<_>>()?,
            next_cursor,
        })
    }

    /// The region's active organisations, for the directory's filter.
    pub async fn organizations(&self, member: &Member) -> Result<Vec<Organization>> {
        self.lister(member).await?;
        let mut conn = self.shared.store().conn().await?;
        organizations::list_in_region(&mut conn, &member.session().region_id().to_string(), false)
            .await?
            .iter()
            .map(convert::organization)
            .collect()
    }

    /// A person edits their own display name, kana and profile line.
    pub async fn update_me(
        &self,
        session: &Session,
        req: UpdateMe,
        meta: &RequestMeta,
    ) -> Result<()> {
        if session.is_app() {
            return Err(DomainError::Forbidden(
                "an app's name is changed under /admin/api-clients",
            ));
        }
        let mut tx = self.shared.store().begin().await?;
        let mut user = users::get(&mut tx, &session.user_id().to_string())
            .await?
            .ok_or(DomainError::Unauthenticated)?;
        let mut changed = Vec::new();
        if let Some(name) = &req.display_name {
            user.display_name = validate::name("display_name", name, 100)?;
            changed.push("display_name");
        }
        if let Some(kana) = &req.display_name_kana {
            user.display_name_kana = Some(validate::name("display_name_kana", kana, 100)?);
            changed.push("display_name_kana");
        }
        let now = now_ms();
        if let Some(about) = &req.about {
            let about = if about.trim().is_empty() {
                None
            } else {
                Some(validate::name("about", about, 200)?)
            };
            directory::set_about(&mut tx, &user.id, about.as_deref(), now).await?;
            changed.push("about");
        }
        if changed.is_empty() {
            return Ok(());
        }
        user.updated_at = now;
        users::update_profile(&mut tx, &user).await?;
        audit::append(
            &mut tx,
            meta,
            Event::new(Action::UserUpdated, Outcome::Success, &session.actor())
                .target("user", user.id.clone())
                .detail(json!({ "fields": changed, "by_self": true })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The profile line of the caller, for `GET /me`.
    pub async fn about(&self, session: &Session) -> Result<Option<String>> {
        let mut conn = self.shared.store().conn().await?;
        Ok(directory::about(&mut conn, &session.user_id().to_string()).await?)
    }
}

/// Normalised text without spaces: `サトウ ハナコ` and `さとうはなこ` are one key.
fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Kana order (あいうえお順), by the reading when there is one.
fn sort_key(r: &DirectoryRow) -> String {
    squash(&normalize(
        r.display_name_kana.as_deref().unwrap_or(&r.display_name),
    ))
}

fn entry(r: &DirectoryRow) -> Result<DirectoryEntry> {
    Ok(DirectoryEntry {
        id: convert::id(&r.id)?,
        display_name: r.display_name.clone(),
        display_name_kana: r.display_name_kana.clone(),
        profession: r.profession,
        organization_id: r.organization_id.as_deref().map(convert::id).transpose()?,
        organization_name: r.organization_name.clone(),
        about: r.about.clone(),
    })
}
