"""Stage 3: cut the sub-model of one width out of the OFA supernet and save it for deployment.

    python -u ./export_model_msra_ner_ofa.py --model_type bert --model_name_or_path ../tmp/msra_ner_ofa/model_0.5 \\
        --max_seq_length 128 --sub_model_output_dir ../tmp/msra_ner_ofa/model_0.5/dynamic_model \\
        --static_sub_model ../tmp/msra_ner_ofa/model_0.5/static_model --n_gpu 1 --width_mult 0.5

Writes SUB_MODEL_OUTPUT_DIR (the pruned dygraph model: weights, config with the kept heads/neurons, tokenizer,
model_info.json with its parameter count and the supernet's; loadable again for evaluation and predict.py) and,
unless --static_sub_model is None, STATIC_SUB_MODEL.json + .pdiparams (Paddle Inference, dynamic batch and sequence
length) with STATIC_SUB_MODEL.info.json beside them (and the tokenizer and model_info.json, unless that directory
is the supernet's own). Both may go inside the supernet's model_<width>/, as in the original layout above; the
supernet's own files are only read. Parity: on a padded batch of three lengths, the logits of what is deployed --
the static model run by Paddle Inference with oneDNN (as predict, quantize and benchmark run it) and the dygraph
sub-model reloaded from disk -- are compared with an independent reference, the supernet itself running at
--width_mult; a difference above --parity_atol fails the export.
"""
import argparse
import os

import numpy as np

from ner_ofa.features import CharEncoder, collate
from ner_ofa import backends, cli, model_io, supernet
from ner_ofa.cli import UserError, logger


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("--model_type", default="bert", choices=["bert"], help="model family")
    parser.add_argument("--model_name_or_path", required=True,
                        help="a supernet directory: run_msra_ner_ofa.py's OUTPUT_DIR/model_<width>")
    parser.add_argument("--max_seq_length", type=int, default=None,
                        help="window length recorded for predict.py and used by the parity check (default: the "
                             "supernet's, from its model_info.json; the static graph takes any length)")
    parser.add_argument("--sub_model_output_dir", required=True, help="where the pruned dygraph sub-model goes")
    parser.add_argument("--static_sub_model", default=None,
                        help="path prefix of the static model (PREFIX.json/.pdiparams); 'None' or unset: skip")
    parser.add_argument("--width_mult", type=float, required=True, help="width to cut; must be in the supernet's list")
    parser.add_argument("--depth_mult", type=float, default=1.0,
                        help="depth to cut (the layers ner_ofa.supernet.kept_layers keeps); must be in the supernet's "
                             "depth list")
    parser.add_argument("--device", choices=["cpu", "gpu", "xpu"], default=None,
                        help="device for the export (default: from --n_gpu if given, else cpu); wins over --n_gpu")
    parser.add_argument("--n_gpu", type=int, default=None,
                        help="original flag, kept for old commands: 0 means cpu, >0 gpu, unless --device is given")
    parser.add_argument("--parity_atol", type=float, default=1e-4, help="max |static - dygraph| logit difference")
    return parser.parse_args(argv)


def resolve_device(args):
    """An explicit --device wins; else the original --n_gpu (0: cpu, >0: gpu); else cpu."""
    if args.device is not None:
        return args.device
    if args.n_gpu is not None:
        return "gpu" if args.n_gpu > 0 else "cpu"
    return "cpu"


