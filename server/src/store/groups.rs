//! `groups` and `group_members`.

use sqlx::FromRow;
use tsunagu_protocol::accounts::{Profession, UserKind};
use tsunagu_protocol::messaging::{GroupKind, MemberRole};

use super::{Conn, Result};

#[derive(Debug, Clone, FromRow)]
pub struct GroupRow {
    pub id: String,
    pub region_id: String,
    pub kind: GroupKind,
    pub name: String,
    pub description: Option<String>,
    pub patient: Option<String>,
    pub main_thread_id: String,
    pub archived_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "g.id, g.region_id, g.kind, g.name, g.description, g.patient, g.main_thread_id, \
                       g.archived_at, g.created_by, g.created_at, g.updated_at";

pub async fn insert(conn: &mut Conn, row: &GroupRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO groups (id, region_id, kind, name, description, patient, main_thread_id, \
         archived_at, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&row.id)
    .bind(&row.region_id)
    .bind(row.kind)
    .bind(&row.name)
    .bind(&row.description)
    .bind(&row.patient)
    .bind(&row.main_thread_id)
    .bind(row.archived_at)
    .bind(&row.created_by)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update(conn: &mut Conn, row: &GroupRow) -> Result<()> {
    sqlx::query(
        "UPDATE groups SET name = $2, description = $3, patient = $4, archived_at = $5, \
         updated_at = $6 WHERE id = $1",
    )
    .bind(&row.id)
    .bind(&row.name)
    .bind(&row.description)
    .bind(&row.patient)
    .bind(row.archived_at)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A group together with the caller's membership, if the caller is a member.
#[derive(Debug, Clone, FromRow)]
pub struct MembershipRow {
    #[sqlx(flatten)]
    pub group: GroupRow,
    pub role: MemberRole,
    pub patient_side: i64,
}

/// The group, only if `user_id` is a member and it is in `region_id`.
pub async fn membership(
    conn: &mut Conn,
    region_id: &str,
    group_id: &str,
    user_id: &str,
) -> Result<Option<MembershipRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS}, m.role, m.patient_side FROM groups g \
         JOIN group_members m ON m.group_id = g.id AND m.user_id = $2 \
         WHERE g.id = $1 AND g.region_id = $3"
    ))
    .bind(group_id)
    .bind(user_id)
    .bind(region_id)
    .fetch_optional(conn)
    .await?)
}

/// Every group `user_id` is a member of, newest first.
pub async fn memberships_of(
    conn: &mut Conn,
    region_id: &str,
    user_id: &str,
    include_archived: bool,
) -> Result<Vec<MembershipRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS}, m.role, m.patient_side FROM groups g \
         JOIN group_members m ON m.group_id = g.id AND m.user_id = $1 \
         WHERE g.region_id = $2 AND (g.archived_at IS NULL OR $3 = 1) ORDER BY g.created_at DESC, g.id"
    ))
    .bind(user_id)
    .bind(region_id)
    .bind(super::flag(include_archived))
    .fetch_all(conn)
    .await?)
}

pub async fn member_count(conn: &mut Conn, group_id: &str) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM group_members WHERE group_id = $1")
        .bind(group_id)
        .fetch_one(conn)
        .await?;
    Ok(n)
}

#[derive(Debug, Clone, FromRow)]
pub struct MemberRow {
    pub user_id: String,
    pub role: MemberRole,
    pub patient_side: i64,
    pub joined_at: i64,
    pub display_name: String,
    pub profession: Profession,
    pub organization_id: Option<String>,
    pub kind: UserKind,
}

