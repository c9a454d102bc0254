"""The command line every script shares: user errors, version checks, logging, the shared flags, and the start
of a training process (distributed environment, device, seed). The collective runtime is ner_ofa/distributed.py."""
import argparse
import logging
import os
import random
import sys

import numpy as np

from ner_ofa import distributed
from ner_ofa.errors import UserError, logger  # noqa: F401 (every script imports them from here)


SUPPORTED = {
    "paddle": ("3.0", "3.1", "3.2"),  # major.minor; pyproject.toml pins 3.1.1
    "paddlenlp": ("2.8.1",),
    "paddleslim": ("2.6.0",),
}


def _dist_version(*names):
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_versions():
    """Fail with a one-line fix when the installed stack is not the supported one."""
    fix = "install the pinned stack: pip install -e . (in the checkout)"
    paddle_version = _dist_version("paddlepaddle", "paddlepaddle-gpu")
    found = {
        "paddle": paddle_version,
        "paddlenlp": _dist_version("paddlenlp"),
        "paddleslim": _dist_version("paddleslim"),
        "numpy": _dist_version("numpy"),
    }
    problems = []
    if found["paddle"] is None or ".".join(found["paddle"].split(".")[:2]) not in SUPPORTED["paddle"]:
        problems.append(f"paddlepaddle {found['paddle']} (need 3.0-3.2)")
    for name in ("paddlenlp", "paddleslim"):
        if found[name] not in SUPPORTED[name]:
            problems.append(f"{name} {found[name]} (need {SUPPORTED[name][0]})")
    if found["numpy"] is None or int(found["numpy"].split(".")[0]) >= 2:
        problems.append(f"numpy {found['numpy']} (need <2)")
    if problems:
        raise UserError("unsupported package versions: " + ", ".join(problems) + f"; {fix}")
    return found


def setup_logging(rank=0):
    """Our log lines (INFO on rank 0, WARNING elsewhere) on stderr. Paddle/PaddleNLP are imported first: importing
    them reconfigures the root logger, which would silence ours if it happened afterwards."""
    try:
        from paddlenlp.utils.log import logger as nlp_logger

        nlp_logger.set_level("WARNING")  # PaddleNLP logs every config load at INFO; keep our log dense
    except Exception:  # pragma: no cover - logging only
        pass
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr, force=True)


class WithoutKnownNoise:
    """A stderr that drops the known third-party lines that would otherwise bury each stage's first lines:

    * Paddle prints, at import, "WARNING: OMP_NUM_THREADS set to N, not 1 ..." and "PLEASE USE OMP_NUM_THREADS
      WISELY." whenever OMP_NUM_THREADS > 1 -- advice for data-parallel GPU jobs; on the CPU we set the threads on
      purpose.
    Everything else passes through unchanged."""

    NOISE = ("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY.")

    def __init__(self, stream):
        self.stream, self.dropped = stream, False

    def write(self, text):
        if text.startswith(self.NOISE) or (self.dropped and text == "\n"):  # print() writes the newline apart
            self.dropped = text != "\n"
            return len(text)
        self.dropped = False
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def quiet_known_warnings():
    """Silence, at an entry point, the third-party warnings every run printed (each explained here), so the first
    lines a user sees are the project's. Called by :func:`run_main`, never on import."""
    import warnings

    # paddle.utils.cpp_extension warns at import that ccache is missing; nothing here compiles C++ extensions.
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
    # setuptools' distutils shim, imported by Paddle's dependencies, announces itself; harmless.
    warnings.filterwarnings("ignore", message="Setuptools is replacing distutils", category=UserWarning)
    # Paddle's OMP_NUM_THREADS advice (printed, not a warning): see WithoutKnownNoise.
    if not isinstance(sys.stderr, WithoutKnownNoise):
        sys.stderr = WithoutKnownNoise(sys.stderr)
    # (Paddle's C++ "resetting the shape of the uninitialized Tensor" warning came from boolean-mask indexing in
    # the distillation loss, which now uses gather_nd instead.)


