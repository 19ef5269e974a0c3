//! Users, their API tokens and UI sessions, and teams with their members.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::history::write_activity;
use super::{conflict_on_unique, locking, rows, sql, Backend, Conn, SqlRow, Tx};
use crate::domain::model::{ApiToken, Audit, Member, Role, Team, User, Visibility};
use crate::store::{from_ms, to_ms, Accounts, StoreError, StoreResult};

const USER_COLUMNS: &str = "id, username, email, admin, disabled, created_at";

#[async_trait]
impl<B: Backend> Accounts for B {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        email: Option<&str>,
        admin: bool,
    ) -> StoreResult<User> {
        let now = to_ms(Utc::now());
        let mut tx = self.begin().await?;
        let row = sql(format!(
            "INSERT INTO users (username, password_hash, email, admin, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
        ))
        .bind(username)
        .bind(password_hash)
        .bind(email)
        .bind(admin)
        .bind(now)
        .one(&mut tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("the user '{username}' already exists")))?;
        let user = rows::user(&row)?;
        // The personal team and namespace come with the user, or nothing is created.
        let team_id = sql(
            "INSERT INTO teams (name, personal, created_at) VALUES ($1, TRUE, $2) RETURNING id",
        )
        .bind(format!("~{username}"))
        .bind(now)
        .one(&mut tx)
        .await?
        .int("id")?;
        sql("INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, 'owner')")
            .bind(team_id)
            .bind(user.id)
            .exec(&mut tx)
            .await?;
        sql(
            "INSERT INTO namespaces (name, description, team_id, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(username)
        .bind(format!("Personal namespace of {username}"))
        .bind(team_id)
        .bind(now)
        .exec(&mut tx)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!(
                    "a namespace named '{username}' already exists, so it cannot become the \
                     user's personal namespace"
                )
            })
        })?;
        tx.commit().await?;
        Ok(user)
    }

    async fn user_credentials(&self, username: &str) -> StoreResult<Option<(User, String)>> {
        sql(format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1"
        ))
        .bind(username)
        .opt(&mut self.reader())
        .await?
        .map(|r| Ok((rows::user(&r)?, r.text("password_hash")?)))
        .transpose()
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        sql(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY username"
        ))
        .all(&mut self.reader())
        .await?
        .iter()
        .map(rows::user)
        .collect()
    }

    async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<()> {
        let changed = sql("UPDATE users SET password_hash = $1 WHERE username = $2")
            .bind(password_hash)
            .bind(username)
            .exec(&mut self.writer())
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("user '{username}'")));
        }
        Ok(())
    }

    async fn update_user(
        &self,
        username: &str,
        admin: Option<bool>,
        disabled: Option<bool>,
    ) -> StoreResult<User> {
        let row = sql(format!(
            "UPDATE users SET admin = COALESCE($1, admin), disabled = COALESCE($2, disabled) \
             WHERE username = $3 RETURNING {USER_COLUMNS}"
        ))
        .bind(admin)
        .bind(disabled)
        .bind(username)
        .opt(&mut self.writer())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user '{username}'")))?;
        rows::user(&row)
    }

    async fn create_token(
        &self,
        user_id: i64,
        label: &str,
        token_hash: &str,
    ) -> StoreResult<ApiToken> {
        let row = sql(
            "INSERT INTO api_tokens (user_id, label, token_hash, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id, label, created_at, last_used_at",
        )
        .bind(user_id)
        .bind(label)
        .bind(token_hash)
        .bind(to_ms(Utc::now()))
        .one(&mut self.writer())
        .await?;
        rows::token(&row)
    }

    async fn list_tokens(&self, user_id: i64) -> StoreResult<Vec<ApiToken>> {
        sql(
            "SELECT id, label, created_at, last_used_at FROM api_tokens \
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id",
        )
        .bind(user_id)
        .all(&mut self.reader())
        .await?
        .iter()
        .map(rows::token)
        .collect()
    }

    async fn revoke_token(&self, user_id: i64, token_id: i64) -> StoreResult<()> {
        let revoked = sql("UPDATE api_tokens SET revoked_at = $1 \
             WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
        .bind(to_ms(Utc::now()))
        .bind(token_id)
        .bind(user_id)
        .exec(&mut self.writer())
        .await?;
        if revoked == 0 {
            return Err(StoreError::NotFound(format!("token {token_id}")));
        }
        Ok(())
    }

    async fn authenticate_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>> {
        let row = sql(
            "SELECT u.id, u.username, u.email, u.admin, u.disabled, u.created_at, \
             t.id AS token_id, t.last_used_at FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(token_hash)
        .opt(&mut self.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        // Record use at most once a minute: a write per API call would be wasteful.
        if row
            .int_opt("last_used_at")?
            .is_none_or(|t| to_ms(now) - t > 60_000)
        {
            sql("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(to_ms(now))
                .bind(row.int("token_id")?)
                .exec(&mut self.writer())
                .await?;
        }
        Ok(Some(rows::user(&row)?))
    }

    async fn list_teams(&self, visibility: &Visibility) -> StoreResult<Vec<Team>> {
        let rows = sql(
            "SELECT name FROM teams WHERE NOT personal AND (CAST($1 AS BIGINT) IS NULL OR id IN \
             (SELECT team_id FROM team_members WHERE user_id = $1)) ORDER BY name",
        )
        .bind(visibility.member())
        .all(&mut self.reader())
        .await?;
        let mut teams = Vec::with_capacity(rows.len());
        for row in rows {
            teams.push(self.get_team(&row.text("name")?).await?);
        }
        Ok(teams)
    }

    async fn get_team(&self, name: &str) -> StoreResult<Team> {
        let row =
            sql("SELECT id, name, description, personal, created_at FROM teams WHERE name = $1")
                .bind(name)
                .opt(&mut self.reader())
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("team '{name}'")))?;
        let id = row.int("id")?;
        let members = sql(
            "SELECT u.username, m.role FROM team_members m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = $1 ORDER BY u.username",
        )
        .bind(id)
        .all(&mut self.reader())
        .await?
        .iter()
        .map(|r| {
            Ok(Member {
                username: r.text("username")?,
                role: Role::parse(&r.text("role")?).unwrap_or(Role::Viewer),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(Team {
            id,
            name: row.text("name")?,
            description: row.text("description")?,
            personal: row.flag("personal")?,
            created_at: from_ms(row.int("created_at")?),
            members,
        })
    }

    async fn create_team(
        &self,
        name: &str,
        description: &str,
        owner_id: i64,
        audit: &Audit,
    ) -> StoreResult<Team> {
        let mut tx = self.begin().await?;
        let id = sql(
            "INSERT INTO teams (name, description, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(description)
        .bind(to_ms(Utc::now()))
        .one(&mut tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("the team '{name}' already exists")))?
        .int("id")?;
        sql("INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, 'owner')")
            .bind(id)
            .bind(owner_id)
            .exec(&mut tx)
            .await?;
        write_activity(&mut tx, audit, Some(id), Some(name), None, None).await?;
        tx.commit().await?;
        self.get_team(name).await
    }

    async fn set_member(
        &self,
        team: &str,
        user_id: i64,
        role: Role,
        audit: &Audit,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let team_id = lock_team::<B>(&mut tx, team).await?;
        let current = member_role(&mut tx, team_id, user_id).await?;
        if current == Some(Role::Owner) && role != Role::Owner {
            ensure_another_owner(&mut tx, team, team_id).await?;
        }
        sql(
            "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (team_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        )
        .bind(team_id)
        .bind(user_id)
        .bind(role.as_str())
        .exec(&mut tx)
        .await?;
        write_activity(&mut tx, audit, Some(team_id), Some(team), None, None).await?;
        tx.commit().await?;
        Ok(current.is_none())
    }

    async fn remove_member(&self, team: &str, user_id: i64, audit: &Audit) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let team_id = lock_team::<B>(&mut tx, team).await?;
        match member_role(&mut tx, team_id, user_id).await? {
            None => {
                return Err(StoreError::NotFound(format!(
                    "that member of team '{team}'"
                )))
            }
            Some(Role::Owner) => ensure_another_owner(&mut tx, team, team_id).await?,
            Some(_) => {}
        }
        sql("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .exec(&mut tx)
            .await?;
        write_activity(&mut tx, audit, Some(team_id), Some(team), None, None).await?;
        tx.commit().await
    }

    async fn role_in_team(&self, team_id: i64, user_id: i64) -> StoreResult<Option<Role>> {
        member_role(&mut self.reader(), team_id, user_id).await
    }

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let now = to_ms(Utc::now());
        let mut tx = self.begin().await?;
        // Expired sessions are swept whenever a new one starts: no separate job needed.
        sql("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .exec(&mut tx)
            .await?;
        sql(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now)
        .bind(to_ms(expires_at))
        .exec(&mut tx)
        .await?;
        tx.commit().await
    }

    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(User, String)>> {
        sql(
            "SELECT u.id, u.username, u.email, u.admin, u.disabled, u.created_at, s.csrf_token \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND NOT u.disabled",
        )
        .bind(token_hash)
        .bind(to_ms(now))
        .opt(&mut self.reader())
        .await?
        .map(|r| Ok((rows::user(&r)?, r.text("csrf_token")?)))
        .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sql("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .exec(&mut self.writer())
            .await?;
        Ok(())
    }
}

/// The team's id, with its row locked until the transaction ends where the database
/// locks rows: the "keeps one owner" check and the change it guards cannot interleave
/// with another process's.
async fn lock_team<B: Backend>(tx: &mut B::Tx, team: &str) -> StoreResult<i64> {
    sql(format!(
        "SELECT id FROM teams WHERE name = $1{}",
        locking::<B>(" FOR UPDATE")
    ))
    .bind(team)
    .opt(tx)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("team '{team}'")))?
    .int("id")
}

async fn member_role(on: &mut impl Conn, team_id: i64, user_id: i64) -> StoreResult<Option<Role>> {
    let row = sql("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .opt(on)
        .await?;
    Ok(match row {
        Some(r) => Role::parse(&r.text("role")?),
        None => None,
    })
}

/// A team always keeps at least one owner.
async fn ensure_another_owner(on: &mut impl Conn, team: &str, team_id: i64) -> StoreResult<()> {
    let owners =
        sql("SELECT COUNT(*) AS owners FROM team_members WHERE team_id = $1 AND role = 'owner'")
            .bind(team_id)
            .one(on)
            .await?
            .int("owners")?;
    if owners <= 1 {
        return Err(StoreError::Conflict(format!(
            "team '{team}' must keep at least one owner: make someone else owner first"
        )));
    }
    Ok(())
}
