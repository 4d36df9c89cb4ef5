//! Tokens for the service's writes and HTTP clients that carry them, as the system's users
//! have them: the token comes from the service's own `token` subcommand, so the tests sign
//! exactly what an operator's token would be.

use std::process::Command;

use crate::process::workspace_binary;

/// A bearer token for `sub`, signed with `jwt_secret` by `inventario-service token`, valid for
/// `ttl` (`1h`, `90s`, ...).
pub fn service_token(jwt_secret: &str, sub: &str, ttl: &str) -> String {
    let out = Command::new(workspace_binary("inventario-service"))
        .args(["token", "--sub", sub, "--ttl", ttl])
        .env_clear()
        .env("JWT_SECRET", jwt_secret)
        .output()
        .expect("inventario-service token");
    assert!(out.status.success(), "inventario-service token: {out:?}");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// A client builder whose every request carries `Authorization: Bearer <token>` (reads
/// ignore it) and bypasses any proxy; the caller adds its timeouts.
pub fn bearer_client(token: &str) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("a token is a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
}
