"""What the project checks is what users run: each test here fails on the code without the fix it guards."""
import json
import logging
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, export_args, ofa_args, random_ids, teacher_args

import benchmark
import export_model_msra_ner_ofa as export_stage
from ner_ofa.tools import predict
import run_msra_ner
import run_msra_ner_ofa
from ner_ofa.data import check_same_data, data_fingerprint, load_splits
from ner_ofa.features import CharEncoder
from ner_ofa import backends, cli, distributed, model_io, training
from ner_ofa.predictor import load_logits_fn


def some_ids(seed=0):
    return random_ids(seed, vocab_size=40, length=12)


# ---------------------------------------------------------------- 1. a model_<width>/ runs at its width


def test_predict_on_a_supernet_dir_runs_its_width(trained, tmp_path):
    exported = export_stage.main(export_args(trained["model_0.5"], str(tmp_path / "e"), static=False))
    sub, _, _ = model_io.load_model_dir(exported["sub_model_output_dir"], ["sub_model"])
    sub.eval()
    ids = some_ids()
    want = backends.dynamic_logits_fn(sub)(ids)
    got, _, info = load_logits_fn(trained["model_0.5"])
    assert info["width_mult"] == 0.5
    np.testing.assert_allclose(got(ids), want, rtol=0, atol=1e-5)
    # the same weights at full width compute something else
    full, _, _ = model_io.load_model_dir(trained["model_0.5"], ["supernet"])
    full.eval()
    assert np.abs(backends.dynamic_logits_fn(full)(ids) - want).max() > 1e-3


def test_benchmark_static_export_of_a_supernet_dir_is_cut(trained, tmp_path):
    prefix = backends.export_static(trained["model_0.5"], str(tmp_path / "s" / "model"))
    sub, _, _ = backends.load_inference_model(trained["model_0.5"])
    ids = some_ids(1)
    static = backends.static_logits_fn(prefix, mkldnn=True)(ids)
    np.testing.assert_allclose(static, backends.dynamic_logits_fn(sub)(ids), rtol=0, atol=1e-4)
    assert model_io.read_model_info(str(tmp_path / "s"))["width_mult"] == 0.5


# ---------------------------------------------------------------- 2. the export parity check is independent


def test_export_parity_catches_a_wrong_static_model(trained, tmp_path, monkeypatch):
    """One weight changed on its way into the static graph must fail the export (before: the check compared
    the converted program with itself and saw 0.0)."""
    original = backends.save_static

    def corrupting_save_static(model, prefix):
        weight = model.classifier.weight
        weight.set_value(weight.numpy() + np.eye(*weight.shape, dtype="float32") * 0.5)
        return original(model, prefix)

    monkeypatch.setattr(backends, "save_static", corrupting_save_static)
    out = tmp_path / "e"
    with pytest.raises(RuntimeError, match=r"static model \(oneDNN\): logits differ from the supernet"):
        export_stage.main(export_args(trained["model_0.5"], str(out)))
    assert not os.path.exists(out / "static" / "model.json")


def test_export_parity_runs_paddle_inference_with_onednn(trained, tmp_path, monkeypatch):
    seen = []
    original = backends.static_logits_fn

    def spy(prefix, **kwargs):
        seen.append(kwargs)
        return original(prefix, **kwargs)

    monkeypatch.setattr(backends, "static_logits_fn", spy)
    result = export_stage.main(export_args(trained["model_0.5"], str(tmp_path / "e")))
    assert seen and all(k.get("mkldnn") is True for k in seen)
    assert result["parity_max_abs_diff"] <= 1e-4 and result["dygraph_max_abs_diff"] <= 1e-4


# ---------------------------------------------------------------- 3. readers never write


