//! Accounts made by single sign-on, bound to the provider's `(issuer, subject)`, and the ID
//! tokens already spent.

use sqlx::Row as _;
use time::OffsetDateTime;

use super::{Db, to_millis};
use crate::Error;

/// The account bound to `(issuer, subject)`, noting this sign-in; `None` on a first sign-in.
pub async fn sign_in(
    db: &Db,
    issuer: &str,
    subject: &str,
    now: OffsetDateTime,
) -> Result<Option<String>, Error> {
    let row = sqlx::query(
        "UPDATE identities SET last_sign_in = ? WHERE issuer = ? AND subject = ?
         RETURNING user_name",
    )
    .bind(to_millis(now))
    .bind(issuer)
    .bind(subject)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|r| r.get("user_name")))
}

/// Makes the account of a first sign-in: `name`, or `name-2`, `name-3`… when the name is taken
/// by another account, with a password no password matches. The account and its identity are
/// one transaction; when another sign-in of the same identity made it first, that account is
/// answered.
pub async fn create_account(
    db: &Db,
    issuer: &str,
    subject: &str,
    name: &str,
    no_password: &str,
    now: OffsetDateTime,
) -> Result<String, Error> {
    let mut tx = db.pool().begin().await?;
    let mut chosen = name.to_owned();
    for n in 2.. {
        let taken = sqlx::query("SELECT 1 FROM users WHERE name = ?")
            .bind(&chosen)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !taken {
            break;
        }
        chosen = format!("{name}-{n}");
    }
    sqlx::query("INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, ?)")
        .bind(&chosen)
        .bind(no_password)
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
    let bound = sqlx::query(
        "INSERT INTO identities (issuer, subject, user_name, created_at, last_sign_in)
         VALUES (?, ?, ?, ?, ?) ON CONFLICT (issuer, subject) DO NOTHING",
    )
    .bind(issuer)
    .bind(subject)
    .bind(&chosen)
    .bind(to_millis(now))
    .bind(to_millis(now))
    .execute(&mut *tx)
    .await?;
    if bound.rows_affected() == 0 {
        // A concurrent first sign-in of the same person won: use its account, drop ours.
        tx.rollback().await?;
        return sign_in(db, issuer, subject, now).await?.ok_or_else(|| {
            Error::Invalid("the identity vanished while signing in; try again".into())
        });
    }
    tx.commit().await?;
    Ok(chosen)
}

/// Marks the ID token with hash `token_hash` (valid until `expires_at`) used; false when it
/// was already. Spent tokens past their expiry are forgotten on the way.
pub async fn spend_id_token(
    db: &Db,
    token_hash: &str,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    sqlx::query("DELETE FROM used_id_tokens WHERE expires_at < ?")
        .bind(to_millis(now))
        .execute(db.pool())
        .await?;
    let spent = sqlx::query(
        "INSERT INTO used_id_tokens (token_hash, expires_at) VALUES (?, ?)
         ON CONFLICT (token_hash) DO NOTHING",
    )
    .bind(token_hash)
    .bind(to_millis(expires_at))
    .execute(db.pool())
    .await?;
    Ok(spent.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_identity_keeps_its_account_and_names_do_not_clash() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("valet.db")).await.unwrap();
        let now = OffsetDateTime::now_utc();
        crate::db::insert_user(&db, "alice-example.com", "!", now)
            .await
            .unwrap();
        assert_eq!(sign_in(&db, "https://id", "1", now).await.unwrap(), None);
        let first = create_account(&db, "https://id", "1", "alice-example.com", "!", now)
            .await
            .unwrap();
        assert_eq!(
            first, "alice-example.com-2",
            "a name taken by a password account"
        );
        let other = create_account(&db, "https://id", "2", "alice-example.com", "!", now)
            .await
            .unwrap();
        assert_eq!(other, "alice-example.com-3");
        assert_eq!(
            sign_in(&db, "https://id", "1", now)
                .await
                .unwrap()
                .as_deref(),
            Some("alice-example.com-2")
        );
        // The same subject at another issuer is another person.
        assert_eq!(sign_in(&db, "https://other", "1", now).await.unwrap(), None);
        // Making it twice answers the first account.
        let again = create_account(&db, "https://id", "1", "bob", "!", now)
            .await
            .unwrap();
        assert_eq!(again, "alice-example.com-2");

        let later = now + time::Duration::minutes(5);
        assert!(spend_id_token(&db, "h1", later, now).await.unwrap());
        assert!(
            !spend_id_token(&db, "h1", later, now).await.unwrap(),
            "once only"
        );
        // Once expired it is forgotten (the token itself is refused as expired by then).
        let after = later + time::Duration::minutes(1);
        assert!(spend_id_token(&db, "h1", after, after).await.unwrap());
        db.close().await;
    }
}