pub async fn add_member(
    conn: &mut Conn,
    group_id: &str,
    user_id: &str,
    role: &str,
    patient_side: bool,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO group_members (group_id, user_id, role, patient_side, joined_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(group_id)
    .bind(user_id)
    .bind(role)
    .bind(super::flag(patient_side))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_member_role(
    conn: &mut Conn,
    group_id: &str,
    user_id: &str,
    role: &str,
) -> Result<bool> {
    let done =
        sqlx::query("UPDATE group_members SET role = $3 WHERE group_id = $1 AND user_id = $2")
            .bind(group_id)
            .bind(user_id)
            .bind(role)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes the member from the group and from every 内緒話 thread of the group, in the
/// caller's transaction.
pub async fn remove_member(conn: &mut Conn, group_id: &str, user_id: &str) -> Result<bool> {
    sqlx::query(
        "DELETE FROM thread_members WHERE user_id = $2 AND thread_id IN \
         (SELECT id FROM threads WHERE group_id = $1)",
    )
    .bind(group_id)
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
        .bind(group_id)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get_member(
    conn: &mut Conn,
    group_id: &str,
    user_id: &str,
) -> Result<Option<MemberRow>> {
    Ok(sqlx::query_as(
        "SELECT m.user_id, m.role, m.patient_side, m.joined_at, u.display_name, u.profession, u.organization_id, u.kind \
         FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 AND m.user_id = $2",
    )
    .bind(group_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn list_members(conn: &mut Conn, group_id: &str) -> Result<Vec<MemberRow>> {
    Ok(sqlx::query_as(
        "SELECT m.user_id, m.role, m.patient_side, m.joined_at, u.display_name, u.profession, u.organization_id, u.kind \
         FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 \
         ORDER BY m.joined_at, m.user_id",
    )
    .bind(group_id)
    .fetch_all(conn)
    .await?)
}

pub async fn count_owners(conn: &mut Conn, group_id: &str) -> Result<i64> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM group_members WHERE group_id = $1 AND role = 'owner'")
            .bind(group_id)
            .fetch_one(conn)
            .await?;
    Ok(n)
}

/// Records that `user_id` was removed from the group by someone else (see migration
/// 0012): no invitation code lets them back in.
pub async fn record_removal(
    conn: &mut Conn,
    group_id: &str,
    user_id: &str,
    removed_by: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO group_removals (group_id, user_id, removed_by, removed_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (group_id, user_id) DO UPDATE SET removed_by = $3, removed_at = $4",
    )
    .bind(group_id)
    .bind(user_id)
    .bind(removed_by)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets a removal: an owner added the user again.
pub async fn clear_removal(conn: &mut Conn, group_id: &str, user_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM group_removals WHERE group_id = $1 AND user_id = $2")
        .bind(group_id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether the user was removed from the group and not added back since.
pub async fn was_removed(conn: &mut Conn, group_id: &str, user_id: &str) -> Result<bool> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT removed_at FROM group_removals WHERE group_id = $1 AND user_id = $2",
    )
    .bind(group_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// A group of a region as its administrators see it (see `domain::group_admin`).
#[derive(Debug, Clone, FromRow)]
pub struct AdminGroupRow {
    pub id: String,
    pub kind: GroupKind,
    pub name: String,
    pub created_at: i64,
    pub archived_at: Option<i64>,
    pub member_count: i64,
    /// The main timeline's newest post: never a 内緒話's.
    pub last_activity: Option<i64>,
}

pub async fn admin_list(
    conn: &mut Conn,
    region_id: &str,
    include_archived: bool,
) -> Result<Vec<AdminGroupRow>> {
    Ok(sqlx::query_as(
        "SELECT g.id, g.kind, g.name, g.created_at, g.archived_at, \
         (SELECT COUNT(*) FROM group_members m WHERE m.group_id = g.id) AS member_count, \
         (SELECT MAX(msg.created_at) FROM messages msg WHERE msg.thread_id = g.main_thread_id) \
           AS last_activity \
         FROM groups g WHERE g.region_id = $1 AND (g.archived_at IS NULL OR $2 = 1) \
         ORDER BY g.created_at, g.id",
    )
    .bind(region_id)
    .bind(super::flag(include_archived))
    .fetch_all(conn)
    .await?)
}

/// `(group_id, user_id, display_name)` of every owner of the region's groups.
pub async fn owners_in_region(
    conn: &mut Conn,
    region_id: &str,
) -> Result<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT m.group_id, m.user_id, u.display_name FROM group_members m \
         JOIN groups g ON g.id = m.group_id JOIN users u ON u.id = m.user_id \
         WHERE g.region_id = $1 AND m.role = 'owner' ORDER BY m.group_id, m.joined_at, m.user_id",
    )
    .bind(region_id)
    .fetch_all(conn)
    .await?)
}

/// A group of `region_id`, by id.
pub async fn get_in_region(conn: &mut Conn, region_id: &str, id: &str) -> Result<Option<GroupRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM groups g WHERE g.id = $1 AND g.region_id = $2"
    ))
    .bind(id)
    .bind(region_id)
    .fetch_optional(conn)
    .await?)
}