def test_reading_a_model_dir_during_its_save_lets_the_save_finish(trained, tmp_path, monkeypatch):
    """predict.py (another process) reads model_best/ while a save of it is between 'written' and 'swapped';
    the save must then complete (before: the reader deleted the save's temporary directory)."""
    best = tmp_path / "model_best"
    shutil.copytree(trained["teacher"], best)
    model, tokenizer, info = model_io.load_model_dir(str(best), ["teacher"])
    original = model_io.swap_into_place
    reader = {}

    def swap_after_a_reader(tmp, path):
        reader["proc"] = subprocess.run(
            [sys.executable, os.path.join(REPO, "predict.py"), "--model_dir", path, "--text", "王伟在北京"],
            capture_output=True, text=True, timeout=300)
        reader["tmp_left"] = os.path.isdir(tmp)
        return original(tmp, path)

    monkeypatch.setattr(model_io, "swap_into_place", swap_after_a_reader)
    model_io.save_model_dir(str(best), model.bert.config, model.state_dict(), tokenizer, info, {"marker": 1})
    assert reader["proc"].returncode == 0, reader["proc"].stderr[-2000:]
    assert reader["tmp_left"]
    assert model_io.read_json(str(best / "metrics.json")) == {"marker": 1}
    assert model_io.interrupted_save_leftovers(str(best)) == []


# ---------------------------------------------------------------- 4. an explicit --device wins over --n_gpu


def test_explicit_device_wins_over_n_gpu(trained, tmp_path):
    args = export_stage.parse_args(["--model_name_or_path", trained["model_0.5"], "--sub_model_output_dir",
                                    str(tmp_path / "e"), "--width_mult", "0.5", "--n_gpu", "1", "--device", "cpu"])
    assert export_stage.resolve_device(args) == "cpu"
    export_stage.main(args)  # on a CPU-only machine --n_gpu 1 alone would fail
    assert os.path.isfile(tmp_path / "e" / model_io.WEIGHTS_NAME)
    for argv, device in ((["--n_gpu", "1"], "gpu"), (["--n_gpu", "0"], "cpu"), ([], "cpu"),
                         (["--device", "gpu", "--n_gpu", "0"], "gpu")):
        parsed = export_stage.parse_args(["--model_name_or_path", "m", "--sub_model_output_dir", "o",
                                          "--width_mult", "1.0", *argv])
        assert export_stage.resolve_device(parsed) == device, argv


# ---------------------------------------------------------------- 5. stage 2 uses the teacher's dev split


