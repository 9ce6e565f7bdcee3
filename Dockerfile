# surveyd container image: `docker build -t surveyd .`
# Commands: serve (default), worker, migrate, company ... (see docker-compose.yml).

# ---- Build ------------------------------------------------------------------
# Same Swift line as the development toolchain; override with
# --build-arg SWIFT_IMAGE=swift:6.2-bookworm if needed.
ARG SWIFT_IMAGE=swift:6.3-bookworm
FROM ${SWIFT_IMAGE} AS build

# libpq for the CLibPQ system-library target, found through pkg-config.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpq-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Dependencies first, so that editing Sources/ does not refetch them.
# (Package.resolved is optional: copied when present.)
COPY Package.swift Package.resolved* ./
RUN swift package resolve

COPY . .
# The static Swift stdlib: the runtime image then needs no Swift runtime.
RUN swift build -c release --product surveyd --static-swift-stdlib \
 && mkdir -p /out \
 && cp "$(swift build -c release --show-bin-path)/surveyd" /out/ \
 && cp /usr/libexec/swift/linux/swift-backtrace-static /out/

# ---- Runtime ----------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpq5 ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin surveyd

COPY --from=build /out/surveyd /usr/local/bin/surveyd
COPY --from=build /out/swift-backtrace-static /usr/local/libexec/surveyd/swift-backtrace-static
# Migration files, read by `surveyd migrate`.
COPY sql/ /usr/local/share/surveyd/sql/
# The API's contract, served at /openapi.yaml and /openapi.json.
COPY openapi.yaml /usr/local/share/surveyd/openapi.yaml
# The dashboard's templates and assets, served at /dashboard.
COPY dashboard/ /usr/local/share/surveyd/dashboard/

ENV SURVEYD_SQL_DIR=/usr/local/share/surveyd/sql \
    SURVEYD_DASHBOARD_DIR=/usr/local/share/surveyd/dashboard \
    PORT=8080 \
    HOST=0.0.0.0 \
    SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=all,interactive=no,swift-backtrace=/usr/local/libexec/surveyd/swift-backtrace-static

USER surveyd:surveyd
EXPOSE 8080
ENTRYPOINT ["surveyd"]
CMD ["serve"]
