//! The checks both services' `tests/openapi.rs` make of their API description, against the
//! running binary: the document is a valid OpenAPI 3.1 one (openapi-spec-validator, through
//! `$CELERY_PYTHON`, not our own reading), every documented route is answered by a handler and
//! nothing undocumented is, real answers fit the schemas the document gives them (jsonschema),
//! and `/docs/` is Swagger UI served whole from the binary, nothing fetched from elsewhere.
//!
//! What differs between the services (the routes they know, how a request authenticates, which
//! answers they provoke) stays in their tests; [`Api`] carries the one difference every request
//! shares, a bearer token or none.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

/// The methods a route may be documented with, as the document spells them.
pub const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// A running service seen by a client that does not follow redirects (`/docs` must be seen
/// answering 303), with the bearer token every [`Api::request`] carries, if any.
pub struct Api {
    pub base: String,
    pub http: Client,
    token: Option<String>,
}

impl Api {
    pub fn new(base: String, token: Option<&str>) -> Self {
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Api {
            base,
            http,
            token: token.map(str::to_owned),
        }
    }

    /// `method uri` (a path on the service), with the token if there is one.
    pub fn request(&self, method: Method, uri: &str) -> RequestBuilder {
        let r = self.anonymous(method, uri);
        match &self.token {
            Some(token) => r.bearer_auth(token),
            None => r,
        }
    }

    /// `method uri` without any token.
    pub fn anonymous(&self, method: Method, uri: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{uri}", self.base))
    }

    /// `GET /openapi.json`: JSON, and an OpenAPI 3.1 document.
    pub async fn document(&self) -> Value {
        let r = self
            .request(Method::GET, "/openapi.json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let doc: Value = r.json().await.unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        doc
    }
}

/// Every (method, path) of the document.
pub fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect()
}

/// Fails unless every route of `known` (method as the document spells it, path) is documented.
pub fn assert_documents(documented: &BTreeSet<(String, String)>, known: &[(&str, &str)]) {
    for (method, path) in known {
        assert!(
            documented.contains(&(method.to_string(), path.to_string())),
            "{method} {path} is not in the document: {documented:?}"
        );
    }
}

/// Status and error code of an answer, if it is the services' JSON error; a stream is not read.
pub async fn error_code(r: reqwest::Response) -> (StatusCode, Option<String>) {
    let status = r.status();
    let stream = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if stream {
        return (status, None);
    }
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().map(str::to_owned))
}

/// The service answers exactly what the document says: every documented route by a handler,
/// not by the fallbacks (`ruta_no_encontrada`, `metodo_no_permitido`) nor, when the [`Api`]
/// carries a token, by a 401; every undocumented method of a documented path with 405. `concrete`
/// fills a documented path's parameters in.
pub async fn assert_routes_match(
    api: &Api,
    documented: &BTreeSet<(String, String)>,
    concrete: impl Fn(&str) -> String,
) {
    for (method, path) in documented {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = api
            .request(method.clone(), &concrete(path))
            .send()
            .await
            .unwrap();
        let (status, code) = error_code(r).await;
        assert!(
            !matches!(
                code.as_deref(),
                Some("ruta_no_encontrada" | "metodo_no_permitido")
            ),
            "{method} {path}: {status} {code:?}"
        );
        if api.token.is_some() {
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in METHODS {
            if documented.contains(&(method.to_owned(), path.clone())) {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = api.request(m, &concrete(path)).send().await.unwrap();
            let (status, code) = error_code(r).await;
            assert_eq!(
                (status, code.as_deref()),
                (StatusCode::METHOD_NOT_ALLOWED, Some("metodo_no_permitido")),
                "{method} {path} is answered but not documented"
            );
        }
    }
    // The probe can tell: a path nobody serves is the fallback's.
    let r = api
        .request(Method::GET, "/no-documentada")
        .send()
        .await
        .unwrap();
    let (status, code) = error_code(r).await;
    assert_eq!(
        (status, code.as_deref()),
        (StatusCode::NOT_FOUND, Some("ruta_no_encontrada"))
    );
}

/// Real answers of a service, each with the documented route it came from, for [`validate`].
#[derive(Default)]
pub struct Answers(Vec<Value>);

impl Answers {
    /// Sends `request`, asserts its status is `expected`, keeps the answer under the documented
    /// `path`, and returns its body (JSON, or null when it has none).
    pub async fn record(&mut self, path: &str, request: RequestBuilder, expected: u16) -> Value {
        let (client, request) = request.build_split();
        let request = request.expect("a well-formed request");
        let (method, uri) = (request.method().clone(), request.url().clone());
        let r = client.execute(request).await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert_eq!(status, expected, "{method} {uri}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        self.0
            .push(json!({"method": method.as_str(), "path": path, "status": status, "body": body}));
        body
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs `tests/python/openapi_check.py` (openapi-spec-validator on the document, jsonschema on
/// each answer against the schema the document gives its route and status), with the files it
/// reads written in `dir`; fails unless the document is valid and every answer was checked, and
/// returns the script's summary.
pub async fn validate(doc: &Value, answers: &Answers, dir: &Path) -> Value {
    let doc_path = dir.join("openapi.json");
    let answers_path = dir.join("respuestas.json");
    std::fs::write(&doc_path, serde_json::to_vec(doc).unwrap()).unwrap();
    std::fs::write(&answers_path, serde_json::to_vec(&answers.0).unwrap()).unwrap();
    let lines = crate::celery::run_script(
        "openapi_check.py",
        vec![
            doc_path.display().to_string(),
            answers_path.display().to_string(),
        ],
    )
    .await;
    let summary = lines.last().expect("a summary").clone();
    assert_eq!(summary["valido"], true, "{lines:?}");
    assert_eq!(summary["respuestas"], answers.len());
    summary
}

/// `/docs` sends to `/docs/`, which is Swagger UI: its scripts and styles are on our own
/// origin and served, the page names no other site, and its settings open `/openapi.json` and
/// send it to no online validator.
pub async fn assert_swagger_ui(api: &Api) {
    let r = api.request(Method::GET, "/docs").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/docs/");

    let r = api.request(Method::GET, "/docs/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = r.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    let assets = assets(&page);
    assert!(
        assets.iter().any(|u| u.ends_with(".js")) && assets.iter().any(|u| u.ends_with(".css")),
        "no script or style named: {page}"
    );
    for url in &assets {
        assert!(
            !url.contains("//") && !url.contains(':'),
            "{url} is not on our own origin"
        );
        let uri = format!("/docs/{}", url.trim_start_matches("./"));
        let r = api.request(Method::GET, &uri).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{uri}");
        assert!(!r.bytes().await.unwrap().is_empty(), "{uri} is empty");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page names another site: {page}"
    );
    let init = api
        .request(Method::GET, "/docs/swagger-initializer.js")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains(r#""url": "/openapi.json""#), "{init}");
    assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
    assert!(!init.contains("http"), "{init}");
}

/// The `src` of every `<script>` and the `href` of every `<link>` of a page.
fn assets(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (tag, attr) in [("<script", "src=\""), ("<link", "href=\"")] {
        for piece in page.split(tag).skip(1) {
            let element = piece.split('>').next().unwrap_or("");
            if let Some(rest) = element.split(attr).nth(1) {
                out.push(rest.split('"').next().unwrap_or("").to_owned());
            }
        }
    }
    out
}