@pytest.fixture(scope="module")
def teacher_without_dev(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("nodev")
    data = root / "data"
    shutil.copytree(tiny_demo["data_dir"], data)
    os.remove(data / "dev.tsv")
    run_msra_ner.main(teacher_args(str(data), tiny_demo["model_dir"], str(root / "t"), "--max_steps", "3",
                                   "--save_steps", "3", "--dev_ratio", "0.2"))
    return {"root": root, "data": str(data), "teacher": str(root / "t" / "model_best")}


@pytest.mark.parametrize("extra, message", [
    (["--seed", "7"], r"--seed 7 differs from the teacher's 42"),
    ([], r"--dev_ratio 0.1 differs from the teacher's 0.2"),
])
def test_stage2_refuses_another_dev_split(teacher_without_dev, tmp_path, extra, message):
    args = ofa_args(teacher_without_dev["data"], teacher_without_dev["teacher"], str(tmp_path / "o"),
                    "--max_steps", "1", *extra)
    with pytest.raises(cli.UserError, match=message):
        run_msra_ner_ofa.main(args)
    assert not os.path.exists(tmp_path / "o")


def test_stage2_refuses_other_training_data(teacher_without_dev, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(teacher_without_dev["data"], data)
    lines = (data / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (data / "train.tsv").write_text("".join(lines[:-5]), encoding="utf-8")
    with pytest.raises(cli.UserError, match=r"not the teacher's data"):
        run_msra_ner_ofa.main(ofa_args(str(data), teacher_without_dev["teacher"], str(tmp_path / "o"),
                                       "--max_steps", "1", "--dev_ratio", "0.2"))


def one_character_changed(source, target, name):
    """A copy of the data dir ``source`` whose ``name`` differs in one character and nothing else."""
    shutil.copytree(source, target)
    text = (target / name).read_text(encoding="utf-8")
    (target / name).write_text(("某" if text[0] != "某" else "甲") + text[1:], encoding="utf-8")
    return str(target)


def test_stage2_refuses_other_data_with_as_many_sentences(teacher_without_dev, trained, tmp_path):
    """The sentence count alone let a different file of as many sentences pass: stage 1 records content hashes."""
    data = one_character_changed(teacher_without_dev["data"], tmp_path / "train_changed", "train.tsv")
    with pytest.raises(cli.UserError, match=r"^train \(320 sentences, sha256 \w+\) is not the teacher's \(320 "):
        run_msra_ner_ofa.main(ofa_args(data, teacher_without_dev["teacher"], str(tmp_path / "o"), "--max_steps", "1",
                                       "--dev_ratio", "0.2"))
    data = one_character_changed(trained["data_dir"], tmp_path / "dev_changed", "dev.tsv")  # the data's own dev.tsv
    with pytest.raises(cli.UserError, match=r"^dev \(60 sentences, sha256 \w+\) is not the teacher's"):
        run_msra_ner_ofa.main(ofa_args(data, trained["teacher"], str(tmp_path / "o"), "--max_steps", "1"))
    assert not os.path.exists(tmp_path / "o")


def test_a_teacher_without_data_hashes_is_taken_with_a_warning(trained, caplog):
    data = load_splits(type("A", (), {"data_dir": trained["data_dir"], "dev_ratio": 0.1, "seed": 42}))
    recorded = model_io.read_model_info(trained["teacher"])["data"]
    assert recorded == data_fingerprint(data) and check_same_data(recorded, data)
    with caplog.at_level(logging.WARNING, logger="msra_ner_ofa"):
        assert check_same_data(None, data) is False
    assert "the teacher records no hash of its data" in caplog.text


def test_stage2_takes_the_teachers_split(teacher_without_dev, tmp_path):
    summary = run_msra_ner_ofa.main(ofa_args(teacher_without_dev["data"], teacher_without_dev["teacher"],
                                             str(tmp_path / "o"), "--max_steps", "2", "--save_steps", "2",
                                             "--dev_ratio", "0.2"))
    assert set(summary["pairs"]) == {"1.0", "0.5"}
    info = model_io.read_json(os.path.join(teacher_without_dev["teacher"], "model_info.json"))
    assert info["dev_split"] == {"from": "train", "dev_ratio": 0.2, "seed": 42, "train_sentences": 400}


# ---------------------------------------------------------------- also found


def test_hub_names_with_a_slash_reach_paddlenlp(monkeypatch):
    from paddlenlp.transformers import BertForTokenClassification

    asked = []
    monkeypatch.setattr(BertForTokenClassification, "from_pretrained",
                        classmethod(lambda cls, name, **kw: asked.append(name) or "model"))
    model, origin = model_io.load_teacher_start("some-org/bert-wwm-chinese", 3, ["O", "B-X", "I-X"])
    assert model == "model" and asked == ["some-org/bert-wwm-chinese"]
    with pytest.raises(cli.UserError, match="not a directory"):
        model_io.load_teacher_start("./no/such/dir", 3, ["O", "B-X", "I-X"])


def test_weights_this_code_cannot_read_are_an_error(tiny_demo, tmp_path):
    model_dir = tmp_path / "torch_bert"
    shutil.copytree(tiny_demo["model_dir"], model_dir)
    (model_dir / "tf_model.h5").write_bytes(b"\0" * 16)
    with pytest.raises(cli.UserError, match=r"has tf_model\.h5 but no model_state\.pdparams"):
        model_io.load_teacher_start(str(model_dir), 3, ["O", "B-X", "I-X"])
    (model_dir / "pytorch_model.bin").write_bytes(b"\0" * 16)  # read as a Hugging Face checkpoint, and refused
    with pytest.raises(cli.UserError, match=r"pytorch_model\.bin: cannot read the weights"):
        model_io.load_teacher_start(str(model_dir), 3, ["O", "B-X", "I-X"])


def test_character_ids_do_not_depend_on_do_lower_case(tmp_path):
    from paddlenlp.transformers import BertTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "B", "中"]) + "\n",
                     encoding="utf-8")
    chars = list("aAbB中Z")
    cased = CharEncoder(BertTokenizer(vocab_file=str(vocab), do_lower_case=False)).encode(chars)
    uncased = CharEncoder(BertTokenizer(vocab_file=str(vocab), do_lower_case=True)).encode(chars)
    assert cased == uncased == [5, 5, 6, 7, 8, 1]


