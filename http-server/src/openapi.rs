//! What both services do the same way to publish their API: serve the OpenAPI document at
//! `/openapi.json` and Swagger UI under `/docs/`.
//!
//! The routes themselves stay in each service, as thin `#[utoipa::path]` handlers (utoipa-axum's
//! `routes!` registers a route from its annotation, and each service documents its own errors
//! and authentication); their bodies call what is here, so the two services answer these routes
//! with the same bytes, statuses and headers.
//!
//! Swagger UI's files are compiled into the binary (utoipa-swagger-ui's "vendored" feature) and
//! its page names them relatively: `/docs/` works offline, with nothing fetched from outside the
//! service.

use std::sync::{Arc, LazyLock};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// The tag both services put their documentation routes under.
pub const TAG_DOCUMENTACION: &str = "documentación";

/// The path of the document, which Swagger UI opens.
pub const DOCUMENT_PATH: &str = "/openapi.json";

/// The document, serialized once per router and shared by every request (an axum
/// `Extension`), served by [`Document::response`].
#[derive(Clone)]
pub struct Document(Arc<str>);

impl Document {
    /// Serializes `doc`. Serializing a document built from annotations does not fail; if it
    /// did, the route would serve an empty body rather than stop the service from starting.
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        Document(Arc::from(doc.to_json().unwrap_or_default()))
    }

    /// `GET /openapi.json`'s answer: the document as `application/json`.
    pub fn response(&self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.0.to_string(),
        )
            .into_response()
    }
}

/// `GET /docs`'s answer: to `/docs/`, so the page's relative links resolve under `/docs/`.
pub fn docs_redirect() -> Redirect {
    Redirect::to("/docs/")
}

/// Swagger UI's settings: the document it opens (an absolute path on our own origin), and no
/// online validator: by default the page would send the document's address to swagger.io's.
static SWAGGER: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::from(DOCUMENT_PATH)
            .validator_url("none")
            .display_request_duration(true),
    )
});

/// `GET /docs/{name}`'s answer (`index.html` for `GET /docs/`): the file with its content type,
/// or the services' JSON error, 404 `archivo_desconocido` for a name Swagger UI does not have.
pub fn swagger_file(name: &str) -> Response {
    let error = |status: StatusCode, codigo: &str, detalle: String| {
        (
            status,
            axum::Json(serde_json::json!({"error": codigo, "detalle": detalle})),
        )
            .into_response()
    };
    match utoipa_swagger_ui::serve(name, SWAGGER.clone()) {
        Ok(Some(file)) => {
            let content_type = HeaderValue::from_str(&file.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                ],
                file.bytes.into_owned(),
            )
                .into_response()
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "archivo_desconocido",
            format!("Swagger UI no tiene el archivo {name}"),
        ),
        // Only the initializer is rewritten (with the document's URL); that cannot fail for a
        // fixed configuration, but if it did the page would say so rather than hang.
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "documentacion",
            format!("no se pudo preparar Swagger UI: {e}"),
        ),
    }
}
