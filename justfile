# Recipes for developers and CI. Run `just` (or .venv/bin/just) to list them.
# CI calls `just ci`, the same recipe developers run.

export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

# List the recipes
default:
    @just --list --unsorted

# Install system packages (apt) and the Python workspace (.venv); idempotent
setup:
    bash scripts/setup

# The main job: generate a demo cluster's configs with talosctl and validate each of them
demo dir="_demo":
    rm -rf {{dir}} && mkdir -p {{dir}}
    talosctl gen secrets -o {{dir}}/secrets.yaml
    talosctl gen config demo https://10.5.0.2:6443 --with-secrets {{dir}}/secrets.yaml --output-dir {{dir}}
    for f in init controlplane join; do talosctl validate --config {{dir}}/$f.yaml --mode container; done
    talos-pki inspect {{dir}}/talosconfig >/dev/null
    @echo "demo: configs in {{dir}}/ (talosconfig, init.yaml, controlplane.yaml, join.yaml)" >&2

# Lint with ruff
lint:
    ruff check .

# Type-check with mypy (strict for libtalos)
type:
    mypy

# Run the whole test suite
test *args:
    pytest {{args}}

# Run only the VM tests (QEMU guests with Debian's kernel)
test-vm *args:
    pytest -m vm {{args}}

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

# Everything CI checks: lint, types, generated docs and code, tests
ci: lint type docs-check proto-check test
