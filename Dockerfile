# One image for the three programs (inventario-service, inventario-worker, monitor-service);
# docker-compose.yml picks the command. Plain Dockerfile syntax (no BuildKit-only features), so
# it builds with the legacy builder too.

# The dependency build depends only on the manifests, the lock file and the list of targets: the
# planner keeps just those (with an empty stub per target), so the build stage's dependency layer
# stays cached while only our code changes. Docker keys the COPY below on file contents alone.
FROM rust:1.95-slim-bookworm AS planner
WORKDIR /src
COPY . .
RUN mkdir -p /skeleton && cp Cargo.toml Cargo.lock /skeleton/ \
 && for manifest in */Cargo.toml; do \
      crate=$(dirname "$manifest"); \
      mkdir -p "/skeleton/$crate" && cp "$manifest" "/skeleton/$crate/"; \
      for target in src/main.rs src/lib.rs $(sed -n 's/^path = "\(\(src\|benches\)\/.*\.rs\)"$/\1/p' "$manifest"); do \
        mkdir -p "/skeleton/$crate/$(dirname "$target")" && echo 'fn main() {}' > "/skeleton/$crate/$target"; \
      done; \
    done

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
ENV PROGRAMS="-p inventario-service -p inventario-worker -p monitor-service"
COPY --from=planner /skeleton/ ./
RUN cargo build --release --locked $PROGRAMS && rm -rf */src

# Our code. COPY keeps the files' own timestamps, which may be older than the stub build:
# touch them so cargo rebuilds our crates.
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
