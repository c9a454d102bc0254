"""Hugging Face BERT checkpoints in stage 1: tiny checkpoints written by the test in each format load to the logits
a NumPy BERT computes from the same weights, train, and leave their directory byte-identical; malformed ones get
a one-line error."""
import json
import math
import os

import numpy as np
import pytest
from conftest import teacher_args
from hf_fixtures import SIZES, demo_vocab, hf_tensors, tree_digest, write_checkpoint

import run_msra_ner
from ner_ofa.features import CharEncoder
from ner_ofa import cli, hf_checkpoint, model_io

def numpy_bert_logits(tensors, ids, classifier_w, classifier_b, prefix="bert."):
    """The token classifier's logits computed with NumPy from the Hugging Face tensors (torch layout)."""
    t = {k[len(prefix):] if k.startswith(prefix) else k: v.astype(np.float64) for k, v in tensors.items()}
    erf = np.vectorize(math.erf)

    def norm(x, name):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * t[name + ".weight"] + t[name + ".bias"]

    def dense(x, name):
        return x @ t[name + ".weight"].T + t[name + ".bias"]

    batch, length = ids.shape
    x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][np.arange(length)] \
        + t["embeddings.token_type_embeddings.weight"][0]
    x = norm(x, "embeddings.LayerNorm")
    mask = np.where(ids == 0, -1e4, 0.0)[:, None, None, :]  # PaddleNLP masks [PAD] (pad_token_id 0) keys
    heads, dim = SIZES["heads"], SIZES["hidden"] // SIZES["heads"]
    for i in range(SIZES["layers"]):
        p = f"encoder.layer.{i}."

        def split(y):
            return y.reshape(batch, length, heads, dim).transpose(0, 2, 1, 3)

        q, k, v = (split(dense(x, p + "attention.self." + n)) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dim) + mask
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
        x = norm(x + dense(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        hidden = dense(x, p + "intermediate.dense")
        hidden = 0.5 * hidden * (1 + erf(hidden / np.sqrt(2)))
        x = norm(x + dense(hidden, p + "output.dense"), p + "output.LayerNorm")
    return x @ classifier_w + classifier_b


@pytest.mark.parametrize("fmt, prefix, vocab_file", [
    ("safetensors", "bert.", "vocab.txt"),
    ("safetensors", "", "tokenizer.json"),
    ("bin", "bert.", "tokenizer.json"),
    ("bin", "", "vocab.txt"),
])
def test_checkpoint_loads_to_numpy_logits_trains_and_stays_untouched(tiny_demo, tmp_path, fmt, prefix, vocab_file):
    import paddle

    vocab = demo_vocab(tiny_demo)
    ckpt, tensors = write_checkpoint(str(tmp_path / "ckpt"), vocab, fmt, prefix, vocab_file)
    before = tree_digest(ckpt)
    labels = ["B-LOC", "I-LOC", "O"]

    model, origin = model_io.load_teacher_start(ckpt, len(labels), labels)
    assert "Hugging Face checkpoint" in origin
    model.eval()
    ids = np.array([[2, 10, 11, 12, 13, 3], [2, 14, 15, 3, 0, 0]], dtype="int64")
    logits = model(paddle.to_tensor(ids))
    assert not isinstance(logits, (tuple, list)), "use_cache/return_dict in config.json changed the output"
    expected = numpy_bert_logits(tensors, ids, model.classifier.weight.numpy().astype(np.float64),
                                 model.classifier.bias.numpy().astype(np.float64), prefix)
    np.testing.assert_allclose(logits.numpy()[0], expected[0], atol=2e-5)
    np.testing.assert_allclose(logits.numpy()[1, :4], expected[1, :4], atol=2e-5)

    tokenizer = model_io.load_tokenizer(ckpt)
    assert [tokenizer.vocab.to_indices(t) for t in vocab[:8]] == list(range(8))
    if vocab_file == "tokenizer.json":
        assert tokenizer.do_lower_case is False  # from tokenizer_config.json

    out = tmp_path / "out"
    result = run_msra_ner.main(teacher_args(tiny_demo["data_dir"], ckpt, str(out), "--max_steps", "4",
                                            "--save_steps", "4", "--logging_steps", "2"))
    assert result["test"]["sentences"] == 60 and result["best_step"] == 4
    saved = model_io.read_json(str(out / "model_best" / "config.json"))
    assert saved["hidden_size"] == SIZES["hidden"] and not saved.get("use_cache")
    assert (out / "model_best" / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1] == vocab
    assert tree_digest(ckpt) == before and sorted(os.listdir(ckpt)) == sorted(before)


def _expect_one_line_error(tmp_path, ckpt, tiny_demo, capsys, message):
    out = tmp_path / "out"
    argv = ["--model_name_or_path", ckpt, "--data_dir", tiny_demo["data_dir"], "--device", "cpu",
            "--max_seq_length", "48", "--output_dir", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        cli.run_main(run_msra_ner.main, run_msra_ner.parse_args, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith("error: ") and message in err[-1], err[-3:]
    assert not out.exists()


def test_not_a_bert_is_one_line(tiny_demo, tmp_path, capsys):
    ckpt, _ = write_checkpoint(str(tmp_path / "ckpt"), demo_vocab(tiny_demo),
                               config_extra={"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    _expect_one_line_error(tmp_path, ckpt, tiny_demo, capsys, "model_type 'gpt2'")


def test_missing_tensor_is_one_line(tiny_demo, tmp_path, capsys):
    vocab = demo_vocab(tiny_demo)
    tensors = hf_tensors(len(vocab))
    del tensors["bert.encoder.layer.1.output.dense.weight"]
    ckpt, _ = write_checkpoint(str(tmp_path / "ckpt"), vocab, tensors=tensors)
    _expect_one_line_error(tmp_path, ckpt, tiny_demo, capsys, "lacks 1 tensors of the BERT its config.json "
                                                              "describes (first: bert.encoder.layers.1.linear2.weight)")


def test_shape_mismatch_is_one_line(tiny_demo, tmp_path, capsys):
    vocab = demo_vocab(tiny_demo)
    ckpt, _ = write_checkpoint(str(tmp_path / "ckpt"), vocab, tensors=hf_tensors(len(vocab) + 5))
    _expect_one_line_error(tmp_path, ckpt, tiny_demo, capsys, "bert.embeddings.word_embeddings.weight has shape "
                                                              f"[{len(vocab) + 5}, 32], config.json implies")


def test_foreign_tensor_is_one_line(tiny_demo, tmp_path, capsys):
    vocab = demo_vocab(tiny_demo)
    tensors = hf_tensors(len(vocab))
    tensors["bert.encoder.layer.0.attention.self.distance_embedding.weight"] = np.zeros((3, 8), np.float32)
    ckpt, _ = write_checkpoint(str(tmp_path / "ckpt"), vocab, fmt="bin", tensors=tensors)
    _expect_one_line_error(tmp_path, ckpt, tiny_demo, capsys, "tensors that are not BERT's (first: "
                                                              "bert.encoder.layer.0.attention.self.distance_embedding")


def test_unreadable_weights_are_one_line(tiny_demo, tmp_path, capsys):
    ckpt, _ = write_checkpoint(str(tmp_path / "ckpt"), demo_vocab(tiny_demo))
    with open(os.path.join(ckpt, "model.safetensors"), "wb") as handle:
        handle.write(b"not a safetensors file")
    _expect_one_line_error(tmp_path, ckpt, tiny_demo, capsys, "model.safetensors: cannot read the weights")


def test_tokenizer_json_that_is_not_wordpiece_is_one_line(tiny_demo, tmp_path, capsys):
    ckpt, _ = write_checkpoint(str(tmp_path / "ckpt"), demo_vocab(tiny_demo), vocab_file="tokenizer.json")
    with open(os.path.join(ckpt, "tokenizer.json"), "w") as handle:
        json.dump({"model": {"type": "BPE", "vocab": {"a": 0}}}, handle)
    _expect_one_line_error(tmp_path, ckpt, tiny_demo, capsys, "a BPE tokenizer, not BERT's WordPiece")


def test_char_encoder_ids_come_from_the_checkpoint_vocabulary(tiny_demo, tmp_path):
    vocab = demo_vocab(tiny_demo)
    ckpt, _ = write_checkpoint(str(tmp_path / "ckpt"), vocab, vocab_file="tokenizer.json")
    encoder = CharEncoder(model_io.load_tokenizer(ckpt))
    assert encoder.encode([vocab[20], vocab[30]]) == [20, 30] and encoder.cls_id == vocab.index("[CLS]")
    assert hf_checkpoint.vocab_tokens(ckpt) == vocab