def test_predict_splits_input_on_newlines_only(monkeypatch, tmp_path, capsys):
    path = tmp_path / "in.txt"
    path.write_bytes("张伟\u2028在北京\n李娜\x0c去\u0085上海\r\n\n最后一行".encode("utf-8"))
    texts = list(predict.read_texts(predict.parse_args(["--model_dir", "x", "--input_file", str(path)])))
    assert texts == ["张伟\u2028在北京", "李娜\x0c去\u0085上海", "", "最后一行"]
    assert list(predict.split_lines(io.BytesIO(b"a\rb\n"), "x")) == ["a\rb"]


class FakeOptimizer:
    def __init__(self):
        self._learning_rate = type("S", (), {"step": lambda self: None})()

    def step(self):
        pass

    def clear_grad(self):
        pass

    def get_lr(self):
        return 0.1


class FakeSampler(list):
    def __init__(self, batches):
        super().__init__(batches)
        self.epochs = 0

    def set_epoch(self, epoch):
        self.epochs += 1
        if self.epochs > 3:
            raise RuntimeError("the loop went on without batches")


ENCODER = type("E", (), {"cls_id": 2, "sep_id": 3, "pad_id": 0})


def fake_trainer(batches, num_steps, rank=0, world_size=1, **flags):
    """A Trainer over ``batches`` of 2-character windows with a do-nothing optimizer."""
    from conftest import tiny_model

    args = type("Args", (), dict({"resume": False, "seed": 42, "logging_steps": 3, "save_steps": 2,
                                  "output_dir": "unused", "batch_size": 1, "max_steps": num_steps,
                                  "learning_rate": 0.1, "warmup_proportion": 0.0, "weight_decay": 0.0}, **flags))
    features = [([5, 6], [0, 0])] * max(1, sum(len(b) for b in batches))
    trainer = training.Trainer(args, tiny_model(), features, ENCODER, rank, world_size)
    trainer.sampler, trainer.optimizer = FakeSampler(batches), FakeOptimizer()
    return trainer


def test_logged_step_time_excludes_evaluation(monkeypatch, caplog):
    now = [0.0]
    monkeypatch.setattr(training, "clock", lambda: now[0], raising=False)
    monkeypatch.setattr(training, "save_checkpoint", lambda *a, **k: None)

    def forward_backward(input_ids, labels):
        now[0] += 1.0
        return {"loss": 1.0}

    def evaluate_and_keep_best(step, epoch):
        now[0] += 100.0

    with caplog.at_level(logging.INFO, logger="msra_ner_ofa"):
        fake_trainer([[i] for i in range(12)], num_steps=9).run(forward_backward, evaluate_and_keep_best, {})
    lines = [r.getMessage() for r in caplog.records if "s/step" in r.getMessage()]
    assert len(lines) == 3 and all("| 1.000 s/step, 1.0 samples/s |" in line for line in lines), lines
    # ETA from the wall time per step so far, evaluations included: 3 steps + 1 evaluation in, 6 steps to go
    assert lines[0].endswith("elapsed 0:01:43, ETA 0:03:26"), lines[0]


def test_a_rank_without_batches_is_an_error():
    with pytest.raises(cli.UserError, match="rank 1 of 2 gets no training batch"):
        fake_trainer([], num_steps=5, rank=1, world_size=2).run(None, None, {})


