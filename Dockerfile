# One image for the three programs (inventario-service, inventario-worker, monitor-service);
# docker-compose.yml picks the command. Plain Dockerfile syntax (no BuildKit-only features), so
# it builds with the legacy builder too.

# Dependencies are built in a layer of their own that depends only on the manifests and the
# lock file, so it stays cached while only our code changes. cargo-chef (pinned, built once in
# the `chef` stage) computes that recipe: `prepare` reduces the workspace to its manifests and
# target list, `cook` builds every dependency from it. Docker keys the COPY of the recipe on its
# contents alone, so editing a .rs file leaves it, and the cook layer, unchanged.
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
ENV PROGRAMS="-p inventario-service -p inventario-worker -p monitor-service"
# The workspace's release profile keeps line tables for profiling on a developer's machine; the
# image strips its binaries, so building that debug information here would be wasted time.
ENV CARGO_PROFILE_RELEASE_DEBUG=0
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json $PROGRAMS

# Our code. COPY keeps the files' own timestamps, which may be older than the cooked stubs of
# our crates: touch them so cargo never takes a stub for our code.
COPY . .
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
 && cargo build --release --locked $PROGRAMS \
 && mkdir -p /out \
 && cp target/release/inventario-service target/release/inventario-worker target/release/monitor-service \
       target/release/availability-check /out/ \
 && strip /out/*

FROM debian:bookworm-slim
# curl: the compose healthchecks call each service's own /health.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin app \
 && mkdir -p /data && chown app:app /data
COPY --from=build /out/ /usr/local/bin/
USER app
WORKDIR /data
ENV RUST_LOG=info
CMD ["inventario-service"]
