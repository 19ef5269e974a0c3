//! API tokens: created (shown once), listed and revoked. A user manages their own; the
//! operator at the command line anyone's.

use super::{Actor, Context, Error, Result};
use crate::domain::model::{ApiToken, User};

/// The longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// Whose tokens: the user's own, or (the operator) those of the user named.
async fn owner(ctx: &Context, actor: &Actor, username: Option<&str>) -> Result<User> {
    match (actor, username) {
        (Actor::User(user), None) => Ok(user.clone()),
        (Actor::User(user), Some(name)) if name == user.username => Ok(user.clone()),
        (Actor::User(_), Some(_)) => Err(Error::Forbidden(
            "a user manages only their own tokens".into(),
        )),
        (Actor::Operator(_), Some(name)) => super::users::get(ctx, actor, name).await,
        (Actor::Operator(_), None) => Err(Error::invalid(
            "user",
            "name the user whose tokens these are",
        )),
    }
}

/// A new token and its secret, which is shown only this once (Herald keeps its hash).
pub async fn create(
    ctx: &Context,
    actor: &Actor,
    username: Option<&str>,
    label: &str,
) -> Result<(ApiToken, String)> {
    let label = label.trim();
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(Error::invalid(
            "label",
            format!("a label has at most {MAX_LABEL_CHARS} characters"),
        ));
    }
    let user = owner(ctx, actor, username).await?;
    let secret = crate::auth::new_api_token();
    let stored = ctx
        .store
        .create_token(user.id, label, &crate::auth::token_hash(&secret))
        .await?;
    tracing::info!(user = %user.username, token_id = stored.id, by = %actor.name(), "API token created");
    Ok((stored, secret))
}

pub async fn list(ctx: &Context, actor: &Actor, username: Option<&str>) -> Result<Vec<ApiToken>> {
    let user = owner(ctx, actor, username).await?;
    Ok(ctx.store.list_tokens(user.id).await?)
}

/// Revokes a token: a user one of their own; the operator any, found by its id.
pub async fn revoke(ctx: &Context, actor: &Actor, id: i64) -> Result<(User, ApiToken)> {
    let candidates = match actor {
        Actor::User(user) => vec![user.clone()],
        Actor::Operator(_) => ctx.store.list_users().await?,
    };
    for user in candidates {
        let tokens = ctx.store.list_tokens(user.id).await?;
        if let Some(token) = tokens.into_iter().find(|t| t.id == id) {
            ctx.store.revoke_token(user.id, id).await?;
            tracing::info!(user = %user.username, token_id = id, by = %actor.name(), "API token revoked");
            return Ok((user, token));
        }
    }
    Err(Error::NotFound(format!("token {id} not found")))
}
