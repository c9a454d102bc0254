"""The installable package: a wheel built from pyproject.toml holds ner_ofa and, beside it, only the stage scripts
compress runs; it installs the console scripts, and works from a folder that has its own utils.py (a notebook's), outside the checkout."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO

from ner_ofa import backends


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel ``pip install .`` would install, unpacked into a folder of its own (its dependencies are this
    venv's: the test checks the package, not PyPI)."""
    root = tmp_path_factory.mktemp("package")
    source, wheels = root / "source", root / "wheels"  # a copy: building writes build/ and egg-info beside the source
    shutil.copytree(os.path.join(REPO, "ner_ofa"), source / "ner_ofa",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "run_msra_ner.py", "run_msra_ner_ofa.py", "export_model_msra_ner_ofa.py",
                 "quantize_model.py"):
        shutil.copy(os.path.join(REPO, name), source / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
                          capture_output=True, text=True, timeout=600, cwd=str(root))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = wheels.glob("msra_ner_ofa-*.whl")
    site = root / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(site)
    return {"names": names, "site": str(site), "root": root}


def test_wheel_holds_the_package_and_the_stage_scripts_only(installed):
    """The package, and beside it the stage scripts compress runs (each in processes of its own)."""
    top_level = {name.split("/")[0] for name in installed["names"]}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {
        "ner_ofa", "run_msra_ner.py", "run_msra_ner_ofa.py", "export_model_msra_ner_ofa.py", "quantize_model.py"}, \
        top_level
    for module in ("errors", "data", "features", "labelling", "scoring", "predictor", "planner", "report",
                   "tools/predict", "tools/serve", "tools/quantize", "tools/compress"):
        assert f"ner_ofa/{module}.py" in installed["names"], module
    (entry_points,) = [n for n in installed["names"] if n.endswith("entry_points.txt")]
    text = open(os.path.join(installed["site"], entry_points), encoding="utf-8").read()
    for line in ("ner-ofa-predict = ner_ofa.tools.predict:run", "ner-ofa-serve = ner_ofa.tools.serve:run",
                 "ner-ofa-quantize = ner_ofa.tools.quantize:run", "ner-ofa-compress = ner_ofa.tools.compress:run"):
        assert line in text, text


def test_predictor_from_a_folder_with_its_own_utils(installed, trained):
    """What failed before the package: ``from ner_ofa import NerPredictor`` beside a user's utils.py."""
    static = str(installed["root"] / "export" / "model")
    backends.export_static(trained["teacher"], static)
    notebook = installed["root"] / "notebook"
    notebook.mkdir()
    (notebook / "utils.py").write_text("ANSWER = 42  # the user's own helpers\n", encoding="utf-8")
    code = ("import json, utils\n"
            "from ner_ofa import NerPredictor\n"
            "import ner_ofa\n"
            "assert utils.ANSWER == 42\n"
            f"print(json.dumps([ner_ofa.__file__, NerPredictor({os.path.dirname(static)!r})(['王伟在北京工作'])],"
            " ensure_ascii=False))\n")
    env = dict(os.environ, PYTHONPATH=installed["site"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=str(notebook), env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    package_file, (entities,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert package_file.startswith(installed["site"]), package_file  # the installed copy, not the checkout
    assert isinstance(entities, list)
    # the console script's module runs the same way
    proc = subprocess.run([sys.executable, "-c", "import sys; from ner_ofa.tools.predict import run; "
                           "sys.argv = ['ner-ofa-predict', '--model_dir', sys.argv[1], '--text', '王伟在北京工作']; run()",
                           os.path.dirname(static)], capture_output=True, text=True, timeout=300, cwd=str(notebook),
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["entities"] == entities
