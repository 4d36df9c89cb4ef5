//! Who may change the inventory: every state-changing route takes an [`Autor`], which only a
//! request with `Authorization: Bearer <JWT>` signed with the service's secret yields.
//!
//! The rules, in one place:
//! - HS256 only. The token's header must say `HS256`: `none`, the other HMAC sizes and every
//!   public-key algorithm are refused before any signature is checked, so a token cannot choose
//!   how it is verified.
//! - `exp` and `sub` are required; `exp` (and `nbf`, if present) are checked with
//!   [`LEEWAY_SECS`] of tolerance for clocks that disagree a little. `sub` names who wrote, and
//!   is recorded in the request's log span (the `sub` field of the `http` span).
//! - Without a secret nothing may be written (401 `autenticacion_no_configurada`), unless the
//!   operator turned authentication off explicitly (`AUTH_DISABLED=true`).
//!
//! Reads never look at the header. The extractor runs before the path and the body are parsed,
//! so a refused write reads nothing and changes nothing. The secret itself is kept only inside
//! `jsonwebtoken`'s keys and [`Secreto`], whose `Debug` hides it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Rechazo};

/// Seconds of clock skew tolerated on `exp` and `nbf`: a token is still taken up to this long
/// after it expired, and this long before its `nbf`.
pub const LEEWAY_SECS: u64 = 30;

/// The longest `sub` taken: it goes into every log line of the request.
const MAX_SUB: usize = 200;

/// The HS256 secret (`JWT_SECRET`). Its `Debug` prints no part of it, so a `Config` logged
/// with `{:?}` cannot leak it.
#[derive(Clone)]
pub struct Secreto(String);

impl Secreto {
    pub fn new(s: impl Into<String>) -> Self {
        Secreto(s.into())
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Length in bytes (to warn about weak secrets without showing them).
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<String> for Secreto {
    fn from(s: String) -> Self {
        Secreto(s)
    }
}

impl fmt::Debug for Secreto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secreto(***)")
    }
}

/// The claims of the tokens the `token` subcommand issues, and the ones the service reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds (informative: not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum EmisionError {
    #[error("JWT_SECRET is not set (or empty): there is no secret to sign with")]
    SinSecreto,
    #[error("--sub is empty, too long (over {MAX_SUB} characters) or has control characters")]
    SubInvalido,
    #[error("--ttl must be more than 0 seconds")]
    TtlInvalido,
    #[error("signing the token: {0}")]
    Firma(#[from] jsonwebtoken::errors::Error),
}

/// A token for `sub`, valid for `ttl` from now, signed HS256 with `secreto`: what
/// `inventario-service token` prints. Returns the token and its claims.
pub fn emitir(
    secreto: &Secreto,
    sub: &str,
    ttl: Duration,
) -> Result<(String, Claims), EmisionError> {
    if secreto.is_empty() {
        return Err(EmisionError::SinSecreto);
    }
    if !sub_valido(sub) {
        return Err(EmisionError::SubInvalido);
    }
    if ttl.as_secs() == 0 {
        return Err(EmisionError::TtlInvalido);
    }
    let now = ahora();
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now.saturating_add(ttl.as_secs()),
        iat: Some(now),
    };
    let key = EncodingKey::from_secret(secreto.bytes())?;
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)?;
    Ok((token, claims))
}

fn ahora() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sub_valido(sub: &str) -> bool {
    !sub.trim().is_empty() && sub.chars().count() <= MAX_SUB && !sub.chars().any(char::is_control)
}

/// How this instance decides who may write; built once at start from the settings.
#[derive(Clone)]
pub enum Autenticacion {
    /// Writes need a token signed with this secret.
    Jwt(Arc<Verificador>),
    /// No secret was given: every write is refused, saying so.
    NoConfigurada,
    /// `AUTH_DISABLED=true`: writes need no token (logged as a warning at start).
    Desactivada,
}

impl Autenticacion {
    /// From the settings: `AUTH_DISABLED` wins over a secret (it is the explicit opt-out); an
    /// empty secret counts as none.
    pub fn new(secreto: Option<&Secreto>, desactivada: bool) -> Self {
        match secreto {
            _ if desactivada => Autenticacion::Desactivada,
            Some(s) if !s.is_empty() => match Verificador::new(s) {
                Some(v) => Autenticacion::Jwt(Arc::new(v)),
                None => Autenticacion::NoConfigurada,
            },
            _ => Autenticacion::NoConfigurada,
        }
    }