def test_benchmark_checks_the_run_before_making_int8(tmp_path):
    bench = tmp_path / "bench.txt"
    bench.write_text("王伟在北京\n", encoding="utf-8")
    with pytest.raises(cli.UserError, match=r"summary.json: not found; give a scripts/benchmark_msra_cpu.py work"):
        benchmark.main(benchmark.parse_args(["--from_msra_run", str(tmp_path / "nothing"), "--bench_file", str(bench)]))
    # the driver's layout: export/<pair name>/static, names and widths/depths from its stage 2 summary
    run = tmp_path / "run"
    (run / "ofa").mkdir(parents=True)
    model_io.write_json(str(run / "ofa" / "summary.json"), {"pairs": {
        "1.0_1.0": {"width": 1.0, "depth": 1.0}, "0.5_1.0": {"width": 0.5, "depth": 1.0},
        "0.5_0.5": {"width": 0.5, "depth": 0.5}}})
    for path in ("teacher/model_best", "export/teacher/static", "export/1.0_1.0/static", "export/0.5_1.0/static"):
        (run / path).mkdir(parents=True)
    with pytest.raises(cli.UserError, match=r"export/0\.5_0\.5/static: not found \(width:0\.5:depth:0\.5\)"):
        benchmark.main(benchmark.parse_args(["--from_msra_run", str(run), "--bench_file", str(bench)]))


TWO_RANKS = """
import json, os, sys
sys.path.insert(0, {repo!r})
sys.path.insert(0, {tests!r})
import numpy as np
import paddle
import paddle.nn.functional as F
from conftest import tiny_model
from ner_ofa import cli, distributed, training

rank, world_size = distributed.init_distributed()
paddle.set_device("cpu")
out = {{"rank": rank}}


def trainer(output_dir):
    args = type("Args", (), {{"resume": True, "seed": 42, "logging_steps": 100, "save_steps": 100,
                             "output_dir": output_dir, "batch_size": 1, "max_steps": 4, "learning_rate": 0.1,
                             "warmup_proportion": 0.0, "weight_decay": 0.0}})
    encoder = type("E", (), {{"cls_id": 2, "sep_id": 3, "pad_id": 0}})
    return training.Trainer(args, tiny_model(), [([5, 6], [0, 0])] * 8, encoder, rank, world_size)


# dropout: the masks each rank draws in the trainer's own step loop, from step 0 and resumed at step 2
def masks(first_step):
    return {{step: "".join("1" if v else "0" for v in F.dropout(paddle.ones([64]), p=0.5).numpy() > 0)
            for step, _, _ in trainer("unused")._batches(first_step)}}


out["masks"], out["resumed_masks"] = masks(0), masks(2)

# --resume: the checkpoint on rank 0's disk only (OUTPUT_DIR not shared), then on both
for case, has_checkpoint in (("rank0_only", rank == 0), ("all", True)):
    output_dir = os.path.join({root!r}, case, f"rank{{rank}}")
    t = trainer(output_dir)
    if has_checkpoint:
        training.save_checkpoint(output_dir, t.model, t.optimizer, {{"step": 3, "state": {{"best": 0.5}}}})
    try:
        out[case] = {{"step": t._resume({{}})}}
    except cli.UserError as error:
        out[case] = {{"error": str(error)}}
print("RESULT " + json.dumps(out), flush=True)
distributed.barrier(world_size)
"""


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """What 2 processes under paddle.distributed.launch see: the dropout masks of their first steps, and what
    --resume does with a checkpoint on one process's disk or on both. {rank: result}."""
    root = tmp_path_factory.mktemp("two_ranks")
    script = root / "two_ranks.py"
    script.write_text(TWO_RANKS.format(repo=REPO, tests=os.path.join(REPO, "tests"), root=str(root)),
                      encoding="utf-8")
    proc = subprocess.run([*distributed.launch_command(2, root / "log"), str(script)], capture_output=True, text=True,
                          timeout=600, cwd=str(root), env=dict(os.environ, OMP_NUM_THREADS="1"))
    logs = "".join(open(p, encoding="utf-8", errors="replace").read()
                   for p in sorted((root / "log").glob("workerlog.*")))
    assert proc.returncode == 0, logs[-3000:] + proc.stderr[-2000:]
    results = [json.loads(line[len("RESULT "):]) for line in logs.splitlines() if line.startswith("RESULT ")]
    return {r["rank"]: r for r in results}


