//! The error body of every Kafkube API and extractors that produce it.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// `{"error": "…"}`: what is wrong, for a person to read. The body of every error answer; the
/// apps' OpenAPI documents name this schema.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody { error: message.into() })).into_response()
}

/// A failure of the service rather than of the request: 503 while the database is unreachable
/// (the client may retry), 500 otherwise. The cause is logged; the client gets a generic message.
/// Apps wrap it as one variant of their own error type.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("database unavailable")]
    Unavailable(#[source] kafkube_store::StoreError),
    #[error("internal error")]
    Internal(#[source] kafkube_store::StoreError),
}

impl From<kafkube_store::StoreError> for ServiceError {
    fn from(e: kafkube_store::StoreError) -> Self {
        if e.is_transient() {
            Self::Unavailable(e)
        } else {
            Self::Internal(e)
        }
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        error_response(status, self.to_string())
    }
}

/// The usual error of a handler: the request's fault, with its status and a message for the
/// `{"error"}` body, or a [`ServiceError`]. Apps whose errors carry their own meaning (the
/// students API's 404 and 409) wrap [`ServiceError`] in a type of their own instead.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{1}")]
    Status(StatusCode, String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl RequestError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::Status(StatusCode::BAD_REQUEST, message.into())
    }
}

impl From<kafkube_store::StoreError> for RequestError {
    fn from(e: kafkube_store::StoreError) -> Self {
        Self::Service(e.into())
    }
}

impl IntoResponse for RequestError {
    fn into_response(self) -> Response {
        match self {
            Self::Status(status, message) => error_response(status, message),
            Self::Service(e) => e.into_response(),
        }
    }
}

/// `axum::Json` whose rejections are the contract's `{"error"}` bodies: 400 for syntax and
/// schema errors (never 422), 415 for a missing `Content-Type: application/json`, 413 for a body
/// over the limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(r: JsonRejection) -> Response {
    match r {
        JsonRejection::JsonDataError(e) => error_response(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {}", source_text(&e)),
        ),
        JsonRejection::JsonSyntaxError(e) => {
            error_response(StatusCode::BAD_REQUEST, format!("invalid JSON: {}", source_text(&e)))
        }
        JsonRejection::MissingJsonContentType(_) => error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a JSON body with header `Content-Type: application/json`",
        ),
        other => {
            let status = other.status();
            let status = if status.is_client_error() {
                status
            } else {
                StatusCode::BAD_REQUEST
            };
            error_response(status, other.body_text())
        }
    }
}

/// The body of a request that declares itself JSON (`Content-Type: application/json` or
/// `application/*+json`, else 415), unparsed, for handlers that parse it themselves (borrowing
/// from it rather than building a `serde_json::Value`). 413 for a body over the limit.
#[derive(Debug, Clone, Default)]
pub struct JsonBytes(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !declares_json(req.headers()) {
            return Err(error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body with header `Content-Type: application/json`",
            ));
        }
        match bytes::Bytes::from_request(req, state).await {
            Ok(b) => Ok(Self(b)),
            Err(r) => Err(error_response(r.status(), r.body_text())),
        }
    }
}

/// `application/json`, or a `+json` subtype, with any parameters.
fn declares_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

/// The innermost error message (serde's, with line and column), without axum's prefix.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// `axum::extract::Path` with a 400 `{"error"}` rejection.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.path().contains("%00") {
            return Err(nul_rejection("path parameters"));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(r) => Err(path_rejection(r)),
        }
    }
}

fn path_rejection(r: PathRejection) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        format!("invalid path parameter: {}", r.body_text()),
    )
}

/// `axum::extract::Query` with a 400 `{"error"}` rejection.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(nul_rejection("query parameters"));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

/// A NUL character (`%00`) in the URL: no backend stores it, and PostgreSQL refuses it even in a
/// lookup, so it is refused here, the same on every backend (see `kafkube_store::storable`).
fn nul_rejection(what: &str) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        format!("{what} must not contain the NUL character (%00)"),
    )
}

fn query_rejection(r: QueryRejection) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        format!("invalid query string: {}", source_text(&r)),
    )
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::declares_json;

    #[test]
    fn a_body_declares_json_by_its_media_type_and_suffix() {
        let with = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            declares_json(&h)
        };
        for yes in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/vnd.api+json",
        ] {
            assert!(with(yes), "{yes}");
        }
        for no in [
            "text/plain",
            "text/json",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "json",
        ] {
            assert!(!with(no), "{no}");
        }
        assert!(!declares_json(&HeaderMap::new()), "no content type");
    }
}