def run_main(main, parse_args, argv=None):
    """Run ``main(parse_args(argv))``; bad input becomes one line on stderr and exit code 2."""
    quiet_known_warnings()
    args = parse_args(argv)
    try:
        result = main(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    return result


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help keeps the module docstring's layout and shows every optional flag's default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required or action.default in (None, argparse.SUPPRESS) or "%(default)" in text \
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return text
        return text + " (default: %(default)s)"


def add_model_data_args(parser, model_help, model_default="bert-base-chinese"):
    """The model and data flags of a training stage; ``model_default`` None makes --model_name_or_path required."""
    parser.add_argument("--model_name_or_path", default=model_default, required=model_default is None,
                        help=model_help)
    parser.add_argument("--data_dir", default=None,
                        help="directory with train.* [dev.*] test.* (e.g. train.tsv, train.char.bmes, train.json) "
                             "and optionally labels.txt, in any layout of --data_format; default: download "
                             "PaddleNLP's msra_ner")
    parser.add_argument("--data_format", choices=["auto", "msra", "conll", "jsonl"], default="auto",
                        help="layout of the data files: msra (characters joined by U+0002, TAB, labels joined by "
                             "U+0002), conll (a character and its label a line, blank line between sentences), jsonl "
                             "(CLUENER spans); auto: read from the content. Labels may be BIO, IOB1, BIOES or BMES "
                             "(converted to BIO)")
    for split in ("train", "dev", "test"):
        parser.add_argument(f"--{split}_file", default=None,
                            help=f"the {split} file (default: the {split}.* file in --data_dir)")
    parser.add_argument("--dev_ratio", type=float, default=0.1,
                        help="fraction of train held out (seeded) as dev when the data has no dev split")
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="tokens per window including [CLS]/[SEP]; longer sentences are split, never dropped")
    parser.add_argument("--device", choices=["cpu", "gpu", "xpu"], default="gpu", help="device to run on")
    parser.add_argument("--seed", type=int, default=42, help="random seed (data order, dev split, init)")


def non_negative_int(text):
    """argparse type: a count where 0 means "all" (a negative one is refused before anything runs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or positive, got {value}")
    return value


def add_training_args(parser, lr, epochs):
    parser.add_argument("--batch_size", type=int, default=32, help="sentences (windows) per batch, per card")
    parser.add_argument("--learning_rate", type=float, default=lr, help="peak learning rate of AdamW")
    parser.add_argument("--num_train_epochs", type=float, default=epochs, help="epochs (ignored if --max_steps > 0)")
    parser.add_argument("--max_steps", type=int, default=-1, help="total optimizer steps; > 0 overrides epochs")
    parser.add_argument("--warmup_proportion", type=float, default=0.1, help="linear warm-up fraction of steps")
    parser.add_argument("--weight_decay", type=float, default=0.01, help="AdamW weight decay (not on bias/norm)")
    parser.add_argument("--logging_steps", type=int, default=100, help="log one line every N steps")
    parser.add_argument("--save_steps", type=int, default=500, help="evaluate on dev (and keep the best) every N steps")
    parser.add_argument("--eval_sentences", type=non_negative_int, default=0,
                        help="the dev evaluations during training (which pick the best step) score a fixed seeded "
                             "sample of this many dev sentences; 0: all of dev")
    parser.add_argument("--output_dir", required=True, help="where the best model(s) and metrics go")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/checkpoint/ (weights, optimizer, scheduler, step, best so far)")
    parser.add_argument("--stop_at", type=float, default=None,
                        help="a wall-clock time (seconds since 1970): training stops at the first step after it, "
                             "with a last dev evaluation (compress's budget; the schedule is not stretched)")


def teacher_parser(description=None):
    """Stage 1's flags: run_msra_ner.py parses its command line with this parser, and the MSRA driver what it
    gives stage 1 (to compare with a finished teacher's args.json)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    add_model_data_args(parser, "hub name or a local directory with config.json, vocab.txt and optionally weights "
                                "(none: random init)")
    add_training_args(parser, lr=2e-5, epochs=3)
    return parser


def check_max_seq_length(max_seq_length, config=None):
    """A window holds [CLS], at least one character and [SEP], and no more tokens than the model has positions."""
    if max_seq_length < 3:
        raise UserError(f"--max_seq_length must be at least 3, got {max_seq_length}")
    if isinstance(config, dict):  # a model_info.json that records it
        config = argparse.Namespace(**config) if "max_position_embeddings" in config else None
    if config is not None and max_seq_length > config.max_position_embeddings:
        raise UserError(f"--max_seq_length {max_seq_length} exceeds the model's {config.max_position_embeddings} "
                        "positions")


