#!/usr/bin/env bash
# Build the Docker image with podman (no Docker engine needed), run it on 127.0.0.1, check
# /health and one generation, then remove what this run started. Exits non-zero on any failure.
#
#   sudo bash scripts/docker-test.sh                 # or: make docker-test
#   CHECKPOINT=runs/lstm/best.pt bash scripts/docker-test.sh
#
# The image's base is never pulled: a Debian bookworm minbase with python3, python3-venv and
# ca-certificates is debootstrapped once (cached in $BASE_CACHE) and `podman import`ed under the
# Dockerfile's FROM name. Torch comes from a local wheel (the build's TORCH_FROM=local), the
# other dependencies from PyPI, through the host network and the host's CA bundle.
#
# Environment:
#   CHECKPOINT=PATH   the model to bundle (default checkpoints/default/model.pt)
#   KEEP_IMAGE=1      keep the image (and its build cache) instead of removing it
#   IMAGE=NAME        tag to build (default localhost/textgen:docker-test)
#   BASE_CACHE=DIR    cache of the debootstrapped base and the torch wheel (/var/tmp/textgen-base)
#   TORCH_VERSION=V   torch release for the image (default 2.13.0)
#   TORCH_WHEELS=DIR  a folder holding the torch wheel (default: `pip download` it into the cache)
#   DEBIAN_MIRROR=URL for debootstrap (default http://deb.debian.org/debian)
#   HEALTH_TIMEOUT=S  seconds to wait for /health (default 180)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHECKPOINT=${CHECKPOINT:-checkpoints/default/model.pt}
IMAGE=${IMAGE:-localhost/textgen:docker-test}
BASE_CACHE=${BASE_CACHE:-/var/tmp/textgen-base}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-180}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# What this environment needs to run containers at all: runc (not crun), explicit ulimits.
PODMAN_FLAGS=(--runtime runc)
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=20000:20000)

CONTAINER="textgen-docker-test-$$"
CTX="" WORK="" IMAGES_BEFORE="" STARTED_CONTAINER=0 BUILT=0

