#!/usr/bin/env bash
# Checks the deployment files as far as this machine allows, without network access
# beyond the package registries:
# - Kubernetes manifests (deploy/k8s) against the Kubernetes schemas, with
#   kubernetes-validate from PyPI (it ships the schemas; nothing is fetched at run time),
#   in a virtualenv under target/; a broken manifest must be refused too;
# - the example configs (ConfigMap, systemd) against treecast's own flags;
# - deploy/compose.yaml parsed and its references resolved (docker compose config too,
#   where docker compose is installed);
# - the systemd unit with `systemd-analyze verify`;
# - the Dockerfiles' structure (multi-stage, non-root, data volume, exec-form entrypoint).
# Images are built only with DEPLOY_BUILD_IMAGES=1 and a running Docker daemon (that
# needs the base images from a container registry).
#
#   deploy/validate.sh [path/to/treecast]   # default: target/debug/treecast
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/debug/treecast}"
[ -x "$BIN" ] || { echo "error: $BIN not found: cargo build first" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "-- Kubernetes manifests"
venv=target/deploy-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
"$venv/bin/kubernetes-validate" --strict --quiet deploy/k8s/*.yaml
# The validator must catch a mistake: an unknown field and a wrong type.
sed -e 's/terminationGracePeriodSeconds: 30/terminationGracePeriodSecond: 30/' \
    -e 's/replicas: 3/replicas: three/' deploy/k8s/relay-deployment.yaml >"$tmp/broken.yaml"
if "$venv/bin/kubernetes-validate" --strict --quiet "$tmp/broken.yaml" >/dev/null 2>&1; then
    echo "error: kubernetes-validate accepted a broken Deployment" >&2
    exit 1
fi
echo "deploy/k8s: $(ls deploy/k8s/*.yaml | wc -l) files valid against the Kubernetes schemas"

echo "-- example configs against treecast's flags"
"$venv/bin/python" - "$tmp/configmap.toml" <<'PY'
import sys, yaml
cm = yaml.safe_load(open("deploy/k8s/relay-config.yaml"))
open(sys.argv[1], "w").write(cm["data"]["treecast.toml"])
PY
for cfg in "$tmp/configmap.toml" deploy/systemd/treecast.toml; do
    "$BIN" config --print relay --config "$cfg" >/dev/null
    echo "$cfg: valid treecast configuration"
done

echo "-- compose file"
"$venv/bin/python" deploy/check_compose.py deploy/compose.yaml
if docker compose version >/dev/null 2>&1; then
    docker compose -f deploy/compose.yaml config --quiet
    echo "docker compose config: ok"
fi

echo "-- Dockerfiles"
"$venv/bin/python" deploy/check_dockerfiles.py deploy/docker/*.Dockerfile
if [ -n "${DEPLOY_BUILD_IMAGES:-}" ] && docker info >/dev/null 2>&1; then
    docker build -f deploy/docker/relay.Dockerfile -t treecast-relay:dev .
    docker build -f deploy/docker/media.Dockerfile -t treecast:dev .
    docker run --rm treecast-relay:dev --version
fi

echo "-- systemd unit"
# verify checks that ExecStart's binary exists: point it at the one just built.
sed "s#/usr/local/bin/treecast#$(realpath "$BIN")#" deploy/systemd/treecast-relay.service \
    >"$tmp/treecast-relay.service"
systemd-analyze verify --man=no "$tmp/treecast-relay.service"
echo "deploy/systemd/treecast-relay.service: systemd-analyze verify ok"
