# The controller image: a static binary and nothing else.
#
#   docker build -t appattach-operator:0.1.0 .
#
# The build stage runs .ci/build-static, the same script CI runs on every commit (CI has no
# container engine, so the script is what is tested, and this file only calls it).
FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN bash .ci/build-static /out/appattach

# No shell, no libc, no CA bundle: Azure's certificates are checked against the Mozilla
# roots built into the binary (webpki-roots), the API server's against the service
# account's ca.crt.
FROM scratch
COPY --from=build /out/appattach /appattach
# The non-root user deploy/base/deployment.yaml runs as.
USER 65532:65532
ENTRYPOINT ["/appattach"]
CMD ["controller"]
