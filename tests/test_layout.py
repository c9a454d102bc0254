"""The design's layering, read from the source: utils.py at the bottom imports nothing of this project; ner_ofa/
imports no script; no script imports another script except the drivers that run stages (scripts/ orchestrators)."""
import ast
import glob
import os

from conftest import REPO

SCRIPTS = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(REPO, "*.py"))} - {"utils"}


def imported_modules(path):
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_utils_is_the_bottom():
    assert imported_modules(os.path.join(REPO, "utils.py")) & (SCRIPTS | {"ner_ofa"}) == set()


def test_ner_ofa_imports_no_script():
    for path in glob.glob(os.path.join(REPO, "ner_ofa", "*.py")):
        assert imported_modules(path) & SCRIPTS == set(), path


def test_predict_serve_and_benchmark_use_the_api_not_another_script():
    for name in ("predict", "serve"):
        assert imported_modules(os.path.join(REPO, f"{name}.py")) & SCRIPTS == set(), name
    assert "predict" not in imported_modules(os.path.join(REPO, "benchmark.py"))
    assert "predict" not in imported_modules(os.path.join(REPO, "scripts", "load_test_serve.py"))
