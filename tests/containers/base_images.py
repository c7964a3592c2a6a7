"""Local stand-ins for the images the Dockerfiles and docker-compose.yml start FROM, built
from Debian's packages with mmdebstrap, for a machine that reaches no container registry:

    make base-images      # python:3.11-slim and redis:7.4-alpine, tagged with those names

The Dockerfiles are not changed for them: each stand-in is tagged with the full name the
engine resolves the short name to (docker.io/library/...), so `podman build` finds it locally
and never pulls. What the images rely on is kept: `python` on PATH (Debian's python3 is 3.11)
with venv, `useradd`; redis-server and redis-cli (Debian bookworm ships Redis 7.0, the
stand-in for 7.4: nothing here uses a 7.2+ command), with /data as the working folder.
An image that already exists is kept (--force rebuilds it).
"""

import argparse
import shutil
import subprocess
import sys
import time

from tests.containers import engine

# Debian's documentation, manuals and locales are never read in a container.
SLIM = ["--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/info/*"]

BASES = {
    "docker.io/library/python:3.11-slim": {
        "include": "python3,python3-venv,ca-certificates",
        "hooks": ['ln -s /usr/bin/python3 "$1/usr/local/bin/python"'],
        "changes": ['CMD ["python3"]', "ENV LANG=C.UTF-8"],
    },
    "docker.io/library/redis:7.4-alpine": {
        "include": "redis-server,redis-tools",
        "hooks": ['mkdir -p "$1/data"', 'chroot "$1" chown redis:redis /data'],
        "changes": ["WORKDIR /data", "USER redis", 'CMD ["redis-server"]', "EXPOSE 6379"],
    },
}


def build(tag: str, spec: dict) -> float:
    started = time.monotonic()
    hooks = [f"--customize-hook={hook}" for hook in spec["hooks"]]
    hooks.append('--customize-hook=rm -rf "$1/var/lib/apt/lists/"* "$1/var/cache/apt/"*')
    rootfs = subprocess.Popen(["mmdebstrap", "--quiet", "--variant=minbase", f"--include={spec['include']}",
                               *SLIM, *hooks, "bookworm", "-"], stdout=subprocess.PIPE)
    changes = [arg for change in spec["changes"] for arg in ("--change", change)]
    name = engine.engine()
    assert name is not None
    subprocess.run([name, "import", "--quiet", *changes, "-", tag], stdin=rootfs.stdout, check=True, env=engine.env(),
                   stdout=subprocess.DEVNULL)
    if rootfs.wait() != 0:
        raise SystemExit(f"mmdebstrap failed for {tag}")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="rebuild images that already exist")
    args = parser.parse_args(argv)
    if engine.engine() is None or not shutil.which("mmdebstrap"):
        print("make base-images needs podman (or docker) and mmdebstrap: apt-get install podman buildah mmdebstrap",
              file=sys.stderr)
        return 1
    for tag, spec in BASES.items():
        if engine.image_exists(tag) and not args.force:
            print(f"{tag}: already here (--force rebuilds it)")
            continue
        print(f"{tag}: building from Debian bookworm (mmdebstrap) ...", flush=True)
        seconds = build(tag, spec)
        print(f"{tag}: built in {seconds:.0f} s, {engine.size_mb(tag):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
