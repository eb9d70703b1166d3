# flow-ci's container image: the GitHub action's runtime (action.yml points at
# the published image, so users' jobs pull it instead of building this file).
#
#   docker build -t flow-ci .                  # build
#   docker run --rm -v "$PWD:/w" -w /w flow-ci check --all --dry-run
#
# Stage 1 compiles a static release binary; stage 2 is a slim Debian with the
# tools flow-ci calls at run time: python3 (python nodes run in python3
# workers) and git (detect, baselines at the merge base).

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Static (glibc crt-static): the binary runs on any x86_64 Linux, and the
# release archive the Azure Pipelines task downloads is this same binary.
ENV RUSTFLAGS="-C target-feature=+crt-static" TARGET=x86_64-unknown-linux-gnu
# Dependencies first, in their own layer: a change to src/ does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --target "$TARGET" \
    && rm -rf src "target/$TARGET/release/deps/flow_ci"* "target/$TARGET/release/flow-ci"*
COPY src ./src
RUN cargo build --release --locked --target "$TARGET" \
    && cp "target/$TARGET/release/flow-ci" /flow-ci

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 git ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man \
    # GitHub mounts the workspace owned by the runner's user, not root: without
    # this git refuses to read it ("dubious ownership").
    && git config --system --add safe.directory '*'
COPY --from=build /flow-ci /usr/local/bin/flow-ci
# Runs as root: container actions must write to the mounted workspace
# (.flow-ci/ reports and runs) and to $GITHUB_OUTPUT / $GITHUB_STEP_SUMMARY,
# which belong to the runner's user.
ENTRYPOINT ["/usr/local/bin/flow-ci"]
CMD ["--help"]
