"""The users' default path, offline: the original README's three commands, verbatim (only --device cpu /
--n_gpu 0 for this CPU), with `bert-base-chinese` by hub name from a pre-populated PaddleNLP cache (random weights)
and PaddleNLP's own `msra_ner` loader reading local files. Slow: the model is the real bert-base shape."""
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, SHARED

import demo_data
from ner_ofa.data import write_ner_file
from ner_ofa import model_io

VOCAB = os.path.join(SHARED, "data", "bert-base-chinese", "vocab.txt")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.isfile(VOCAB), reason="needs ../shared/data/bert-base-chinese/vocab.txt")]

# The original README's commands (github: the msra_ner OFA project), split into argv; `python -u` stays.
TEACHER = """./run_msra_ner.py --model_name_or_path bert-base-chinese --max_seq_length 128 --batch_size 32
    --learning_rate 2e-5 --num_train_epochs 30 --logging_steps 1 --save_steps 500 --output_dir ../tmp/msra_ner/
    --device gpu"""
OFA = """./run_msra_ner_ofa.py --model_type bert --model_name_or_path ../tmp/msra_ner/model_best/ --task_name msra
    --max_seq_length 128 --batch_size 32 --learning_rate 2e-5 --num_train_epochs 30 --logging_steps 1 --save_steps 100
    --output_dir ../tmp/msra_ner_ofa/ --device gpu --width_mult_list 1.0 0.8333333333333334 0.6666666666666666 0.5"""
EXPORT = """./export_model_msra_ner_ofa.py --model_type bert --model_name_or_path ../tmp/msra_ner_ofa/model_0.5
    --max_seq_length 128 --sub_model_output_dir ../tmp/msra_ner_ofa/model_0.5/dynamic_model
    --static_sub_model ../tmp/msra_ner_ofa/model_0.5/static_model --n_gpu 1 --width_mult 0.5"""

# PaddleNLP's msra_ner loader, unchanged, except that it accepts local files whose checksums are not those of its
# download (our generated sentences): the checksum is stubbed, nothing else.
STUB_CHECKSUM_THEN_RUN = """
import runpy, sys
import paddlenlp.datasets.msra_ner as msra
msra.MsraNer.SPLITS = {k: msra.MsraNer.META_INFO(v.file, None) for k, v in msra.MsraNer.SPLITS.items()}
msra.get_path_from_url = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no download in this test"))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def on_cpu(command):
    """The command's argv with --device cpu / --n_gpu 0 instead of the GPU: the only change made to it."""
    return command.replace("--device gpu", "--device cpu").replace("--n_gpu 1", "--n_gpu 0").split()


def make_cache(home):
    """PPNLP_HOME as PaddleNLP leaves it after downloading bert-base-chinese and msra_ner: random weights of the
    bert-base shape, the real vocabulary, and a small generated msra_ner (PER/LOC/ORG, no header)."""
    import paddle
    from paddlenlp.transformers import BertConfig, BertModel

    model_dir = os.path.join(home, "models", "bert-base-chinese")
    os.makedirs(model_dir)
    with open(VOCAB, "rb") as src, open(os.path.join(model_dir, "bert-base-chinese-vocab.txt"), "wb") as dst:
        dst.write(src.read())
    paddle.seed(0)
    bert = BertModel(BertConfig.from_pretrained("bert-base-chinese"))
    paddle.save({f"bert.{k}": v for k, v in bert.state_dict().items()}, os.path.join(model_dir, "model_state.pdparams"))
    data_dir = os.path.join(home, "datasets", "MsraNer", "msra_ner")
    os.makedirs(data_dir)
    for split, n, seed in (("train", 12, 0), ("test", 4, 1)):
        examples = [ex for ex in demo_data.make_examples(4 * n, seed, long_every=10**9) if len(ex["chars"]) <= 24][:n]
        for ex in examples:
            ex["labels"] = ["O" if label.endswith("TIME") else label for label in ex["labels"]]
        write_ner_file(os.path.join(data_dir, f"{split}.tsv"), examples)


def run(argv, cwd, env, stub_checksum=False):
    prefix = [sys.executable, "-u"] + (["-c", STUB_CHECKSUM_THEN_RUN] if stub_checksum else [])
    proc = subprocess.run(prefix + argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{argv[0]}: {proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_original_commands_verbatim(tmp_path):
    home = str(tmp_path / "ppnlp")
    make_cache(home)
    project = tmp_path / "project"  # the checkout; the commands write to ../tmp beside it
    project.mkdir()
    for name in os.listdir(REPO):
        if name.endswith(".py") or name == "ner_ofa":
            os.symlink(os.path.join(REPO, name), project / name)
    env = dict(os.environ, PPNLP_HOME=home, OMP_NUM_THREADS="2")

    teacher = run(on_cpu(TEACHER), project, env, stub_checksum=True)
    assert "teacher: pretrained bert-base-chinese" in teacher.stderr
    assert "PaddleNLP msra_ner" in teacher.stderr
    best = tmp_path / "tmp" / "msra_ner" / "model_best"
    info = model_io.read_json(str(best / "model_info.json"))
    assert info["labels"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert model_io.read_json(str(best / "config.json"))["hidden_size"] == 768
    metrics = model_io.read_json(str(tmp_path / "tmp" / "msra_ner" / "metrics.json"))
    assert metrics["test"]["sentences"] == 4 and len(metrics["curve"]) == 1  # 30 steps, scored at the last

    run(on_cpu(OFA), project, env, stub_checksum=True)
    ofa_dir = tmp_path / "tmp" / "msra_ner_ofa"
    summary = model_io.read_json(str(ofa_dir / "summary.json"))
    assert sorted(summary["pairs"]) == ["0.5", "0.6666666666666666", "0.8333333333333334", "1.0"]

    supernet_files = {n: (ofa_dir / "model_0.5" / n).read_bytes() for n in os.listdir(ofa_dir / "model_0.5")}
    export = run(on_cpu(EXPORT), project, env)
    assert "static model: ../tmp/msra_ner_ofa/model_0.5/static_model" in export.stderr
    # the supernet's own files are untouched; the exports sit inside model_0.5/ as the original layout has them
    for name, content in supernet_files.items():
        assert (ofa_dir / "model_0.5" / name).read_bytes() == content, name
    assert model_io.read_json(str(ofa_dir / "model_0.5" / "dynamic_model" / "model_info.json"))["num_heads"] == 6
    proc = run(["./predict.py", "--model_dir", "../tmp/msra_ner_ofa/model_0.5/static_model", "--text", "王伟在北京工作"],
               project, env)
    assert json.loads(proc.stdout)["text"] == "王伟在北京工作"
