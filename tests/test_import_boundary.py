"""svd_core is a plain library: importing all of it pulls in none of prefect, mlflow, dvc, boto3."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

FORBIDDEN = ("prefect", "mlflow", "dvc", "boto3", "botocore", "great_expectations")

# Third-party packages may pull these in themselves (accelerate imports boto3 for its SageMaker config),
# so the runtime check records WHO imports each forbidden package first: the importing frame must never be
# a file of svd_core.
CHECK = f"""
import importlib, pkgutil, sys, os
FORBIDDEN = {FORBIDDEN!r}
root = os.path.join(os.getcwd(), "svd_core")
violations = []

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN and name.split(".")[0] not in sys.modules:
            frame = sys._getframe(1)
            while frame and ("importlib" in frame.f_code.co_filename or "<frozen" in frame.f_code.co_filename):
                frame = frame.f_back
            if frame and frame.f_code.co_filename.startswith(root):
                violations.append(f"{{frame.f_code.co_filename}}:{{frame.f_lineno}} imports {{name}}")
        return None

sys.meta_path.insert(0, Watch())
import svd_core
count = 0
for mod in pkgutil.walk_packages(svd_core.__path__, "svd_core."):
    importlib.import_module(mod.name)
    count += 1
print("modules:", count, "violations:", violations)
sys.exit(1 if violations else 0)
"""


def test_svd_core_never_imports_integrations() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "violations: []" in proc.stdout


def test_no_source_line_imports_them() -> None:
    offenders = []
    for path in (ROOT / "svd_core").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from") and words[1].split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
