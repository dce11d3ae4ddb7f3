//! Enrolled devices: one sign-in family each, listed and revoked by administrators.

use sqlx::Row as _;
use time::OffsetDateTime;

use super::{Db, from_millis, to_millis};
use crate::Error;

/// One enrolled device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Device {
    /// Its id (the sign-in family of its tokens).
    pub id: String,
    /// The account its uploads belong to.
    pub user: String,
    /// The name it reported (its host name).
    pub name: String,
    /// The `[[enrollment]]` entry it enrolled with.
    pub enrollment: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled_at: OffsetDateTime,
    /// When an administrator revoked it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Records an enrolled device.
pub async fn insert(db: &Db, device: &Device) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO devices (id, user_name, device_name, enrollment, enrolled_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&device.id)
    .bind(&device.user)
    .bind(&device.name)
    .bind(&device.enrollment)
    .bind(to_millis(device.enrolled_at))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Every device, oldest first.
pub async fn list(db: &Db) -> Result<Vec<Device>, Error> {
    let rows = sqlx::query(
        "SELECT id, user_name, device_name, enrollment, enrolled_at, revoked_at FROM devices
         ORDER BY enrolled_at, id",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Device {
            id: r.get("id"),
            user: r.get("user_name"),
            name: r.get("device_name"),
            enrollment: r.get("enrollment"),
            enrolled_at: from_millis(r.get("enrolled_at")),
            revoked_at: r.get::<Option<i64>, _>("revoked_at").map(from_millis),
        })
        .collect())
}

/// Revokes a device and every token of its sign-in; false when unknown or already revoked.
pub async fn revoke(db: &Db, id: &str, now: OffsetDateTime) -> Result<bool, Error> {
    let mut tx = db.pool().begin().await?;
    let done = sqlx::query("UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(to_millis(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL")
        .bind(to_millis(now))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Whether `user` is a device account an administrator revoked and did not let back in: its
/// enrollments stay refused, so a wiped or reinstalled device cannot undo a revocation.
pub async fn is_account_shut_out(db: &Db, user: &str) -> Result<bool, Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM devices WHERE user_name = ? AND revoked_at IS NOT NULL",
    )
    .bind(user)
    .fetch_one(db.pool())
    .await?;
    Ok(row.get::<i64, _>("n") > 0)
}

/// Forgets a revoked device, so that the computer may enroll again; false when there is no
/// revoked device with this id.
pub async fn forget(db: &Db, id: &str) -> Result<bool, Error> {
    let done = sqlx::query("DELETE FROM devices WHERE id = ? AND revoked_at IS NOT NULL")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the sign-in `family` is a device an administrator revoked.
pub async fn is_revoked(db: &Db, family: &str) -> Result<bool, Error> {
    let row = sqlx::query("SELECT revoked_at FROM devices WHERE id = ?")
        .bind(family)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some_and(|r| r.get::<Option<i64>, _>("revoked_at").is_some()))
}
