"""Run the Dockerfile's steps as a script in a fresh venv, where no Docker engine runs.

ARG and ENV become environment variables (ARG defaults can be overridden from the calling
environment, e.g. TORCH_INDEX_URL= to take torch from pip's configured sources), WORKDIR is a
fresh folder, COPY copies from the repository, RUN runs in bash with the venv first on PATH,
the way the image's python and pip would be. CMD is printed, not run.

    python tests/dockerfile_steps.py [--dry-run] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="print the steps without running them")
    parser.add_argument("--keep", type=Path, help="build here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="dockerfile-steps-"))
    env_dir, workdir = root / "venv", root / "image"
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    if not args.dry_run:
        venv.create(env_dir, with_pip=True)
    for word, rest in instructions(REPO / "Dockerfile"):
        if word == "FROM":
            print(f"FROM {rest}: a fresh venv of {sys.executable} at {env_dir}")
        elif word in ("ARG", "ENV"):
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                if word == "ENV" or key not in os.environ:
                    env[key] = value
        elif word == "WORKDIR":
            workdir = root / "image" / rest.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            *sources, target = shlex.split(rest)
            for source in sources:
                # Docker copies a folder's contents to the target, and a file into a target
                # folder ("." or ending in "/") or to the target path.
                into_folder = target in (".", "./") or target.endswith("/")
                dest = workdir / target
                print(f"COPY {source} -> {dest}")
                if not (REPO / source).exists():
                    print(f"dockerfile_steps: COPY {source}: not in the repository", file=sys.stderr)
                    return 2
                if args.dry_run:
                    continue
                if (REPO / source).is_dir():
                    shutil.copytree(
                        REPO / source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    (dest if into_folder else dest.parent).mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / source, dest)
        elif word == "RUN":
            print(f"RUN {rest}", flush=True)
            if not args.dry_run:
                done = subprocess.run(["bash", "-euc", rest], cwd=workdir, env=env)
                if done.returncode:
                    print(f"dockerfile_steps: RUN {rest}: exit code {done.returncode}", file=sys.stderr)
                    return 1
        elif word == "CMD":
            print(f"CMD {rest} (not run)")
        else:
            print(f"dockerfile_steps: {word}: not an instruction this script knows", file=sys.stderr)
            return 2
    print(f"every step ran in {root}" if not args.dry_run else "dry run: nothing ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
