//! The API described: `GET /openapi.json`, an OpenAPI 3.1 document derived from the handlers'
//! `#[utoipa::path]` annotations and the types they take and give, and `GET /docs/`, Swagger
//! UI to browse it and try the routes.
//!
//! Routes are registered in [`crate::app`] through utoipa-axum's `routes!`, which takes the
//! path and the method from the annotation itself: a route cannot be served without being in
//! the document, nor documented under another path than the one it answers on.
//!
//! Swagger UI's files are compiled into the binary (utoipa-swagger-ui's "vendored" feature)
//! and its page names them relatively: `/docs/` works offline, with nothing fetched from
//! outside the service. Both are reads, open like every other read.

use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;

/// The scheme's name in the document: the HS256 JWT every write needs.
pub const SECURITY: &str = "jwt";

pub const TAG_INVENTARIO: &str = "inventario";
pub const TAG_TAREAS: &str = "tareas";
pub const TAG_OPERACIONES: &str = "operaciones";
pub const TAG_DOCUMENTACION: &str = "documentación";

/// The document's fixed parts; the paths and their schemas are added by `routes!`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "inventario-service",
        description = "API REST del inventario. Los productos se leen y escriben en SQLite (funciona \
                       con Redis caído); el stock cambia con movimientos, que van por la cola de \
                       tareas (202 con el id de la tarea, que se sigue en `/tareas/{id}`).\n\n\
                       Todas las respuestas de error son JSON `{\"error\": \"<código>\", \
                       \"detalle\": \"<mensaje>\"}`. Una ruta que no existe responde 404 \
                       `ruta_no_encontrada`; un método que la ruta no admite, 405 \
                       `metodo_no_permitido`. Las escrituras piden `Authorization: Bearer <JWT>` \
                       (HS256, firmado con JWT_SECRET; `inventario-service token` los emite); las \
                       lecturas no miran la cabecera.",
    ),
    tags(
        (name = TAG_INVENTARIO, description = "Productos (CRUD) y movimientos de stock."),
        (name = TAG_TAREAS, description = "Estado y resultado de las tareas enviadas."),
        (name = TAG_OPERACIONES, description = "Salud, disponibilidad y métricas de Prometheus."),
        (name = TAG_DOCUMENTACION, description = "Este documento y Swagger UI."),
    ),
    modifiers(&BearerJwt),
)]
pub struct ApiDoc;

/// Declares the bearer JWT the writes name in their `security`.
struct BearerJwt;

impl Modify for BearerJwt {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "HS256 con JWT_SECRET; `sub` y `exp` obligatorios. `inventario-service token \
                 --sub <quién>` emite uno.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(SECURITY, SecurityScheme::Http(scheme));
    }
}

/// The document, serialized once per router, served by [`openapi_json`].
#[derive(Clone)]
pub struct Document(pub Arc<str>);

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = TAG_DOCUMENTACION,
    summary = "Este documento OpenAPI",
    responses(
        (status = 200, description = "El documento OpenAPI 3.1 del servicio.", content_type = "application/json", body = Object),
    )
)]
pub async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        doc.0.to_string(),
    )
        .into_response()
}

/// Swagger UI's settings: the document it opens (an absolute path on our own origin), and no
/// online validator: by default the page would send the document's address to swagger.io's.
static SWAGGER: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::from("/openapi.json")
            .validator_url("none")
            .display_request_duration(true),
    )
});

/// `GET /docs`: to `/docs/`, so the page's relative links resolve under `/docs/`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = TAG_DOCUMENTACION,
    summary = "Swagger UI (redirige a /docs/)",
    responses((status = 303, description = "A `/docs/`.", headers(("location" = String)))),
)]
pub async fn docs_redirect() -> Redirect {
    Redirect::to("/docs/")
}

/// `GET /docs/`.
#[utoipa::path(
    get,
    path = "/docs/",
    tag = TAG_DOCUMENTACION,
    summary = "Swagger UI",
    responses(
        (status = 200, description = "La página de Swagger UI, que abre `/openapi.json`.", content_type = "text/html", body = String),
    )
)]
pub async fn docs_index() -> Response {
    docs_file_named("index.html")
}

/// `GET /docs/{archivo}`.
#[utoipa::path(
    get,
    path = "/docs/{archivo}",
    tag = TAG_DOCUMENTACION,
    summary = "Un archivo de Swagger UI",
    params(("archivo" = String, Path, description = "Nombre del archivo, p. ej. `swagger-ui.css`.")),
    responses(
        (status = 200, description = "El archivo, compilado en el binario.", content_type = "application/octet-stream", body = String),
        (status = 404, description = "`archivo_desconocido`: Swagger UI no tiene ese archivo.", body = ErrorBody),
        (status = 500, description = "`documentacion`: no se pudo preparar el archivo.", body = ErrorBody),
    )
)]
pub async fn docs_file(Path(archivo): Path<String>) -> Response {
    docs_file_named(&archivo)
}

fn docs_file_named(name: &str) -> Response {
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
