"""Shared fixtures: the repo on sys.path, a tiny generated dataset, a teacher and supernet trained on it, the
stages' flags at the tiny size, a tiny random BERT, a fake tokenizer."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
sys.path.insert(0, REPO)

import demo_data  # noqa: E402
import export_model_msra_ner_ofa as export_stage  # noqa: E402
import run_msra_ner  # noqa: E402
import run_msra_ner_ofa  # noqa: E402
from ner_ofa import cli  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes, not seconds (bert-base shape); CI runs them too")


@pytest.fixture(scope="session", autouse=True)
def _quiet_logs():
    import paddle

    paddle.set_device("cpu")
    cli.setup_logging()


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """Generated data (train/dev/test) and a config-only tiny BERT directory."""
    root = tmp_path_factory.mktemp("demo")
    data_dir, model_dir = demo_data.write_demo(str(root), n_train=400, n_dev=60, n_test=60, seed=1,
                                               hidden_size=32, intermediate_size=64)
    return {"root": str(root), "data_dir": data_dir, "model_dir": model_dir}


def teacher_args(data_dir, model_dir, out, *extra):
    return run_msra_ner.parse_args([
        "--model_name_or_path", model_dir, "--data_dir", data_dir, "--device", "cpu", "--max_seq_length", "48",
        "--batch_size", "16", "--learning_rate", "5e-3", "--num_train_epochs", "4", "--logging_steps", "25",
        "--save_steps", "40", "--output_dir", out, *extra])


def ofa_args(data_dir, teacher_dir, out, *extra):
    return run_msra_ner_ofa.parse_args([
        "--model_type", "bert", "--model_name_or_path", teacher_dir, "--data_dir", data_dir, "--device", "cpu",
        "--max_seq_length", "48", "--batch_size", "16", "--learning_rate", "2e-3", "--max_steps", "40",
        "--logging_steps", "20", "--save_steps", "20", "--width_mult_list", "1.0", "0.5", "--output_dir", out, *extra])


def export_args(model_dir, out, width="0.5", static=True):
    return export_stage.parse_args([
        "--model_type", "bert", "--model_name_or_path", model_dir, "--max_seq_length", "48",
        "--sub_model_output_dir", os.path.join(out, "sub_model"),
        "--static_sub_model", os.path.join(out, "static", "model") if static else "None",
        "--width_mult", width, "--device", "cpu"])


@pytest.fixture(scope="session")
def trained(tiny_demo, tmp_path_factory):
    """A teacher (20 steps) and a 2-width supernet (6 steps) on the demo data (which has a dev.tsv). Read-only:
    tests that change them work on a copy."""
    root = tmp_path_factory.mktemp("trained")
    run_msra_ner.main(teacher_args(tiny_demo["data_dir"], tiny_demo["model_dir"], str(root / "t"), "--max_steps", "20"))
    run_msra_ner_ofa.main(ofa_args(tiny_demo["data_dir"], str(root / "t" / "model_best"), str(root / "o"),
                                   "--max_steps", "6", "--save_steps", "6"))
    return {"root": root, "teacher": str(root / "t" / "model_best"), "model_0.5": str(root / "o" / "model_0.5"),
            "model_1.0": str(root / "o" / "model_1.0"), **tiny_demo}


def tiny_model(num_labels=5, num_layers=2, num_heads=4, hidden_size=32, intermediate_size=64, vocab_size=60, seed=0):
    """A random-init BertForTokenClassification for structural tests."""
    import paddle
    from paddlenlp.transformers import BertConfig, BertForTokenClassification

    paddle.seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=intermediate_size,
                        max_position_embeddings=64, num_labels=num_labels, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = BertForTokenClassification(config)
    model.eval()
    return model


def fake_tokenizer(*tokens):
    """A stand-in for a BertTokenizer with the special tokens (ids 0-4) then ``tokens``: what CharEncoder reads."""
    class FakeTokenizer:
        class vocab:
            token_to_idx = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *tokens])}

        unk_token, cls_token, sep_token, pad_token = "[UNK]", "[CLS]", "[SEP]", "[PAD]"

    return FakeTokenizer


def random_ids(seed=0, vocab_size=60, length=9):
    """A batch of 3 token-id rows, [CLS] ... [SEP], the last one padded from the middle on."""
    import numpy as np

    rng = np.random.RandomState(seed)
    ids = rng.randint(5, vocab_size, size=(3, length)).astype("int64")
    ids[:, 0], ids[:, -1] = 2, 3
    ids[2, length // 2 + 1:] = 0  # padding
    return ids
