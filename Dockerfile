# One image for every process kind; the command picks it:
#   docker run IMAGE control-plane | edge --workers 2 | ingest | migrate
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared shared
COPY control_plane control_plane
COPY edge edge
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 scanroute
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER scanroute
ENV CONTROL_PLANE_BIND=0.0.0.0:8000 EDGE_BIND=0.0.0.0:8080 PYTHONUNBUFFERED=1
EXPOSE 8000 8080
ENTRYPOINT ["scanroute"]
CMD ["control-plane"]