def test_each_rank_draws_its_own_dropout(two_ranks):
    """Real dropout masks, drawn in the trainer's step loop on 2 processes: each rank its own (a rank term above
    paddle.seed's 32 bits would vanish and both ranks would draw the same masks), and the same again when the
    loop resumes at a later step."""
    assert sorted(two_ranks) == [0, 1]
    for rank, result in two_ranks.items():
        assert len(result["masks"]) >= 2 and len(set(result["masks"].values())) == len(result["masks"])
        assert result["resumed_masks"] == {k: v for k, v in result["masks"].items() if int(k) >= 2}
    for step, mask in two_ranks[0]["masks"].items():
        assert two_ranks[1]["masks"][step] != mask, step


def test_resume_needs_the_checkpoint_on_every_process(two_ranks):
    """A checkpoint only rank 0 can see (OUTPUT_DIR on a disk of its own) stops every process with one line;
    one every process sees is resumed by all."""
    for rank in (0, 1):
        assert "1 of 2 processes see" in two_ranks[rank]["rank0_only"].get("error", ""), two_ranks[rank]
        assert "shared file system" in two_ranks[rank]["rank0_only"]["error"]
        assert two_ranks[rank]["all"] == {"step": 3}


def test_int8_reduce_range_follows_vnni():
    assert backends.int8_reduce_range("x86_64", {"avx2", "avx512f"}) is True
    assert backends.int8_reduce_range("x86_64", {"avx2", "avx512f", "avx512_vnni"}) is False
    assert backends.int8_reduce_range("x86_64", {"avx2", "avx_vnni"}) is False
    assert backends.int8_reduce_range("aarch64", set()) is False


# ---------------------------------------------------------------- the original layout, made safe


def original_layout_export(supernet_dir):
    return export_stage.parse_args([
        "--model_type", "bert", "--model_name_or_path", supernet_dir, "--max_seq_length", "48",
        "--sub_model_output_dir", os.path.join(supernet_dir, "dynamic_model"),
        "--static_sub_model", os.path.join(supernet_dir, "static_model"), "--n_gpu", "0", "--width_mult", "0.5"])


def test_export_inside_the_supernet_dir_then_stage2_rerun(tiny_demo, tmp_path, capsys):
    """The original layout writes the export inside model_0.5/: the supernet's files stay as they were, predict
    takes the static prefix, and a later stage-2 save of model_0.5/ moves the stale export aside and says so."""
    out = tmp_path / "o"
    run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(tmp_path / "t"), "--max_steps", "10"))
    teacher = str(tmp_path / "t" / "model_best")
    run_msra_ner_ofa.main(ofa_args(tiny_demo["data_dir"], teacher, str(out), "--max_steps", "2", "--save_steps", "2"))
    supernet_dir = out / "model_0.5"
    before = {n: (supernet_dir / n).read_bytes() for n in os.listdir(supernet_dir)}
    export_stage.main(original_layout_export(str(supernet_dir)))
    assert {n: (supernet_dir / n).read_bytes() for n in before} == before
    assert {"dynamic_model", "static_model.json", "static_model.pdiparams", "static_model.info.json"} <= \
        set(os.listdir(supernet_dir))
    from ner_ofa.predictor import NerPredictor

    # logits, not entity lists (after 2 steps both may well be empty): the static prefix computes the sub-model
    static, dygraph = (NerPredictor(str(supernet_dir / name)) for name in ("static_model", "dynamic_model"))
    ids = np.array([static.encoder.encode(list("[王伟在北京]"))], dtype="int64")
    np.testing.assert_allclose(static.logits_fn(ids), dygraph.logits_fn(ids), rtol=1e-4, atol=1e-4)
    assert np.abs(static.logits_fn(ids)).max() > 1e-3

    capsys.readouterr()
    run_msra_ner_ofa.main(ofa_args(tiny_demo["data_dir"], teacher, str(out), "--max_steps", "4", "--save_steps", "2",
                                   "--learning_rate", "5e-3"))
    assert "dynamic_model" not in os.listdir(supernet_dir)
    [aside] = os.listdir(out / "replaced_exports")
    assert aside.startswith("model_0.5.")
    assert {"dynamic_model", "static_model.json"} <= set(os.listdir(out / "replaced_exports" / aside))
    assert "WARNING" in capsys.readouterr().err.split("exported from the weights it replaces now")[0].splitlines()[-1]


