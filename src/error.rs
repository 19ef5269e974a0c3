//! The one error type of the HTTP surface. Every handler returns `Result<_, AppError>`,
//! and every error leaves as `{"error":{"code","message","field"}}` with a fitting status; a
//! 422 also lists every problem of the request in `problems`. The use cases' own error
//! (`app::Error`) becomes one here, in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AppError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Every problem of a 422, the one in `message` and `field` first.
    pub problems: Vec<Problem>,
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    pub retry_after: Option<u64>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            problems: Vec::new(),
            retry_after: None,
        }
    }

    /// Adds `Retry-After: <seconds>` to the answer.
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(crate::auth::throttle::whole_seconds(wait));
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        if let Some(first) = self.problems.first_mut() {
            first.field = field.clone();
        }
        self.field = Some(field);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// Too many attempts; `wait` goes into `Retry-After`.
    pub fn too_many_requests(message: impl Into<String>, wait: std::time::Duration) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
            .with_retry_after(wait)
    }

    /// Herald is at a limit it sets itself (a 503); `wait` goes into `Retry-After`.
    pub fn overloaded(message: impl Into<String>, wait: std::time::Duration) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).with_retry_after(wait)
    }

    /// A well-formed request whose content breaks a rule; `field` names the culprit.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message.clone());
        e.problems = vec![Problem {
            field: field.clone(),
            message,
        }];
        e.with_field(field)
    }

    /// Every problem of a request at once: `message` and `field` are the first one's (as a
    /// single problem's are), `problems` lists them all. `None` when there are none.
    pub fn invalid_all(problems: Vec<crate::domain::names::Invalid>) -> Option<Self> {
        let mut problems = problems.into_iter().map(|p| Problem {
            field: p.field,
            message: p.message,
        });
        let first = problems.next()?;
        let mut e = Self::invalid(first.field, first.message);
        e.problems.extend(problems);
        Some(e)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// Validation errors of domain types become 422s naming their field.
impl From<crate::domain::names::Invalid> for AppError {
    fn from(e: crate::domain::names::Invalid) -> Self {
        AppError::invalid(e.field, e.message)
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        crate::app::Error::from(e).into()
    }
}

/// A use case's answer in HTTP: the status, the code and the message; every problem of
/// invalid input listed.
impl From<crate::app::Error> for AppError {
    fn from(e: crate::app::Error) -> Self {
        use crate::app::Error;
        match e {
            Error::NotFound(m) => AppError::not_found(m),
            Error::Forbidden(m) => AppError::forbidden(m),
            Error::Unauthorized(m) => AppError::unauthorized(m),
            Error::Conflict(m) => AppError::conflict(m),
            Error::Invalid(problems) => AppError::invalid_all(problems)
                .unwrap_or_else(|| AppError::bad_request("the input is not valid")),
            Error::TooManyAttempts { message, wait } => AppError::too_many_requests(message, wait),
            Error::Overloaded { message, wait } => AppError::overloaded(message, wait),
            Error::Internal(m) => AppError::internal(m),
        }
    }
}

impl From<crate::auth::policy::Denied> for AppError {
    fn from(d: crate::auth::policy::Denied) -> Self {
        crate::app::Error::from(d).into()
    }
}

/// Every error's JSON: `{"error": {"code", "message", "field", "problems"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `invalid`, `too_many_requests`,
    /// `overloaded`, `internal`.
    pub code: String,
    pub message: String,
    /// The offending field of a 422 (the first, when there are several).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem of a 422, in the order found; the first is `field` and `message`.
    /// Absent from other errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// One problem of a request: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
                problems: self.problems,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, AppError>;
