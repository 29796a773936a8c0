# The controller image: `sluice` and `kubectl-sluice`, release builds, on a distroless base
# (glibc, CA certificates, no shell), running as the non-root user 65532 with nothing to write.
# e2e/image builds the same image without a Docker daemon.
#
#   docker build -t sluice .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY demo-app demo-app
COPY benches benches
COPY examples examples
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice --bins \
    && install -D -m 0755 target/release/sluice target/release/kubectl-sluice -t /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice /out/kubectl-sluice /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sluice"]