def parity_batch(encoder, max_seq_length):
    """Three random sequences (full window, half, one character), padded into one batch."""
    rng = np.random.RandomState(0)
    lengths = [max_seq_length - 2, max(1, (max_seq_length - 2) // 2), 1]
    vocab_ids = np.arange(max(encoder.token_to_id.values()) + 1)
    features = [(rng.choice(vocab_ids[5:], size=n).tolist(), None) for n in lengths]
    return collate(features, encoder)[0]


def check_parity(reference, candidate_fn, input_ids, atol, what):
    """Max |candidate_fn(input_ids) - reference| over all logits (reference: the supernet's logits for
    ``input_ids``); fails above ``atol``."""
    diff = float(np.abs(candidate_fn(input_ids) - reference).max())
    if not np.isfinite(diff) or diff > atol:
        raise RuntimeError(f"{what}: logits differ from the supernet at this width by {diff:.3g} (> {atol})")
    return diff


def main(args):
    cli.setup_logging()
    cli.check_versions()
    args.device = resolve_device(args)
    if args.max_seq_length is not None:
        cli.check_max_seq_length(args.max_seq_length)
    static_prefix = None if args.static_sub_model in (None, "None", "none", "") else args.static_sub_model
    check_outputs(args, static_prefix)
    cli.set_device(args.device)

    # 1. the supernet at --width_mult, and the sub-model cut out of it
    supernet_model, tokenizer, supernet_info = model_io.load_model_dir(args.model_name_or_path, ["supernet"])
    widths = supernet_info["width_mult_list"]
    if args.width_mult not in widths:
        raise UserError(f"--width_mult {args.width_mult} is not one of the supernet's widths {widths}")
    depths = supernet_info.get("depth_mult_list", [1.0])
    if args.depth_mult not in depths:
        raise UserError(f"--depth_mult {args.depth_mult} is not one of the supernet's depths {depths}")
    kept_for = (supernet_info["width_mult"], supernet_info.get("depth_mult", 1.0))
    if (args.width_mult, args.depth_mult) != kept_for:
        logger.warning("%s holds the weights that were best for width %s depth %s; cutting width %s depth %s from "
                       "them", args.model_name_or_path, *kept_for, args.width_mult, args.depth_mult)
    config = supernet_model.bert.config
    supernet.check_recorded_kept_layers(supernet_info, config.num_hidden_layers, args.model_name_or_path)
    args.max_seq_length = args.max_seq_length or supernet_info.get("max_seq_length", 128)
    cli.check_max_seq_length(args.max_seq_length, config)
    full_params = model_io.count_parameters(supernet_model)
    ofa_model = supernet.build_supernet(supernet_model, widths)
    sub_model, sub_config = supernet.cut_sub_model(ofa_model, config, args.width_mult, args.depth_mult)
    kept = sub_config.ofa_sub_model
    sub_params = model_io.count_parameters(sub_model)
    logger.info("width %s depth %s: %d/%d heads, %d/%d FFN neurons per layer, layers %s of %d | %d of %d parameters "
                "(%.1f%%)", args.width_mult, args.depth_mult, kept["num_heads"], config.num_attention_heads,
                kept["intermediate_size"], config.intermediate_size, kept["kept_layers"], config.num_hidden_layers,
                sub_params, full_params, 100.0 * sub_params / full_params)
    parity_ids = parity_batch(CharEncoder(tokenizer), args.max_seq_length)
    with supernet.at_depth(ofa_model, args.depth_mult):  # the supernet at --width_mult (cut_sub_model set it)
        reference = backends.dynamic_logits_fn(ofa_model)(parity_ids)

    # 2. the dygraph sub-model, reloaded from disk and checked against the supernet
    sub_info = {"kind": "sub_model", "labels": supernet_info["labels"], "max_seq_length": args.max_seq_length,
                "width_mult": args.width_mult, "depth_mult": args.depth_mult, "num_heads": kept["num_heads"],
                "intermediate_size": kept["intermediate_size"], "num_layers": len(kept["kept_layers"]),
                "kept_layers": kept["kept_layers"], "parameters": sub_params, "supernet_parameters": full_params,
                "max_position_embeddings": config.max_position_embeddings,
                "supernet": args.model_name_or_path}
    model_io.save_model_dir(args.sub_model_output_dir, sub_config, sub_model.state_dict(), tokenizer, sub_info,
                            args=cli.args_to_dict(args))
    reloaded, _, _ = model_io.load_model_dir(args.sub_model_output_dir, ["sub_model"])
    reloaded.eval()
    dygraph_diff = check_parity(reference, backends.dynamic_logits_fn(reloaded), parity_ids, args.parity_atol,
                                f"dygraph sub-model {args.sub_model_output_dir}")
    logger.info("dygraph sub-model: %s | vs the supernet at width %s depth %s: max |diff| %.2e",
                args.sub_model_output_dir, args.width_mult, args.depth_mult, dygraph_diff)
    result = {"sub_model_output_dir": args.sub_model_output_dir, "width_mult": args.width_mult,
              "depth_mult": args.depth_mult,
              "parameters": sub_params, "supernet_parameters": full_params, "dygraph_max_abs_diff": dygraph_diff}

    # 3. the static model, run as predict/quantize/benchmark run it, checked against the supernet
    if static_prefix:
        diff = export_static_checked(reloaded, static_prefix, reference, parity_ids, args.parity_atol)
        backends.write_static_info(static_prefix, tokenizer, sub_info)
        logger.info("static model: %s.json/.pdiparams | Paddle Inference + oneDNN vs the supernet at width %s: "
                    "max |diff| %.2e", static_prefix, args.width_mult, diff)
        result.update(static_sub_model=static_prefix, parity_max_abs_diff=diff)
    return result


def check_outputs(args, static_prefix):
    """Outputs may go inside the supernet directory (the original layout: model_0.5/dynamic_model and
    model_0.5/static_model) but never replace it or one of its own files."""
    source = os.path.abspath(args.model_name_or_path)
    sub_dir = os.path.abspath(args.sub_model_output_dir)
    if sub_dir == source or source.startswith(sub_dir + os.sep):
        raise UserError(f"--sub_model_output_dir {args.sub_model_output_dir} would replace the supernet directory "
                        f"{args.model_name_or_path} it is cut from; choose another place")
    if os.path.isdir(sub_dir) and os.listdir(sub_dir):
        info = model_io.read_model_info(sub_dir)
        if info is None or info.get("kind") != "sub_model":
            what = f"a {info.get('kind')} model" if info else "files that are not a sub-model this script wrote"
            raise UserError(f"--sub_model_output_dir {args.sub_model_output_dir} exists and holds {what}; it would be "
                            "replaced: give a new or empty directory (or one of this script's sub-model directories)")
    outputs = [sub_dir]
    if static_prefix:
        static_files = [os.path.abspath(p) for p in (*backends.static_paths(static_prefix),
                                                     backends.static_info_path(static_prefix))]
        own = [p for p in static_files if os.path.dirname(p) == source and os.path.basename(p) in SUPERNET_FILES]
        if own:
            raise UserError(f"--static_sub_model {static_prefix} would overwrite the supernet's "
                            f"{os.path.basename(own[0])}; choose another name")
        outputs.append(os.path.dirname(static_files[0]))
    for out in outputs:
        if os.path.exists(out) and not os.path.isdir(out):
            raise UserError(f"{out} exists and is not a directory")


SUPERNET_FILES = {"config.json", model_io.WEIGHTS_NAME, model_io.INFO_NAME, "metrics.json", "args.json", "vocab.txt",
                  "tokenizer_config.json", "special_tokens_map.json"}


def export_static_checked(model, static_prefix, reference, parity_ids, atol):
    """Save ``model`` as a static graph next to ``static_prefix`` under a temporary name, check Paddle Inference
    with oneDNN against ``reference``, and only then move it into place. Returns the max |diff|."""
    import paddle

    static_dir = os.path.dirname(os.path.abspath(static_prefix))
    os.makedirs(static_dir, exist_ok=True)
    tmp_prefix = os.path.join(static_dir, f".export{os.getpid()}")
    paddle.set_device("cpu")
    backends.save_static(model, tmp_prefix)
    try:
        static_fn = backends.static_logits_fn(tmp_prefix, device="cpu", mkldnn=True)
        diff = check_parity(reference, static_fn, parity_ids, atol, "static model (oneDNN)")
    except Exception:
        for path in backends.static_paths(tmp_prefix):
            if os.path.exists(path):
                os.remove(path)
        raise
    for tmp_path, path in zip(backends.static_paths(tmp_prefix), backends.static_paths(static_prefix)):
        os.replace(tmp_path, path)
    return diff


if __name__ == "__main__":
    cli.run_main(main, parse_args)
