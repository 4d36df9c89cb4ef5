//! Our system on each of its databases (issue 23, point 5): the same service, worker and monitor
//! on a SQLite file and on PostgreSQL (a private server, never the machine's own), in one run:
//! the full listing under load, stock movements end to end, the monitor's ping round trip (its
//! health task reads the database).
//!
//! The private PostgreSQL runs with `fsync` off (testkit's choice for tests), and SQLite with the
//! store's own settings: so the movements figure compares the two engines' transaction paths,
//! not their disks.

use indicatif::MultiProgress;
use shared::Redis;
use testkit::{free_port, PostgresServer, RedisServer};

use crate::report::{self, Figure};
use crate::stack::{self, Binaries, Stack};
use crate::Args;

pub async fn measure(args: &Args, mp: &MultiProgress) -> anyhow::Result<()> {
    let bins = Binaries::build()?;
    let dir = tempfile::tempdir()?;
    let Some(postgres) = PostgresServer::start_or_skip() else {
        println!("\nsystem-pg: skipped, PostgreSQL's initdb and pg_ctl were not found (PG_BIN)");
        return Ok(());
    };
    let sqlite = format!("sqlite://{}", dir.path().join("inventario.db").display());
    let mut columns = Vec::new();
    for (name, database_url) in [
        ("SQLite", sqlite),
        ("PostgreSQL", postgres.create_database()),
    ] {
        columns.push((
            name.to_owned(),
            one(&bins, database_url, args, mp, name).await?,
        ));
    }
    println!(
        "\nsystem-pg: one service, one worker, one monitor on each database; http={:?} x {} \
         connections, {} movements (PostgreSQL with fsync off)",
        args.http_secs, args.connections, args.movements
    );
    report::print_columns(&columns);
    Ok(())
}

async fn one(
    bins: &Binaries,
    database_url: String,
    args: &Args,
    mp: &MultiProgress,
    what: &str,
) -> anyhow::Result<Vec<Figure>> {
    let server = RedisServer::start_tcp();
    let redis = Redis::from_url(&server.url())?;
    let stack = Stack {
        bins,
        redis_url: server.url(),
        database_url,
        service_env: Vec::new(),
    };
    let port = free_port();
    let addr = ([127, 0, 0, 1], port).into();
    let service = stack.service(port, "inventario-service").await?;
    let worker = stack.worker(&redis).await?;
    let token = stack.token()?;
    let mut f = stack::listing(addr, args, mp, what).await?;
    f.extend(stack::movements(addr, &redis, &token, args, mp, what).await?);
    f.extend(stack.monitor_pings(args, mp, what).await?);
    drop((service, worker, server));
    Ok(f)
}
