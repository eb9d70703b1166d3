# flow-ci's container image: the GitHub action's runtime (a release commit's
# action.yml names the published image by digest, so `uses: …@v1` pulls it;
# only `uses: …@main` builds this file in the user's job).
#
#   docker build -t flow-ci .                  # build
#   docker run --rm -v "$PWD:/w" -w /w flow-ci check --all --dry-run
#
# Stage 1 compiles a static release binary; stage 2 takes uv out of its PyPI
# wheel; stage 3 is a slim Debian with the tools flow-ci calls at run time:
# python3 (python nodes run in python3 workers), uv (a flow's
# requirements.txt is installed into its own environment) and git (detect,
# baselines at the merge base).

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Static (glibc crt-static): the binary runs on any x86_64 Linux, and the
# release archive the Azure Pipelines task downloads is this same binary.
ENV RUSTFLAGS="-C target-feature=+crt-static" TARGET=x86_64-unknown-linux-gnu
# Dependencies first, in their own layer: a change to src/ or crates/ does not
# rebuild them.
# The dummy crate's own artifacts are cleaned afterwards: COPY keeps the real
# sources' older mtimes, so cargo would otherwise take the empty lib as fresh.
# The workspace's crates get empty stand-ins the same way.
COPY Cargo.toml Cargo.lock ./
COPY crates/model/Cargo.toml crates/model/
COPY crates/net/Cargo.toml crates/net/
COPY crates/exec/Cargo.toml crates/exec/
COPY crates/backend/Cargo.toml crates/backend/
COPY benches ./benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for c in model net exec backend; do mkdir -p "crates/$c/src" && touch "crates/$c/src/lib.rs"; done \
    && cargo build --release --locked --target "$TARGET" \
    && cargo clean --release --target "$TARGET" -p flow-ci -p flow-ci-model -p flow-ci-net -p flow-ci-exec -p flow-ci-backend \
    && rm -rf src crates
COPY crates ./crates
COPY src ./src
RUN cargo build --release --locked --target "$TARGET" \
    && cp "target/$TARGET/release/flow-ci" /flow-ci

# uv builds the flows' environments: seconds where venv + pip take tens, and
# Debian's python3 has no venv module (python3-venv) or pip. Its wheel is one
# static binary; pinned, so an image rebuild does not change the installer.
FROM python:3.12-slim-bookworm AS uv
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore uv==0.13.9 \
    && /usr/local/bin/uv --version

FROM debian:bookworm-slim AS runtime
# Two trims that lose nothing flow-ci runs (image 222 MB -> 157 MB):
# - git Depends on perl (and liberror-perl) only for two scripts flow-ci never
#   runs (the old `git add -i` and `git instaweb`). An empty package that
#   Provides both satisfies apt, which stays consistent for images built FROM
#   this one, and leaves out ~47 MB of perl.
# - dpkg path-excludes (the mechanism the slim base uses for docs) leave out
#   git's server and mail programs; flow-ci runs git locally and fetches over
#   https, which stay.
RUN set -eu \
    && mkdir -p /tmp/no-perl/DEBIAN \
    && printf '%s\n' 'Package: flow-ci-no-perl' 'Version: 1.0' 'Architecture: all' \
        'Maintainer: flow-ci' 'Provides: perl, liberror-perl' \
        'Description: stands in for perl, which git depends on and flow-ci never runs' \
        > /tmp/no-perl/DEBIAN/control \
    && dpkg-deb --build /tmp/no-perl /tmp/no-perl.deb >/dev/null \
    && dpkg -i /tmp/no-perl.deb && rm -rf /tmp/no-perl /tmp/no-perl.deb \
    && printf 'path-exclude %s\n' /usr/bin/scalar /usr/bin/git-shell '/usr/share/gitweb/*' \
        /usr/lib/git-core/scalar /usr/lib/git-core/git-shell /usr/lib/git-core/git-daemon \
        /usr/lib/git-core/git-http-backend /usr/lib/git-core/git-http-push \
        /usr/lib/git-core/git-imap-send /usr/lib/git-core/git-instaweb \
        /usr/lib/git-core/git-add--interactive \
        > /etc/dpkg/dpkg.cfg.d/flow-ci-git \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 git ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log \
    # GitHub mounts the workspace owned by the runner's user, not root: without
    # this git refuses to read it ("dubious ownership").
    && git config --system --add safe.directory '*'
COPY --from=uv /usr/local/bin/uv /usr/local/bin/uv
COPY --from=build /flow-ci /usr/local/bin/flow-ci
# Runs as root: container actions must write to the mounted workspace
# (.flow-ci/ reports and runs) and to $GITHUB_OUTPUT / $GITHUB_STEP_SUMMARY,
# which belong to the runner's user.
ENTRYPOINT ["/usr/local/bin/flow-ci"]
CMD ["--help"]
