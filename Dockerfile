# A small non-root image of seatkeeper.
#   docker build -t ghcr.io/seatkeeper/seatkeeper:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin seatkeeper

# glibc and libgcc only (TLS is rustls); no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/seatkeeper /usr/local/bin/seatkeeper
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/seatkeeper"]
CMD ["run", "--state", "/var/lib/seatkeeper/tenant.yaml"]
