//! Authentication in the real binary: `inventario-service token` prints a token the server
//! accepts, each write's log line names the token's `sub`, the secret shows up nowhere (log,
//! `--help`), and the start-up says how writes are authenticated: a warning without a secret
//! (writes refused) and with `AUTH_DISABLED=true` (writes open).

mod common;

use std::process::{Command, Output};

use common::servicio;
use inventario_service::auth::Claims;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use testkit::{workspace_binary, RedisServer};

/// `inventario-service ARGS` with only the environment `env`; its output.
fn ejecutar(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(workspace_binary("inventario-service"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run inventario-service")
}

fn texto(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Status and JSON body of one request.
async fn enviar(request: reqwest::RequestBuilder) -> (u16, Value) {
    let r = request.send().await.expect("an answer");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_subcommand_prints_a_token_the_server_accepts_and_writes_log_its_sub() {
    let secreto = format!("secreto-{}", uuid::Uuid::new_v4());
    let sub = "ana@almacen";

    let out = ejecutar(
        &["token", "--sub", sub, "--ttl", "90s"],
        &[("JWT_SECRET", &secreto)],
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = texto(&out.stdout);
    let token = stdout.trim_end_matches('\n');
    assert_eq!(
        stdout.lines().count(),
        1,
        "the token alone on stdout: {stdout:?}"
    );
    assert!(texto(&out.stderr).contains("valid until"), "{out:?}");
    // What it holds, checked by jsonwebtoken with the same rules as the server.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let claims = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secreto.as_bytes()).unwrap(),
        &validation,
    )
    .expect("a valid HS256 token")
    .claims;
    assert_eq!(claims.sub, sub);
    assert_eq!(claims.exp - claims.iat.expect("iat"), 90, "--ttl 90s");
    // `--jwt-secret` after the subcommand works too (the flag is global).
    let out = ejecutar(&["token", "--jwt-secret", &secreto, "--sub", "b"], &[]);
    assert!(out.status.success(), "{out:?}");

    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (servicio, base) = servicio(
        &redis,
        dir.path(),
        &[
            ("JWT_SECRET", secreto.clone()),
            // Everything the service logs, in case anything would carry the secret.
            ("RUST_LOG", "debug".into()),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let producto = json!({"nombre": "Queso manchego 250 g", "cantidad": 4, "precio": 5.9});

    let (status, body) = enviar(http.post(format!("{base}/inventario")).json(&producto)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "no_autenticado");

    let (status, creado) = enviar(
        http.post(format!("{base}/inventario"))
            .bearer_auth(token)
            .json(&producto),
    )
    .await;
    assert_eq!(status, 201, "{creado}\n{}", servicio.log());
    let id = creado["id"].as_i64().unwrap();
    let (status, body) = enviar(
        http.post(format!("{base}/inventario/{id}/movimientos"))
            .bearer_auth(token)
            .json(&json!({"tipo": "entrada", "cantidad": 1})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = enviar(
        http.delete(format!("{base}/inventario/{id}"))
            .bearer_auth(token),
    )
    .await;
    assert_eq!(status, 204);

    // Each write's closing log line names who made it; refused and read lines name no one.
    let ok = testkit::eventually(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(20),
        || async {
            servicio
                .log()
                .lines()
                .filter(|l| {
                    l.contains(&format!("sub=\"{sub}\""))
                        && l.contains("finished processing request")
                })
                .count()
                == 3
        },
    )
    .await;
    let log = servicio.log();
    assert!(ok, "three write lines with sub={sub:?}:\n{log}");
    for linea in log.lines().filter(|l| l.contains("status=401")) {
        assert!(!linea.contains("sub="), "{linea}");
    }
    assert!(
        log.contains("writes need Authorization: Bearer <JWT>"),
        "{log}"
    );

    // The secret appears nowhere: not in the log (RUST_LOG=debug), not in --help with it set.
    // Nor does the token.
    assert!(!log.contains(&secreto), "the log shows the secret:\n{log}");
    assert!(!log.contains(token), "the log shows the token:\n{log}");
    let help = ejecutar(&["--help"], &[("JWT_SECRET", &secreto)]);
    let help = texto(&help.stdout) + &texto(&help.stderr);
    assert!(help.contains("JWT_SECRET"), "{help}");
    assert!(!help.contains(&secreto), "--help shows the secret:\n{help}");
    let help = texto(&ejecutar(&["token", "--help"], &[("JWT_SECRET", &secreto)]).stdout);
    assert!(help.contains("--ttl"), "{help}");
    assert!(
        !help.contains(&secreto),
        "token --help shows the secret:\n{help}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_secret_it_warns_at_start_refuses_writes_and_issues_no_token() {
    let out = ejecutar(&["token", "--sub", "ana"], &[]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(texto(&out.stderr).contains("JWT_SECRET"), "{out:?}");

    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // An empty variable (`JWT_SECRET=` in a compose file) is no secret either.
    let (servicio, base) = servicio(&redis, dir.path(), &[("JWT_SECRET", String::new())]).await;
    let log = servicio.log();
    let aviso = log.lines().find(|l| l.contains("JWT_SECRET is not set"));
    assert!(aviso.is_some_and(|l| l.contains("WARN")), "{log}");

    let http = reqwest::Client::new();
    let (status, body) = enviar(
        http.put(format!("{base}/inventario/1"))
            .bearer_auth(common::token("ana"))
            .json(&json!({"nombre": "x", "cantidad": 1, "precio": 1})),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "autenticacion_no_configurada");
    let (status, body) = enviar(http.get(format!("{base}/inventario/1"))).await;
    assert_eq!(status, 200);
    assert_ne!(body["nombre"], "x");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_disabled_warns_at_start_and_takes_writes_without_a_token() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (servicio, base) = servicio(
        &redis,
        dir.path(),
        &[
            ("AUTH_DISABLED", "true".into()),
            ("JWT_SECRET", "un-secreto-que-no-se-usa".into()),
        ],
    )
    .await;
    let log = servicio.log();
    let aviso = log.lines().find(|l| l.contains("AUTH_DISABLED=true"));
    assert!(
        aviso.is_some_and(|l| l.contains("WARN") && l.contains("jwt_secret_ignored=true")),
        "{log}"
    );
    let (status, body) = enviar(
        reqwest::Client::new()
            .post(format!("{base}/inventario"))
            .json(&json!({"nombre": "Turrón 300 g", "cantidad": 2, "precio": 4.5})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // A value that is not a boolean stops the program rather than guessing.
    let out = ejecutar(&["--help"], &[]);
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("x.db").display());
    let out = ejecutar(
        &[],
        &[
            ("AUTH_DISABLED", "quizás"),
            ("DATABASE_URL", &db),
            ("HTTP_ADDR", "127.0.0.1:0"),
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(texto(&out.stderr).contains("quizás"), "{out:?}");
}
