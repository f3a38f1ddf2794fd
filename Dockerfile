# One image for every aifactory service, the node agent and the operator CLI, built
# from the repository root with uv:
#
#   docker build -t aifactory .
#   docker run --rm aifactory aifactory.inventory          # python -m aifactory.inventory
#   docker run --rm --entrypoint aifactory aifactory nodes # the operator CLI
#
# compose.yaml builds it once and runs each service as its own container.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/aifactory
WORKDIR /src
COPY . .
# Exactly the locked versions; every workspace member (contracts, libs, services),
# installed as regular packages so the runtime image needs no source tree.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --all-packages --no-editable

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/aifactory --create-home aifactory
COPY --from=build /opt/aifactory /opt/aifactory
ENV PATH=/opt/aifactory/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AIFACTORY_VAR_DIR=/var/lib/aifactory \
    AIFACTORY_LOG_FORMAT=json
USER aifactory
WORKDIR /var/lib/aifactory
ENTRYPOINT ["python", "-m"]
CMD ["aifactory.inventory"]
