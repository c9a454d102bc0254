"""Shared fixtures: the repo on sys.path, a tiny generated dataset, a tiny random BERT."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
sys.path.insert(0, REPO)

import demo_data  # noqa: E402
import utils  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _quiet_logs():
    import paddle

    paddle.set_device("cpu")
    utils.setup_logging()


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """Generated data (train/dev/test) and a config-only tiny BERT directory."""
    root = tmp_path_factory.mktemp("demo")
    data_dir, model_dir = demo_data.write_demo(str(root), n_train=400, n_dev=60, n_test=60, seed=1,
                                               hidden_size=32, intermediate_size=64)
    return {"root": str(root), "data_dir": data_dir, "model_dir": model_dir}


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
