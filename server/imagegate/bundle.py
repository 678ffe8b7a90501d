"""Packing a checkout into an MCPB bundle (Claude Desktop's one-click install): with the
mcpb CLI when it is installed, else with a small zip writer that follows `mcpb pack`'s
layout and ignore rules. Reads files and writes one zip; nothing else.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MCPB_VERSION", "BundleError", "NoCheckout", "build_bundle"]

MCPB_VERSION = "2.1.2"
"""The mcpb CLI that CI installs (`npm install --prefix .tools @anthropic-ai/mcpb@2.1.2`)."""
MCPB_DEFAULT_EXCLUDES = (
    # mcpb 2.1.2's own list (dist/node/files.js EXCLUDE_PATTERNS), which it applies before .mcpbignore
    ".DS_Store", "Thumbs.db", ".gitignore", ".git", ".mcpbignore", "*.log", ".env*", ".npm", ".npmrc",
    ".yarnrc", ".yarn", ".eslintrc", ".editorconfig", ".prettierrc", ".prettierignore", ".eslintignore",
    ".nycrc", ".babelrc", ".pnp.*", "node_modules/.cache", "node_modules/.bin", "*.map", ".env.local",
    ".env.*.local", "npm-debug.log*", "yarn-debug.log*", "yarn-error.log*", "package-lock.json", "yarn.lock",
    "*.mcpb", "*.d.ts", "*.tsbuildinfo", "tsconfig.json",
)  # fmt: skip


class BundleError(Exception):
    """Raised when a bundle cannot be built; the message says why."""


class NoCheckout(BundleError):
    """Raised when no folder with a manifest.json was found to pack."""


def _checkout(source: str | None) -> Path | None:
    """The project folder to pack: the one holding manifest.json."""
    candidates = [Path(source)] if source else [Path(__file__).resolve().parents[2], Path.cwd()]
    return next((c.resolve() for c in candidates if (c / "manifest.json").is_file()), None)


def _ignore_patterns(root: Path) -> list[str]:
    """mcpb's defaults, then .mcpbignore (blank lines and # comments skipped, as mcpb does)."""
    path = root / ".mcpbignore"
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []
    own = [line for line in lines if line and not line.startswith("#")]
    if any(line.startswith("!") for line in own):
        raise ValueError(".mcpbignore uses a negated pattern (!…): build the bundle with the mcpb CLI")
    return [*MCPB_DEFAULT_EXCLUDES, *own]


def _ignored(rel: str, is_dir: bool, patterns: Sequence[str]) -> bool:
    """The gitignore subset mcpb's patterns use: globs, `/` anchors at the root, a trailing `/` = folders."""
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        body = pattern.rstrip("/")
        if pattern.endswith("/") and not is_dir:
            continue
        if fnmatch.fnmatchcase(rel, body.lstrip("/")) if "/" in body else fnmatch.fnmatchcase(name, body):
            return True
    return False


def _bundle_files(root: Path) -> list[Path]:
    """Every file mcpb would pack: the tree under `root` less the ignored files and folders."""
    patterns = _ignore_patterns(root)
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not _ignored((rel / d).as_posix(), True, patterns))
        kept = [f for f in sorted(files) if not _ignored((rel / f).as_posix(), False, patterns)]
        found += [Path(folder, f) for f in kept]
    return found


def _write_bundle(root: Path, output: Path) -> None:
    """The MCPB layout as `mcpb pack` writes it: a zip with manifest.json at its root, modes kept."""
    files = _bundle_files(root)  # listed before the zip exists, so it never packs itself
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            archive.write(path, path.relative_to(root).as_posix())


def _mcpb_cli(root: Path) -> str | None:
    """The mcpb CLI from the checkout's .tools (where CI installs it), else from PATH."""
    return shutil.which("mcpb", path=str(root / ".tools" / "node_modules" / ".bin")) or shutil.which("mcpb")


def _pack_with_mcpb(mcpb: str, root: Path, output: Path) -> bool:
    command = [mcpb, "pack", str(root), str(output)]
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    print(done.stdout + done.stderr, end="", file=sys.stderr)  # stdout stays for the one result line
    return done.returncode == 0


def build_bundle(source: str | None, output: str | None, builtin: bool = False) -> tuple[Path, int, str]:
    """Build the bundle; returns its path, how many files it holds, and what packed it."""
    root = _checkout(source)
    if root is None:
        raise NoCheckout("no manifest.json; run it in an imagegate checkout or use --source")
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        target = Path(output or f"{manifest['name']}-{manifest['version']}.mcpb").resolve()
        mcpb = None if builtin else _mcpb_cli(root)
        if mcpb is not None and not _pack_with_mcpb(mcpb, root, target):
            raise BundleError("mcpb pack failed")
        if mcpb is None:
            _write_bundle(root, target)
        with zipfile.ZipFile(target) as archive:
            count = len(archive.namelist())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise BundleError(f"cannot build the bundle: {e!r}") from None
    packer = "mcpb" if mcpb else f"imagegate; not validated (mcpb {MCPB_VERSION} in .tools would do that)"
    return target, count, packer
