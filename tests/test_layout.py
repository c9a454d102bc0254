"""The design's layering, read from the source: the data and scoring modules at the bottom of ner_ofa/ import
nothing else of it; ner_ofa/ imports no script and no top-level module; no script imports another script -- a program that needs what another one does runs it as a
user would (ner_ofa/stages.py), or shares a library module with it -- with one exception, named below."""
import ast
import glob
import os
import subprocess
import sys

from conftest import REPO

# the scripts: the top-level programs and scripts/*.py
SCRIPT_FILES = sorted(glob.glob(os.path.join(REPO, "*.py"))) + \
    sorted(glob.glob(os.path.join(REPO, "scripts", "*.py")))
SCRIPTS = {os.path.splitext(os.path.basename(p))[0] for p in SCRIPT_FILES}

# The one exception: the kept-layer study swaps ner_ofa.supernet.kept_layers inside its own process for each arm,
# so it must run stage 2 (run_msra_ner_ofa.main) in that process (docs/design.md).
ALLOWED = {(os.path.join("scripts", "compare_kept_layers.py"), "run_msra_ner_ofa")}


def imported_modules(path):
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    names = set()
    for node in ast.walk(tree):  # function-level imports too
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


BOTTOM = ("errors", "formats", "data", "features", "labelling", "scoring")


def imported_ner_ofa_modules(path):
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ner_ofa"):
            names.update([node.module.split(".")[1]] if "." in node.module else [a.name for a in node.names])
    return names


def test_data_and_scoring_are_the_bottom():
    for name in BOTTOM:
        assert imported_ner_ofa_modules(os.path.join(REPO, "ner_ofa", name + ".py")) <= set(BOTTOM), name


def test_no_top_level_library():
    """The library imports no module of the repository's top level (a user's own utils.py would shadow it)."""
    top_level = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(REPO, "*.py"))}
    for path in glob.glob(os.path.join(REPO, "ner_ofa", "**", "*.py"), recursive=True):
        assert imported_modules(path) & (top_level | {"utils", "scripts", "conftest"}) == set(), path


def test_ner_ofa_imports_no_script():
    for path in glob.glob(os.path.join(REPO, "ner_ofa", "**", "*.py"), recursive=True):
        assert imported_modules(path) & (SCRIPTS | {"scripts"}) == set(), path


def test_no_script_imports_another_script():
    found = set()
    for path in SCRIPT_FILES:
        own = os.path.splitext(os.path.basename(path))[0]
        for name in imported_modules(path) & (SCRIPTS | {"scripts"}) - {own}:  # `from scripts import x` too
            found.add((os.path.relpath(path, REPO), name))
    assert not found - ALLOWED, sorted(found - ALLOWED)
    assert ALLOWED <= found, "the exception is gone: remove it from ALLOWED and docs/design.md"


def test_no_program_imports_paddle_at_import():
    """Importing a program (top level or scripts/) loads no Paddle: cli.run_main installs the filter for Paddle's
    import-time OMP_NUM_THREADS advice (cli.WithoutKnownNoise) before main() runs, so an import at module level would
    print it before the filter exists (it did, through run_msra_ner_ofa's import of ner_ofa.cpu_training)."""
    code = ("import importlib, sys\n"
            f"sys.path.append({os.path.join(REPO, 'scripts')!r})\n"
            f"for name in {sorted(SCRIPTS)!r}:\n"
            "    importlib.import_module(name)\n"
            "    assert 'paddle' not in sys.modules, name\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
