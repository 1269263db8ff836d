# One image per service: docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=order-service .
FROM rust:1.95-bookworm AS build
ARG SERVICE
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p "${SERVICE}" && cp "target/release/${SERVICE}" /service

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /service /usr/local/bin/service
ENV APP_HTTP__HOST=0.0.0.0
USER nobody
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS "http://127.0.0.1:${APP_HTTP__PORT}/readyz" || exit 1
ENTRYPOINT ["/usr/local/bin/service"]
