//! Team operations shared by the API and the UI.

use crate::auth::policy::{self, GlobalAction};
use crate::domain::names::is_path_component;
use crate::error::AppError;
use crate::store::{Audit, Team, User};
use crate::AppState;

/// Creates a team; the caller becomes its owner.
pub async fn create(
    state: &AppState,
    user: &User,
    name: &str,
    description: &str,
) -> Result<Team, AppError> {
    policy::check_global(user, GlobalAction::CreateTeam)?;
    if name.len() > 100 || !is_path_component(name) {
        return Err(AppError::invalid(
            "name",
            format!("'{name}' is not a valid team name: use lowercase letters and digits, separated by '.', '_', '__' or '-'"),
        ));
    }
    super::namespaces::check_description(description)?;
    let audit = Audit::new(&user.username, "team.create");
    Ok(state
        .store
        .create_team(name, description.trim(), user.id, &audit)
        .await?)
}
