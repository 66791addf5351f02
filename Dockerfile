# syntax=docker/dockerfile:1
# The registration bot as an image: `docker compose up -d` (compose.yaml) runs two webhook
# replicas of it on PostgreSQL behind Caddy; README "Running several replicas".
#
# python:3.11-slim-bookworm: 3.11 is the Python the test suite and CI run on (the project
# needs >= 3.11); "slim" is Debian without compilers or headers, a fraction of the full
# image, and glibc, so every dependency installs from a manylinux wheel with nothing to
# compile (Alpine's musl would need a compiler for some and gains nothing); "-bookworm" pins
# the Debian release, so a rebuild never changes the system libraries under the same tag.
# For builds that must not change at all, pin the digest too (python:3.11-slim-bookworm@sha256:…).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# pip compiles the bytecode here, once: at run time the code is read-only to the bot's user
# (and PYTHONDONTWRITEBYTECODE), so start-up never compiles aiogram again.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# What `pip install .` reads: the project's metadata and the three packages (README.md is
# the package's long description). tests/ and bench/ are not part of it.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY storage ./storage
# A venv without pip, filled by the image's pip: the runtime dependencies only (no dev
# extras); setuptools lives in pip's throwaway build environment and goes with it. Then the
# installed copy (-I: not ./bot) must find its .po catalogues, or the build fails here.
RUN python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install . \
 && /opt/venv/bin/python -I -c "import bot.domain.texts as t; t.load_catalogues()"

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATABASE_PATH=/data/bot.sqlite3 \
    EVENTS_FILE=/app/events.toml \
    WEBHOOK_LISTEN=0.0.0.0:8080
# No installer left at run time: the base image's pip, setuptools and wheel go too.
# A fixed uid/gid (10001, above any host's login users) so that a bind-mounted folder can be
# given to it with `chown 10001:10001`. /data holds the SQLite default and its WAL: personal
# data, readable by the bot's user only (a new named volume takes this owner and mode).
RUN python -m pip uninstall --yes --quiet --root-user-action=ignore pip setuptools wheel \
 && groupadd --system --gid 10001 bot \
 && useradd --system --uid 10001 --gid bot --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin bot \
 && install --directory --owner=bot --group=bot --mode=0700 /data \
 && install --directory --mode=0755 /app
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /usr/local/lib/registration-bot/healthcheck.py
WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
# Webhook mode's listener (WEBHOOK_LISTEN); the TLS proxy in front of it is what is public.
EXPOSE 8080
# Asks GET /healthz on WEBHOOK_LISTEN: 200 while the database answers. Only webhook mode
# listens; a polling container has no address to ask and would be marked unhealthy, so run
# it with --no-healthcheck (compose: healthcheck: {disable: true}).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/registration-bot/healthcheck.py"]
# SIGTERM: the bot stops taking updates, finishes those in hand (up to HANDLING_LIMIT,
# bot/updates.py: 150 s), gives background jobs and the outbox sender 10 s each and exits 0.
# Give it that long: compose's stop_grace_period, `docker stop --time 200`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "bot"]
