# Recipes for developers and CI. Run `just` (or .venv/bin/just) to list them.
# CI calls `just ci`, the same recipe developers run.

export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

# List the recipes
default:
    @just --list --unsorted

# Install system packages (apt) and the Python workspace (.venv); idempotent
setup:
    bash scripts/setup

# The main job: a local cluster (1 control plane + 1 worker, etcd bootstrapped), its status and etcd members
demo name="demo":
    talosctl cluster destroy --name {{name}} >/dev/null 2>&1 || true
    mkdir -p _demo
    talosctl cluster create --name {{name}} --talosconfig _demo/talosconfig
    talosctl cluster show --name {{name}}
    talosctl --talosconfig _demo/talosconfig etcd members -n 10.5.0.2
    talosctl --talosconfig _demo/talosconfig health --worker-nodes 10.5.0.3 --wait-timeout 2m
    @echo "demo: cluster {{name}} is running; talosconfig in _demo/; remove it with: talosctl cluster destroy --name {{name}}" >&2

# Generate a cluster's secrets and configs with talosctl into DIR and validate each config
configs dir="_configs":
    rm -rf {{dir}} && mkdir -p {{dir}}
    talosctl gen secrets -o {{dir}}/secrets.yaml
    talosctl gen config demo https://10.5.0.2:6443 --with-secrets {{dir}}/secrets.yaml --output-dir {{dir}}
    for f in init controlplane join; do talosctl validate --config {{dir}}/$f.yaml --mode container; done

# Lint with ruff, and check that every file is formatted as `ruff format` writes it
lint:
    ruff check .
    ruff format --check .

# Format every file with ruff (what `just lint` checks)
fmt:
    ruff format .

# Type-check with mypy (strict for every package)
type:
    mypy

# Run the whole test suite
test *args:
    pytest {{args}}

# Build the OS image's root, kernel and package list into _out/ (downloads Debian's packages)
image:
    talos-image rootfs -o _out --work _build

# The builds the image tests read: `just image`, and a second build from the same .deb cache
# into _build/again/ (the tests compare the two byte for byte). The tests themselves run offline.
image-builds: image
    talos-image rootfs -o _build/again/out --work _build/again/work --cache _build/cache/debs

# Run the image tests: the two builds, then their contents and the ISO and PXE boots under QEMU
test-image *args: image-builds
    pytest -m image tests/image {{args}}

# Run only the VM tests (QEMU guests with Debian's kernel)
test-vm *args:
    pytest -m "vm and not image" {{args}}

# Regenerate the generated docs (config reference)
docs:
    python -m libtalos.docgen docs/reference
    python -m talos_gen.helpdocs

# Fail when the generated docs are stale
docs-check:
    python -m libtalos.docgen --check docs/reference
    python -m talos_gen.helpdocs --check

# Regenerate the machine API code from the .proto files
proto:
    python scripts/gen-proto

# Fail when the generated machine API code is stale
proto-check:
    python scripts/gen-proto --check

# Run the benchmarks (all, or by name: startup gen pki api luks vip init cluster) beside their references
bench *names:
    python bench/run.py {{names}}

# Everything CI checks: lint, types, generated docs and code, the image builds, tests
ci: lint type docs-check proto-check image-builds test
