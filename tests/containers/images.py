"""Build the service's images from the real Dockerfiles (`make images`):

    queue-inference/api:0.1.0          Dockerfile.api
    queue-inference/worker:0.1.0-cpu   Dockerfile.worker --build-arg VARIANT=cpu

with podman (else docker). The host's CA bundle goes in as the build secret `ca-bundle`, so
pip inside the build works behind an intercepting HTTPS proxy; it is never written to a layer.
`--format docker` keeps the HEALTHCHECK (podman's default OCI format drops it). Where no
registry is reachable, run `make base-images` first (stand-ins for the FROM images).
"""

import argparse
import sys
import time

from tests.containers import engine

TARGETS = {
    "api": (engine.API_IMAGE, "Dockerfile.api", []),
    "worker": (engine.WORKER_IMAGE, "Dockerfile.worker", ["--build-arg", "VARIANT=cpu"]),
}


def build_args(dockerfile: str, tag: str, extra: list[str]) -> list[str]:
    args = ["build", "-f", dockerfile, "-t", tag, *extra]
    if engine.engine() == "podman":
        args += ["--format", "docker", "--layers"]
    bundle = engine.ca_bundle()
    if bundle:
        args += ["--secret", f"id=ca-bundle,src={bundle}"]
    return [*args, "."]


def build(target: str, quiet: bool = False) -> tuple[float, float]:
    """Build one image; (seconds, size in MB)."""
    tag, dockerfile, extra = TARGETS[target]
    started = time.monotonic()
    argv = build_args(dockerfile, tag, extra)
    if quiet:
        result = engine.run(*argv, check=False, capture=True)
        if result.returncode != 0:
            raise RuntimeError(f"building {tag} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    else:
        engine.run(*argv)
    return time.monotonic() - started, engine.size_mb(tag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="api, worker (default: both)")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown image {', '.join(sorted(unknown))}: choose from {', '.join(TARGETS)}")
    if engine.engine() is None:
        print("make images needs podman or docker (apt-get install podman buildah)", file=sys.stderr)
        return 1
    built = []
    for target in args.targets or list(TARGETS):
        print(f"building {TARGETS[target][0]} from {TARGETS[target][1]} ...", flush=True)
        seconds, size = build(target)
        built.append((TARGETS[target][0], seconds, size))
    print()
    for tag, seconds, size in built:
        print(f"{tag:36} {size:8.0f} MB   built in {seconds:5.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
