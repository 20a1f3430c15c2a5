"""The control plane's static pods, their certificates and kubeconfigs, written to disk.

Run only in the issuer child (:mod:`talos_init.api.issuer`, request ``render``): it loads
``cryptography``, which PID 1 never does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from libtalos.errors import TalosError


def render_control_plane_files(cfg: Any, hostname: str, ips: list[str], system: Path) -> str:
    """Static pods, their certificates and kubeconfigs under ``system``; the console message."""
    from libtalos.fsutil import atomic_write
    from libtalos.k8s import ControlPlaneInput, render_control_plane

    try:
        secrets_dir = system / "secrets" / "kubernetes"
        assets = render_control_plane(
            cfg, ControlPlaneInput(hostname=hostname, ips=ips, secrets_dir=str(secrets_dir))
        )
        manifests = system / "kubernetes" / "manifests"
        manifests.mkdir(mode=0o755, parents=True, exist_ok=True)
        for rel, (data, mode) in assets.secrets.items():
            target = secrets_dir / rel
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(target, data, mode=mode)
        for name, text in assets.manifests.items():
            atomic_write(manifests / name, text, mode=0o600)
    except TalosError as exc:
        return f"control plane: static pods not rendered: {exc.message}"
    except OSError as exc:
        return f"control plane: static pods not rendered: {exc.strerror}"
    names = ", ".join(sorted(assets.manifests))
    return f"control plane: static pod manifests in {manifests}: {names}"
