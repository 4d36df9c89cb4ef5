//! The API described: `GET /openapi.json`, an OpenAPI 3.1 document derived from the handlers'
//! `#[utoipa::path]` annotations, and `GET /docs/`, Swagger UI to browse it.
//!
//! Routes are registered in [`crate::app`] through utoipa-axum's `routes!`, which takes the
//! path and the method from the annotation itself: a route cannot be served without being in
//! the document, nor documented under another path than the one it answers on.
//!
//! Swagger UI's files are compiled into the binary (utoipa-swagger-ui's "vendored" feature),
//! and its page names them relatively: `/docs/` works offline, with nothing fetched from
//! outside the monitor. Both routes follow the same rule as the rest: behind `MONITOR_TOKEN`
//! when it is set (a browser that opened `/?token=` carries the cookie there too).

use axum::extract::Path;
use axum::response::{Redirect, Response};
use axum::Extension;
use http_server::openapi::{swagger_file, Document};
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The scheme's name in the document: `MONITOR_TOKEN` as a bearer token.
pub const SECURITY: &str = "monitor_token";

/// Tags, in the order Swagger UI shows them.
pub const TAG_MONITOR: &str = "monitor";
pub const TAG_PANEL: &str = "panel";
pub const TAG_OPERACIONES: &str = "operaciones";
pub use http_server::openapi::TAG_DOCUMENTACION;

/// The document's fixed parts; the paths and their schemas are added by `routes!`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "monitor-service",
        description = "Detector de fallos del worker de inventario: ping-echo a través de Redis \
                       y latidos. Todas las respuestas de error son JSON \
                       `{\"error\": \"<código>\", \"detalle\": \"<mensaje>\"}`. Una ruta que no \
                       existe responde 404 `ruta_no_encontrada`; un método que la ruta no admite, \
                       405 `metodo_no_permitido`. Con `MONITOR_TOKEN` configurado, todas las rutas \
                       salvo `/health` piden el token (cabecera `Authorization: Bearer <token>`, \
                       o la cookie que deja `GET /?token=<token>`) y responden 401 sin él.",
    ),
    tags(
        (name = TAG_MONITOR, description = "Lo que sabe la vigilancia: estado, historial, colas, tareas."),
        (name = TAG_PANEL, description = "El panel web y su flujo de eventos."),
        (name = TAG_OPERACIONES, description = "Salud del proceso y métricas de Prometheus."),
        (name = TAG_DOCUMENTACION, description = "Este documento y Swagger UI."),
    ),
    components(responses(NoAutenticado)),
    modifiers(&BearerToken),
    security((), ("monitor_token" = [])),
)]
pub struct ApiDoc;

/// Declares `MONITOR_TOKEN` as an HTTP bearer scheme. The document's default security is "none
/// or this token": whether the token is needed depends on the deployment, not on the route.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "MONITOR_TOKEN, cuando está configurado (sin él, el monitor está abierto).".into(),
        );
        components.add_security_scheme(SECURITY, SecurityScheme::Http(http));
    }
}

/// Every error answer of the monitor.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "consulta_invalida", "detalle": "limite: invalid digit found in string"}))]
#[schema(description = "El cuerpo de toda respuesta de error.")]
pub struct ErrorBody {
    /// Código estable, para programas.
    pub error: String,
    /// Explicación en español, para personas.
    pub detalle: String,
}

/// The 401 every route but `/health` may give.
#[derive(ToResponse)]
#[response(
    description = "Con MONITOR_TOKEN configurado: falta el token (`no_autenticado`) o no es el \
                   del monitor (`token_invalido`). Lleva `WWW-Authenticate: Bearer`."
)]
#[allow(dead_code)] // only its schema is used
pub struct NoAutenticado(ErrorBody);

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = TAG_DOCUMENTACION,
    summary = "Este documento OpenAPI",
    responses(
        (status = 200, description = "El documento OpenAPI 3.1 del monitor.", content_type = "application/json", body = Object),
        (status = 401, response = NoAutenticado),
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
    responses(
        (status = 303, description = "A `/docs/`.", headers(("location" = String))),
        (status = 401, response = NoAutenticado),
    )
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
        (status = 401, response = NoAutenticado),
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
        (status = 401, response = NoAutenticado),
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