log() { printf '==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
die() { printf 'docker-test: FAILED: %s\n' "$*" >&2; exit 1; }
took() { printf '    (%ds)\n' "$((SECONDS - $1))"; }

cleanup() {
    local rc=$?
    set +e
    if [[ $STARTED_CONTAINER == 1 ]]; then
        if [[ $rc != 0 ]]; then
            echo "--- container logs (last 40 lines) ---" >&2
            podman logs --tail 40 "$CONTAINER" >&2
        fi
        podman rm -f -t 5 "$CONTAINER" >/dev/null 2>&1 && echo "removed container $CONTAINER"
    fi
    if [[ $BUILT == 1 && ${KEEP_IMAGE:-0} != 1 ]]; then
        # The image and the layers this build added (the build stage's too); nothing older.
        podman rmi -f "$IMAGE" >/dev/null 2>&1
        local new
        new=$(comm -13 <(echo "$IMAGES_BEFORE") <(podman images -a -q --no-trunc | sort -u))
        # shellcheck disable=SC2086 # one id per word
        [[ -z $new ]] || podman rmi -f $new >/dev/null 2>&1
        echo "removed image $IMAGE and the build layers this run added"
    fi
    [[ -n $CTX ]] && rm -rf "$CTX"
    [[ -n $WORK ]] && rm -rf "$WORK"
    if [[ $rc == 0 ]]; then echo "docker-test: PASSED"; else echo "docker-test: FAILED" >&2; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_tools() {
    [[ $(id -u) == 0 ]] || die "run as root (podman build with runc and host networking)"
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    ok "$(podman --version), $(runc --version | head -n1)"
}

# The base image: the Dockerfile's first FROM, imported from a cached debootstrap unless an
# image of that name is already there.
base_image() {
    local name tar t0
    name=$(awk 'toupper($1) == "FROM" { print $2; exit }' "$ROOT/Dockerfile")
    [[ -n $name ]] || die "no FROM line in Dockerfile"
    if podman image exists "$name"; then
        ok "base image $name present ($(podman image inspect -f '{{index .Labels "textgen.base"}}' "$name" 2>/dev/null || true))"
        return
    fi
    tar="$BASE_CACHE/bookworm-minbase-python3.tar"
    if [[ ! -s $tar ]]; then
        log "debootstrapping Debian bookworm minbase + python3 into $BASE_CACHE (once)"
        t0=$SECONDS
        mkdir -p "$BASE_CACHE"
        local rootfs="$BASE_CACHE/rootfs.tmp"
        rm -rf "$rootfs"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$rootfs" "$DEBIAN_MIRROR" >"$BASE_CACHE/debootstrap.log" 2>&1 \
            || die "debootstrap failed, see $BASE_CACHE/debootstrap.log"
        # Trimmed like the official slim images: no package lists, archives or docs.
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
            "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
        tar -C "$rootfs" --numeric-owner -cf "$tar.tmp" .
        mv "$tar.tmp" "$tar"
        rm -rf "$rootfs"
        took "$t0"
    fi
    log "importing $tar as $name"
    t0=$SECONDS
    podman import -q --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        --change 'LABEL textgen.base="debootstrap bookworm minbase + python3"' \
        "$tar" "docker.io/library/$name" >/dev/null
    took "$t0"
}

# The torch wheel for the image (cp311, manylinux x86_64), fetched once by the host's pip.
torch_wheels() {
    local dir=${TORCH_WHEELS:-$BASE_CACHE/wheels}
    if ! compgen -G "$dir/torch-$TORCH_VERSION*.whl" >/dev/null; then
        [[ -z ${TORCH_WHEELS:-} ]] || die "no torch-$TORCH_VERSION*.whl in $TORCH_WHEELS"
        log "downloading the torch $TORCH_VERSION wheel into $dir (once)"
        local pip=(python3 -m pip)
        [[ -x $ROOT/.venv/bin/pip ]] && pip=("$ROOT/.venv/bin/pip")
        "${pip[@]}" download -q --no-deps --only-binary=:all: --python-version 3.11 \
            --implementation cp --platform manylinux_2_28_x86_64 \
            -d "$dir" "torch==$TORCH_VERSION" 2>"$WORK/pip.log" \
            || { cat "$WORK/pip.log" >&2; die "could not download the torch wheel"; }
    fi
    WHEELS_DIR=$dir
    local found=("$dir"/torch-"$TORCH_VERSION"*.whl)
    ok "torch wheel: ${found[0]##*/}"
}

# A build context like the repository's: the files git knows (tracked or not ignored), plus
# wheels/ and the checkpoint to bundle at checkpoints/default/model.pt.
stage_context() {
    CTX=$(mktemp -d /var/tmp/textgen-ctx.XXXXXX)
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard) \
        | (cd "$ROOT" && while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done) \
        | tar -C "$ROOT" --null -T - -cf - | tar -C "$CTX" -xf -
    mkdir -p "$CTX/wheels" "$CTX/checkpoints/default"
    cp "$WHEELS_DIR"/torch-"$TORCH_VERSION"*.whl "$CTX/wheels/"
    cp "$CKPT_PATH" "$CTX/checkpoints/default/model.pt"
    ok "build context $CTX: $(du -sh "$CTX" | cut -f1)"
}

build() {
    local t0=$SECONDS
    # pip inside the build trusts the host's CA bundle (a TLS-inspecting egress proxy may sit
    # in front of PyPI); both are mounted for the build only, never stored in the image.
    printf '[global]\ncert = %s\ntimeout = 180\n' "$CA_BUNDLE" >"$WORK/pip.conf"
    IMAGES_BEFORE=$(podman images -a -q --no-trunc | sort -u)
    BUILT=1
    log "building $IMAGE (podman build, TORCH_FROM=local)"
    podman build "${PODMAN_FLAGS[@]}" --pull=never --format docker "${LIMITS[@]}" --network=host \
        -v "$CA_BUNDLE:$CA_BUNDLE:ro" -v "$WORK/pip.conf:/etc/pip.conf:ro" \
        --build-arg TORCH_FROM=local --build-arg TORCH_VERSION="$TORCH_VERSION" \
        -t "$IMAGE" -f "$CTX/Dockerfile" "$CTX" >"$WORK/build.log" 2>&1 \
        || { tail -n 40 "$WORK/build.log" >&2; die "podman build failed"; }
    grep -E '^torch ' "$WORK/build.log" | sed 's/^/    /' || echo "    (dependency layers from the build cache)"
    took "$t0"
    local size
    size=$(podman image inspect -f '{{.Size}}' "$IMAGE")
    ok "image $IMAGE: $((size / 1000000)) MB"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run_container() {
    PORT=$(free_port)
    log "starting $CONTAINER on 127.0.0.1:$PORT"
    local t0=$SECONDS
    # Host networking (as for the build), bound to loopback through the image's own variables.
    # Without systemd, podman logs errors about healthcheck timers: kept out of the way.
    podman run "${PODMAN_FLAGS[@]}" -d --name "$CONTAINER" --network=host "${LIMITS[@]}" \
        -e TEXTGEN_HOST=127.0.0.1 -e TEXTGEN_PORT="$PORT" -e TEXTGEN_THREADS=1 \
        "$IMAGE" >/dev/null 2>"$WORK/run.log" || { cat "$WORK/run.log" >&2; die "podman run failed"; }
    STARTED_CONTAINER=1
    local deadline=$((SECONDS + HEALTH_TIMEOUT))
    until curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null; do
        [[ $(podman inspect -f '{{.State.Running}}' "$CONTAINER") == true ]] \
            || die "container exited (status $(podman inspect -f '{{.State.ExitCode}}' "$CONTAINER"))"
        ((SECONDS < deadline)) || die "/health not 200 after ${HEALTH_TIMEOUT}s"
        sleep 1
    done
    ok "GET /health -> 200 after $((SECONDS - t0))s: $(curl -fsS "http://127.0.0.1:$PORT/health")"
    local ready
    ready=$(curl -fsS "http://127.0.0.1:$PORT/ready") || die "/ready not 200 once /health is"
    ok "GET /ready -> 200: $ready"
}

check_service() {
    local base="http://127.0.0.1:$PORT" body user
    body=$(curl -fsS -H 'Content-Type: application/json' \
        -d '{"prompt": "中国", "max_new_tokens": 20, "seed": 1}' "$base/v1/generate") \
        || die "POST /v1/generate failed"
    python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert isinstance(r.get("text"), str) and r["text"], f"no text in {r}"
print("    ok: POST /v1/generate {\"prompt\": \"中国\", \"max_new_tokens\": 20} -> text", json.dumps(r["text"], ensure_ascii=False))
' "$body" || die "bad /v1/generate response: $body"
    local page
    page=$(curl -fsS "$base/") || die "GET / (playground) failed"
    if grep -q "Playground not installed" <<<"$page"; then
        die "GET / -> 200 but the playground page is not in the installed package"
    fi
    ok "GET / (playground) -> 200"
    user=$(podman exec "$CONTAINER" id -u)
    [[ $user != 0 ]] || die "the server runs as root"
    ok "server runs as uid $user"
    podman healthcheck run "$CONTAINER" >/dev/null || die "the image's HEALTHCHECK failed"
    ok "HEALTHCHECK passes"
}

# SIGTERM (docker stop) must reach the server as PID 1 and end it cleanly, well before the kill.
check_stop() {
    local t0=$SECONDS code
    podman stop -t 30 "$CONTAINER" >/dev/null 2>>"$WORK/run.log" || die "podman stop failed"
    code=$(podman inspect -f '{{.State.ExitCode}}' "$CONTAINER")
    [[ $code == 0 ]] || die "the server exited with status $code on SIGTERM"
    ok "stopped by SIGTERM in $((SECONDS - t0))s, exit status 0"
}

main() {
    local t_all=$SECONDS
    cd "$ROOT"
    CKPT_PATH=$(realpath -e "$CHECKPOINT" 2>/dev/null) \
        || die "checkpoint $CHECKPOINT not found (set CHECKPOINT=path/to/model.pt)"
    [[ -f $CKPT_PATH ]] || die "CHECKPOINT must be a file, got $CHECKPOINT"
    WORK=$(mktemp -d /var/tmp/textgen-work.XXXXXX)
    log "checkpoint $CKPT_PATH"
    need_tools
    base_image
    torch_wheels
    stage_context
    build
    run_container
    check_service
    check_stop
    printf '    all checks passed in %ds\n' "$((SECONDS - t_all))"
}

main "$@"