def add_distillation_args(parser):
    """Stage 2's distillation recipe (compress and scripts/benchmark_msra_cpu.py pass the same flags on)."""
    parser.add_argument("--lambda_logit", type=float, default=1.0, help="weight of the logit distillation loss")
    parser.add_argument("--lambda_rep", type=float, default=0.1, help="weight of the hidden-state distillation loss")
    parser.add_argument("--depth_rep_target", choices=["kept", "last"], default="kept",
                        help="which teacher layer the last layer of a shallower student is distilled towards: "
                             "'kept' (the layer it is, DynaBERT's rule) or 'last' (the teacher's last layer, whose "
                             "output the classifier reads); the other layers always match the layer they are")
    parser.add_argument("--freeze_word_embeddings", action="store_true",
                        help="keep the teacher's word embeddings fixed in stage 2: no gradient, all-reduce or AdamW "
                             "update for the vocabulary table (the largest matrix of a small BERT)")
    parser.add_argument("--unlabeled_file", default=None,
                        help="UTF-8 text, one sentence a line, that stage 2 also distils on (it learns from the "
                             "teacher's outputs, not from labels); lines that are dev or test sentences are dropped. "
                             "Stage 2's epochs then cover both; compress's --ofa_epochs counts the labelled data's")


def distillation_argv(args):
    """The flags of :func:`add_distillation_args` as ``args`` holds them, for a program that starts stage 2."""
    return ["--lambda_logit", str(args.lambda_logit), "--lambda_rep", str(args.lambda_rep),
            "--depth_rep_target", args.depth_rep_target,
            *(["--freeze_word_embeddings"] if args.freeze_word_embeddings else []),
            *(["--unlabeled_file", args.unlabeled_file] if args.unlabeled_file else [])]


def validate_common_args(args):
    check_max_seq_length(args.max_seq_length)
    if getattr(args, "batch_size", 1) <= 0:
        raise UserError(f"--batch_size must be positive, got {args.batch_size}")
    if not 0.0 < args.dev_ratio < 1.0:
        raise UserError(f"--dev_ratio must be in (0, 1), got {args.dev_ratio}")
    for name in ("logging_steps", "save_steps"):
        if getattr(args, name, 1) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    if getattr(args, "eval_sentences", 0) < 0:
        raise UserError(f"--eval_sentences must be 0 (all of dev) or positive, got {args.eval_sentences}")
    out = getattr(args, "output_dir", None)
    if out and os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--output_dir {out} exists and is not a directory")


def start_training_process(args):
    """What every training stage does first: distributed env, logging, versions, flags, device, seed.
    Returns (rank, world_size, versions)."""
    rank, world_size = distributed.init_distributed()
    setup_logging(rank)
    versions = check_versions()
    validate_common_args(args)
    set_device(args.device)
    set_seed(args.seed)
    return rank, world_size, versions


# Uninstall first: both wheels own paddle/, so removing the CPU one after the GPU one deletes the GPU one's files.
GPU_INSTALL = ("pip uninstall -y paddlepaddle && pip install paddlepaddle-gpu==3.1.1 "
               "-i https://www.paddlepaddle.org.cn/packages/stable/cu118/")


def set_device(device):
    import paddle

    if device == "gpu" and not (paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0):
        if not paddle.device.is_compiled_with_cuda():
            raise UserError(f"--device gpu: this Paddle is the CPU-only build; on a CUDA 11.8 machine run "
                            f"{GPU_INSTALL} (see README), or use --device cpu")
        raise UserError("--device gpu: Paddle sees no CUDA GPU; use --device cpu")
    if device == "xpu" and not paddle.device.is_compiled_with_xpu():
        raise UserError("--device xpu: this Paddle build has no XPU support; use --device cpu")
    paddle.set_device(device)


def set_seed(seed):
    import paddle

    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def args_to_dict(args):
    return {k: v for k, v in sorted(vars(args).items())}


def describe_run(args, world_size, versions):
    """One log line: every flag, the number of processes, the package versions."""
    flags = " ".join(f"{k}={v}" for k, v in args_to_dict(args).items())
    return f"{flags} | world_size {world_size} | " + " ".join(f"{k} {v}" for k, v in versions.items())