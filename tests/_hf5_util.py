"""Our exports as transformers 4.x and 5.x users load them: ``tests/hf_load.py`` under both interpreters.

The transformers-5 interpreter is ``.venv-hf5`` (built by ``make venv`` from tests/requirements-transformers5.txt).
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
HF5_PYTHON = os.path.join(REPO, ".venv-hf5", "bin", "python")
SCRIPT = os.path.join(HERE, "hf_load.py")


def interpreters() -> dict:
    """{"4": this interpreter, "5": the transformers-5 one}; a missing one is a setup error, not a skip."""
    assert os.access(HF5_PYTHON, os.X_OK), f"{HF5_PYTHON} is missing: run `make venv` (it builds .venv-hf5)"
    return {"4": sys.executable, "5": HF5_PYTHON}


def load_everywhere(requests: list, tmp_path) -> dict:
    """{"4": [report per request], "5": [...]} of tests/hf_load.py (see its docstring for a request)."""
    req = os.path.join(str(tmp_path), "hf_load_requests.json")
    with open(req, "w") as f:
        json.dump([{**r, "dir": str(r["dir"])} for r in requests], f)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of ours on the path
    reports = {}
    for major, python in interpreters().items():
        res = subprocess.run([python, SCRIPT, req], capture_output=True, text=True, env=env,
                             cwd=str(tmp_path), timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        reports[major] = json.loads(res.stdout.strip().splitlines()[-1])
        assert all(r["transformers"].startswith(major + ".") for r in reports[major]), reports[major]
    return reports


def assert_clean_load(report: dict) -> None:
    """No missing, unexpected or mismatched keys, no error messages."""
    assert all(not v for v in report["loading"].values()), report["loading"]
