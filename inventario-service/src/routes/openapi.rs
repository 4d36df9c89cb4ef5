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

use axum::extract::Path;
use axum::response::{Redirect, Response};
use axum::Extension;
use http_server::openapi::{swagger_file, Document};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ErrorBody;

/// The scheme's name in the document: the HS256 JWT every write needs.
pub const SECURITY: &str = "jwt";

pub const TAG_INVENTARIO: &str = "inventario";
pub const TAG_TAREAS: &str = "tareas";
pub const TAG_OPERACIONES: &str = "operaciones";
pub use http_server::openapi::TAG_DOCUMENTACION;

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
    doc.response()
}

/// `GET /docs`: to `/docs/`, so the page's relative links resolve under `/docs/`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = TAG_DOCUMENTACION,
    summary = "Swagger UI (redirige a /docs/)",
    responses((status = 303, description = "A `/docs/`.", headers(("location" = String)))),
)]
pub async fn docs_redirect() -> Redirect {
    http_server::openapi::docs_redirect()
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
    swagger_file("index.html")
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
    swagger_file(&archivo)
}

/// The document's route and Swagger UI's, for [`crate::api`]: they need no state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_redirect))
        .routes(routes!(docs_index))
        .routes(routes!(docs_file))
}
