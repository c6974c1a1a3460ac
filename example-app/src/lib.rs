//! An example of the application side: a SaaS app whose own table is shaped differently from
//! the directory (`app_users(email, full_name, is_active, roles text[])`), kept in step with the
//! change feed, revoking the user's sessions when the user is deprovisioned or erased. Its feed
//! position is stored in the same transaction as its effects, so each change takes effect
//! exactly once (see `change_feed`).

use change_feed::{Application, Change, ChangeHandler, Position, UserState, dispatch};
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// The application's own tables.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS app_users (
    organization_id   text    NOT NULL,
    directory_user_id text    NOT NULL,
    email             text,
    full_name         text,
    is_active         boolean NOT NULL,
    roles             text[]  NOT NULL,
    PRIMARY KEY (organization_id, directory_user_id)
);
CREATE TABLE IF NOT EXISTS app_sessions (
    id                bigserial PRIMARY KEY,
    organization_id   text      NOT NULL,
    directory_user_id text      NOT NULL,
    revoked_at        timestamptz
);
CREATE TABLE IF NOT EXISTS app_feed_position (
    id            int    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    seq           bigint NOT NULL,
    stream_offset bigint NOT NULL
);
";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("database")]
    Database(#[from] diesel::result::Error),
    #[error("database connection")]
    Connect(#[from] diesel::ConnectionError),
}

/// The example application, over one connection to its own database.
pub struct ExampleApp {
    conn: AsyncPgConnection,
}

impl ExampleApp {
    /// Connects and creates the tables if needed.
    pub async fn connect(database_url: &str) -> Result<Self, AppError> {
        let mut conn = AsyncPgConnection::establish(database_url).await?;
        for statement in SCHEMA.split(';').filter(|s| !s.trim().is_empty()) {
            diesel::sql_query(statement).execute(&mut conn).await?;
        }
        Ok(Self { conn })
    }
}

#[derive(diesel::QueryableByName)]
struct PositionRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = BigInt)]
    stream_offset: i64,
}

impl Application for ExampleApp {
    type Error = AppError;

    async fn position(&mut self) -> Result<Option<Position>, AppError> {
        let rows: Vec<PositionRow> =
            diesel::sql_query("SELECT seq, stream_offset FROM app_feed_position WHERE id = 1")
                .load(&mut self.conn)
                .await?;
        Ok(rows.into_iter().next().map(|r| Position {
            seq: r.seq,
            offset: u64::try_from(r.stream_offset).unwrap_or(0),
        }))
    }

    async fn apply(&mut self, change: &Change, at: Position) -> Result<(), AppError> {
        self.conn
            .transaction::<_, AppError, _>(async |conn| {
                dispatch(&mut InTransaction { conn }, change).await?;
                diesel::sql_query(
                    "INSERT INTO app_feed_position (id, seq, stream_offset) VALUES (1, $1, $2) \
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, stream_offset = excluded.stream_offset",
                )
                .bind::<BigInt, _>(at.seq)
                .bind::<BigInt, _>(i64::try_from(at.offset).unwrap_or(i64::MAX))
                .execute(conn)
                .await?;
                Ok(())
            })
            .await
    }
}

/// The handler, inside the transaction that also stores the position.
struct InTransaction<'a> {
    conn: &'a mut AsyncPgConnection,
}

fn full_name(user: &UserState) -> Option<String> {
    user.display_name
        .clone()
        .or_else(|| match (&user.given_name, &user.family_name) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (Some(n), None) | (None, Some(n)) => Some(n.clone()),
            (None, None) => None,
        })
}

impl InTransaction<'_> {
    /// Every user change carries the whole user: the row becomes exactly that.
    async fn upsert(&mut self, change: &Change, user: &UserState) -> Result<(), AppError> {
        diesel::sql_query(
            "INSERT INTO app_users (organization_id, directory_user_id, email, full_name, is_active, roles) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (organization_id, directory_user_id) DO UPDATE SET \
             email = excluded.email, full_name = excluded.full_name, is_active = excluded.is_active, roles = excluded.roles",
        )
        .bind::<Text, _>(&change.organization_id)
        .bind::<Text, _>(&user.directory_user_id)
        .bind::<Nullable<Text>, _>(&user.email)
        .bind::<Nullable<Text>, _>(full_name(user))
        .bind::<Bool, _>(user.active)
        .bind::<Array<Text>, _>(&user.roles)
        .execute(self.conn)
        .await?;
        Ok(())
    }

    async fn sign_in(&mut self, change: &Change, user: &UserState) -> Result<(), AppError> {
        diesel::sql_query(
            "INSERT INTO app_sessions (organization_id, directory_user_id) VALUES ($1, $2)",
        )
        .bind::<Text, _>(&change.organization_id)
        .bind::<Text, _>(&user.directory_user_id)
        .execute(self.conn)
        .await?;
        Ok(())
    }

    async fn revoke_sessions(&mut self, change: &Change, user: &UserState) -> Result<(), AppError> {
        diesel::sql_query(
            "UPDATE app_sessions SET revoked_at = now() \
             WHERE organization_id = $1 AND directory_user_id = $2 AND revoked_at IS NULL",
        )
        .bind::<Text, _>(&change.organization_id)
        .bind::<Text, _>(&user.directory_user_id)
        .execute(self.conn)
        .await?;
        Ok(())
    }
}

impl ChangeHandler for InTransaction<'_> {
    type Error = AppError;

    async fn on_provisioned(&mut self, change: &Change, user: &UserState) -> Result<(), AppError> {
        self.upsert(change, user).await?;
        // The example's stand-in for "the user signed in": a session to revoke later.
        self.sign_in(change, user).await
    }

    async fn on_reactivated(&mut self, change: &Change, user: &UserState) -> Result<(), AppError> {
        self.upsert(change, user).await?;
        self.sign_in(change, user).await
    }

    async fn on_updated(&mut self, change: &Change, user: &UserState) -> Result<(), AppError> {
        self.upsert(change, user).await
    }

    async fn on_deprovisioned(
        &mut self,
        change: &Change,
        user: &UserState,
    ) -> Result<(), AppError> {
        self.upsert(change, user).await?;
        self.revoke_sessions(change, user).await
    }

    async fn on_erased(&mut self, change: &Change, user: &UserState) -> Result<(), AppError> {
        self.revoke_sessions(change, user).await?;
        diesel::sql_query(
            "DELETE FROM app_users WHERE organization_id = $1 AND directory_user_id = $2",
        )
        .bind::<Text, _>(&change.organization_id)
        .bind::<Text, _>(&user.directory_user_id)
        .execute(self.conn)
        .await?;
        Ok(())
    }

    async fn on_roles_changed(
        &mut self,
        change: &Change,
        user: &UserState,
        _granted: &[String],
        _revoked: &[String],
    ) -> Result<(), AppError> {
        self.upsert(change, user).await
    }

    async fn on_groups_changed(
        &mut self,
        change: &Change,
        user: &UserState,
        _joined: &[String],
        _left: &[String],
    ) -> Result<(), AppError> {
        self.upsert(change, user).await
    }
}
