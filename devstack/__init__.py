"""The local stack as a developer runs it: `make run`'s supervisor (`python -m devstack.stack`),
and the process handles the tests and the benchmarks start Redis, the workers, the API and
Flower with (devstack.processes). The command lines are in devstack.commands, one place for
all three, so they cannot drift.

Not part of the installed package and in neither image: it is found from the repository root,
where make, pytest and the benchmarks run (`python -m` puts the working directory on sys.path).
"""
