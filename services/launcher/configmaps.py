"""The Kubernetes ConfigMaps that carry the counties' reference data, generated from
``deploy/config``: ``deploy/k8s/config.configmap.yaml`` (``whistle-config``, the top-level
files: the default county), ``deploy/k8s/triage.configmap.yaml`` (``whistle-triage``, the
triage corpus) and ``deploy/k8s/config-<code>.configmap.yaml`` (``whistle-config-<code>``) for
each other county's directory (docs/scale.md, "Tenancy"): a ConfigMap holds no subdirectory, so
each is mounted at ``<config>/<code>/`` in every service.

They hold the same as ``kubectl create configmap NAME --from-file=DIR --dry-run=client -o
yaml``; generating them here means a changed catalogue cannot reach a cluster with a stale
copy unnoticed. ``python -m services.launcher.configmaps`` writes both (``make contracts``
does); ``--check`` writes nothing and exits 1 if a checked-in file differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from reference.county import county_directories

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "config"
K8S = REPO / "deploy" / "k8s"
# (ConfigMap name, the directory whose files it carries, the manifest it is written to)
CONFIGMAPS = (
    ("whistle-config", CONFIG, K8S / "config.configmap.yaml"),
    ("whistle-triage", CONFIG / "triage", K8S / "triage.configmap.yaml"),
    *(
        (f"whistle-config-{county.name}", county, K8S / f"config-{county.name}.configmap.yaml")
        for county in county_directories(CONFIG)
    ),
)


class _Literal(str):
    """A multi-line value, written as a YAML block (``|``) as kubectl writes it."""


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def files_of(directory: Path) -> dict[str, str]:
    """The regular files directly in ``directory`` by name, as a ConfigMap's data."""
    return {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted(directory.iterdir())
        if path.is_file()
    }


def render(name: str, directory: Path) -> str:
    data = {key: _Literal(text) for key, text in files_of(directory).items()}
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "data": data,
        "kind": "ConfigMap",
        "metadata": {"creationTimestamp": None, "name": name},
    }
    return yaml.dump(manifest, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=10_000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for name, directory, target in CONFIGMAPS:
        text = render(name, directory)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append((target, text))
    if args.check:
        for target, _ in stale:
            print(f"{target.relative_to(REPO)} is out of date: run make contracts", file=sys.stderr)
        return 1 if stale else 0
    for target, text in stale:
        target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
