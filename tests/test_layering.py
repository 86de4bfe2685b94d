"""The folders are the architecture: which lram package may import which, read from the sources themselves.

runtime/ ships alone to a robot (numpy + ONNX Runtime): it imports nothing of ours outside itself. The other
packages depend one way, down to model/ and runtime/; no two packages import each other.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "model", "export", "verify", "calibration", "bench", "compile", "kernels", "cli")
# package -> the lram packages it may import (itself always)
ALLOWED = {
    "runtime": set(),
    "model": {"runtime"},  # the simulators (runtime/sim.py) and nothing else of the runtime's
    "kernels": {"runtime"},
    "export": {"model", "runtime", "kernels"},
    "compile": {"runtime", "kernels"},
    "verify": {"model", "runtime"},
    "calibration": {"model", "runtime", "verify"},
    "bench": {"model", "runtime", "export", "verify", "calibration"},
    "cli": set(PACKAGES),
}


def _imports(package: str) -> dict:
    """lram package imported -> the first file that imports it."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                if parts[0] == "lram" and len(parts) > 1 and parts[1] != package:
                    found.setdefault(parts[1], path.relative_to(ROOT))
    return found


def test_each_package_imports_only_what_it_may():
    problems = [f"{pkg} imports lram.{dep} ({where})" for pkg in PACKAGES
                for dep, where in _imports(pkg).items() if dep not in ALLOWED[pkg]]
    assert not problems, problems


def test_no_two_packages_depend_on_each_other():
    deps = {pkg: set(_imports(pkg)) for pkg in PACKAGES}

    def reaches(a, b, seen=()):
        return b in deps.get(a, ()) or any(reaches(c, b, seen + (a,)) for c in deps.get(a, ()) if c not in seen)

    cycles = [(a, b) for a in PACKAGES for b in deps[a] if b in PACKAGES and reaches(b, a)]
    assert not cycles, cycles


def test_the_rule_can_fail():
    assert "runtime" in _imports("model") and "export" not in ALLOWED["runtime"]