@pytest.mark.parametrize("flags, message", [
    (["--sub_model_output_dir", "{src}"], "would replace the supernet directory"),
    (["--static_sub_model", "{src}/config"], "would overwrite the supernet's config.json"),
    (["--static_sub_model", "{src}/model_info"], "would overwrite the supernet's model_info.json"),
])
def test_export_never_overwrites_the_supernet(trained, tmp_path, flags, message):
    src = trained["model_0.5"]
    argv = ["--model_name_or_path", src, "--sub_model_output_dir", str(tmp_path / "s"), "--width_mult", "0.5",
            "--device", "cpu"] + [f.format(src=src) for f in flags]
    before = {n: os.path.getmtime(os.path.join(src, n)) for n in os.listdir(src)}
    with pytest.raises(cli.UserError, match=message):
        export_stage.main(export_stage.parse_args(argv))
    assert {n: os.path.getmtime(os.path.join(src, n)) for n in os.listdir(src)} == before


def test_stop_at_ends_training_with_an_evaluation_at_the_first_step_after_it(monkeypatch):
    """compress's budget: the stage stops at the first step past --stop_at, scored on dev there."""
    import time

    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    monkeypatch.setattr(training, "save_checkpoint", lambda *a, **k: None)
    evaluated = []

    def forward_backward(input_ids, labels):
        now[0] += 10.0
        return {"loss": 1.0}

    trainer = fake_trainer([[i] for i in range(12)], num_steps=9, save_steps=4, stop_at=1035.0)
    last = trainer.run(forward_backward, lambda step, epoch: evaluated.append(step), {})
    assert last == 4 and evaluated == [4]  # 1040 at step 4 is past 1035; step 4 is also an evaluation step
    trainer = fake_trainer([[i] for i in range(12)], num_steps=9, save_steps=4, stop_at=now[0] + 25.0)
    evaluated.clear()
    assert trainer.run(forward_backward, lambda step, epoch: evaluated.append(step), {}) == 3 and evaluated == [3]
    trainer = fake_trainer([[i] for i in range(12)], num_steps=9, save_steps=4, stop_at=None)
    evaluated.clear()
    assert trainer.run(forward_backward, lambda step, epoch: evaluated.append(step), {}) == 9
    assert evaluated == [4, 8, 9]


def test_resume_checks_the_dev_sample_the_checkpoint_scored(tmp_path, caplog):
    """--resume must score the dev sentences the checkpoint's best F1 was scored on; a checkpoint from before the
    record exists is resumed with a warning."""
    import argparse

    from ner_ofa.data import dev_sample

    dev = [{"chars": list(f"句子{i}"), "labels": ["O"] * (len(str(i)) + 2)} for i in range(40)]
    record = training.dev_sample_record(dev_sample(dev, 10, 42))
    args = argparse.Namespace(output_dir=str(tmp_path), resume=True)
    training.check_resume_dev_sample(args, record)  # no checkpoint yet: nothing to check
    state = tmp_path / training.CHECKPOINT_DIR / "trainer_state.json"
    state.parent.mkdir()
    model_io.write_json(str(state), {"step": 4, "state": {}, "dev_sample": record})
    training.check_resume_dev_sample(args, record)
    for other in (training.dev_sample_record(dev_sample(dev, 10, 7)), training.dev_sample_record(dev)):
        with pytest.raises(cli.UserError, match="scored 10 dev sentences"):
            training.check_resume_dev_sample(args, other)
    training.check_resume_dev_sample(argparse.Namespace(output_dir=str(tmp_path), resume=False), other)
    model_io.write_json(str(state), {"step": 4, "state": {}})
    with caplog.at_level(logging.WARNING, logger="msra_ner_ofa"):
        training.check_resume_dev_sample(args, record)
    assert "predates --eval_sentences" in caplog.text