    /// Tokens signed with `secreto` (what tests and `main` with a secret use).
    pub fn jwt(secreto: &Secreto) -> Self {
        Self::new(Some(secreto), false)
    }

    /// Who may write, from a request's headers.
    pub fn autenticar(&self, headers: &HeaderMap) -> Result<Autor, ApiError> {
        match self {
            Autenticacion::Desactivada => Ok(Autor(None)),
            Autenticacion::NoConfigurada => Err(ApiError::NoAutenticado {
                rechazo: Rechazo::NoConfigurada,
                detalle: "la autenticación no está configurada (falta JWT_SECRET): el servicio no \
                          acepta escrituras"
                    .into(),
            }),
            Autenticacion::Jwt(v) => {
                let token = bearer(headers)?;
                v.verificar(token).map(|sub| Autor(Some(sub)))
            }
        }
    }
}

impl fmt::Debug for Autenticacion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Autenticacion::Jwt(_) => "Jwt(HS256)",
            Autenticacion::NoConfigurada => "NoConfigurada",
            Autenticacion::Desactivada => "Desactivada",
        })
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case, RFC 7235).
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let falta = || ApiError::NoAutenticado {
        rechazo: Rechazo::SinToken,
        detalle: "esta ruta modifica el inventario: se requiere la cabecera \
                  Authorization: Bearer <token>"
            .into(),
    };
    http_server::bearer_token(headers).ok_or_else(falta)
}

/// The key and the rules a token is checked against.
pub struct Verificador {
    key: DecodingKey,
    validation: Validation,
}

/// The claims the service reads; `exp` is checked by `jsonwebtoken` from the raw claims. `sub`
/// is optional here only so that its absence is reported as such (a missing required claim)
/// rather than as a malformed token.
#[derive(Deserialize)]
struct Leidas {
    sub: Option<String>,
}

impl Verificador {
    fn new(secreto: &Secreto) -> Option<Self> {
        let key = DecodingKey::from_secret(secreto.bytes()).ok()?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Some(Verificador { key, validation })
    }

    /// The token's `sub`, or why the token is refused.
    fn verificar(&self, token: &str) -> Result<String, ApiError> {
        let invalido = |detalle: String| ApiError::NoAutenticado {
            rechazo: Rechazo::TokenInvalido,
            detalle: format!("token no válido: {detalle}"),
        };
        let data = jsonwebtoken::decode::<Leidas>(token, &self.key, &self.validation)
            .map_err(|e| invalido(motivo(e.kind())))?;
        let sub = data.claims.sub.unwrap_or_default();
        if !sub_valido(&sub) {
            return Err(invalido(format!(
                "sub vacío, de más de {MAX_SUB} caracteres o con caracteres de control"
            )));
        }
        Ok(sub)
    }
}

/// A client-facing reason for `jsonwebtoken`'s error, in the API's language.
fn motivo(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "ha caducado (exp)".into(),
        ErrorKind::ImmatureSignature => "aún no es válido (nbf)".into(),
        ErrorKind::InvalidSignature => "la firma no corresponde".into(),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => "algoritmo no admitido: solo HS256".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("falta el claim {c}"),
        ErrorKind::InvalidClaimFormat(c) => format!("el claim {c} tiene un formato no válido"),
        // A header that does not parse includes an unknown `alg` such as `none`.
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => "no es un JWT bien formado con alg HS256".into(),
        _ => "rechazado".into(),
    }
}

/// Proof that a request may change the inventory: the first extractor of every write handler
/// (before the path and the body). Holds the token's `sub`, or `None` when authentication is
/// disabled. Extracting it records `sub` in the request's span, so the request's log lines
/// name who wrote.
#[derive(Debug, Clone)]
pub struct Autor(pub Option<String>);

impl<S> FromRequestParts<S> for Autor
where
    S: Send + Sync,
    Autenticacion: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let autor = Autenticacion::from_ref(state).autenticar(&parts.headers);
        match &autor {
            Ok(Autor(Some(sub))) => {
                tracing::Span::current().record("sub", sub.as_str());
            }
            Ok(Autor(None)) => {}
            Err(e) => tracing::debug!(motivo = %e, "write refused: not authenticated"),
        }
        autor
    }
}
