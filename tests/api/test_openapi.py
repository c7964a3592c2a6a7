"""The OpenAPI document tells the truth (issue #9, item 20): every status and error body an
operation can answer is documented, and every constraint the server enforces is in the
schema. Schemathesis runs all its checks against the live API from /openapi.json, in all
its phases (coverage: boundary and invalid values of every field; fuzzing; stateful: job
ids from POST /jobs fed to the other operations), and any finding fails the test.

A worker runs the jobs, so long-polls (`wait`, `Prefer: wait`) and /predict answer at once
rather than at their time-outs. `make openapi-check` runs the same with thousands of cases
(OPENAPI_CHECK_EXAMPLES, OPENAPI_CHECK_SEED)."""

import os
import subprocess
import sys
from pathlib import Path

from schemathesis.core.warnings import SchemathesisWarning

from devstack.commands import ROOT

EXAMPLES = int(os.environ.get("OPENAPI_CHECK_EXAMPLES", "20"))  # per operation, in the fuzzing phase
SEED = os.environ.get("OPENAPI_CHECK_SEED", "20")
# Left out, each with its reason. Nothing else is: no operation, no phase, no other check.
EXCLUDED_CHECKS = {
    "use_after_free": "DELETE /jobs/{id} cancels a queued job, it does not remove it: the record (status "
                      "`cancelled`) stays readable until JOB_TTL_SECONDS, as the README says, so a GET after "
                      "the DELETE rightly answers 200",
}
WARNINGS = sorted(warning.value for warning in SchemathesisWarning)
NOT_FAILING_WARNINGS = {
    "missing_test_data": "fuzzing draws random job ids for /jobs/{id}, which rightly answer 404; the stateful "
                         "phase reaches real jobs by the document's links from POST /jobs",
    "missing_auth": "the coverage phase's requests without the key rightly answer 401 (the ignored_auth and "
                    "missing_required_header checks, which do fail the run, test that); with random job ids "
                    "answering 404 besides, a busy run sometimes saw only those 401s for DELETE /jobs/{id} and "
                    "warned that authentication might be failing, which it is not; and the admin-only routes "
                    "(POST /models/reload, /models/{name}/default, training) rightly answer the run's ordinary "
                    "key with 403 (tests/api/test_model_versions.py and test_training.py drive them as admin)",
}
PROBLEM_JSON = "application/problem+json"


def run_schemathesis(url: str, workdir: Path, key: str) -> subprocess.CompletedProcess[str]:
    """The CLI, as `make openapi-check` runs it; its caches and reports go to `workdir`.
    Its warnings fail the run too (all of them shown, the opt-in low valid rate included)."""
    config = workdir / "schemathesis.toml"
    fail_on = [warning for warning in WARNINGS if warning not in NOT_FAILING_WARNINGS]
    # The API key as the document's bearer scheme: Schemathesis then also checks that every
    # operation refuses a request without it (ignored_auth, missing_required_header).
    config.write_text(f"[warnings]\ndisplay = {WARNINGS}\nfail-on = {fail_on}\n"
                      f'[auth.openapi.HTTPBearer]\nbearer = "{key}"\n')
    argv = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{url}/openapi.json",
            "--checks", "all", "--exclude-checks", ",".join(EXCLUDED_CHECKS),
            "--max-examples", str(EXAMPLES), "--seed", SEED,
            # One worker thread: CPython 3.11's ast.parse is not thread-safe ("AST constructor
            # recursion depth mismatch", fixed in 3.12), and Hypothesis parses lambdas with it.
            "--workers", "1", "--request-timeout", "30",
            "--generation-database", "none", "--no-color", "--report-dir", str(workdir / "report")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.utils.schemathesis_hooks"}
    return subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)


def test_schemathesis_finds_nothing(api, worker, tmp_path):
    run = run_schemathesis(api.url, tmp_path, api.key)
    print(run.stdout, run.stderr)  # the findings, each with a curl command to reproduce it
    # Non-zero on any failure, error or warning that fails the run.
    assert run.returncode == 0, f"Schemathesis found something:\n{run.stdout[-30000:]}\n{run.stderr[-5000:]}"


def test_error_answers_are_problems_and_fastapi_validation_errors_are_gone(api):
    document = api.http.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(document)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"413", "500"} <= set(responses), (method, path)
            for status, response in responses.items():
                if int(status) >= 400:
                    schema = response["content"][PROBLEM_JSON]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
                if int(status) == 503:
                    assert "Retry-After" in response["headers"], (method, path)


def test_forms_take_only_their_fields_and_files_are_images(api):
    document = api.http.get("/openapi.json").json()
    forms = [operation["requestBody"]["content"]["multipart/form-data"]
             for operations in document["paths"].values() for operation in operations.values()
             if "multipart/form-data" in operation.get("requestBody", {}).get("content", {})]
    assert len(forms) == 6  # POST /jobs, /jobs/batch, /predict, /predict/batch; the training ZIP's two
    webhooks = []
    for form in forms:
        schema = document["components"]["schemas"][form["schema"]["$ref"].rsplit("/", 1)[1]]
        assert schema["additionalProperties"] is False
        webhooks.append("webhook_url" in schema["properties"])
        assert all("null" not in str(field) for field in schema["properties"].values())
        assert {encoding["contentType"] for encoding in form["encoding"].values()} in (
            {"image/png, image/jpeg, image/webp, image/bmp, image/gif, image/tiff"}, {"application/zip"})
    assert sum(webhooks) == 4, ("POST /jobs, /jobs/batch and the two training routes take webhooks: auth is on, "
                                "each key has a secret")
    response = api.http.post("/jobs", files={"file": ("a.png", b"x")}, data={"modle": "digits"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "modle"
