# One image for the three programs (inventario-service, inventario-worker, monitor-service);
# docker-compose.yml picks the command. Plain Dockerfile syntax (no BuildKit-only features), so
# it builds with the legacy builder too.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own: only the manifests and stub sources are copied,
# so a change to our code does not rebuild the ~300 crates we depend on.
COPY Cargo.toml Cargo.lock ./
COPY shared/Cargo.toml shared/
COPY inventario-service/Cargo.toml inventario-service/
COPY inventario-worker/Cargo.toml inventario-worker/
COPY monitor-service/Cargo.toml monitor-service/
RUN for crate in shared inventario-service inventario-worker monitor-service; do \
      for target in src/main.rs src/lib.rs $(sed -n 's/^path = "\(src\/.*\.rs\)"$/\1/p' "$crate/Cargo.toml"); do \
        mkdir -p "$crate/$(dirname "$target")" && echo 'fn main() {}' > "$crate/$target"; \
      done; \
    done \
 && cargo build --release --locked --workspace \
 && rm -rf shared/src inventario-service/src inventario-worker/src monitor-service/src

# Our code. COPY keeps the files' own timestamps, which may be older than the stub build:
# touch them so cargo rebuilds our crates.
COPY . .
RUN find shared inventario-service inventario-worker monitor-service -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && cp target/release/inventario-service target/release/inventario-worker target/release/monitor-service /out/ \
 && (cp target/release/availability-check /out/ 2>/dev/null || true)

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
