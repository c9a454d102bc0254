"""Generate a small synthetic Chinese NER dataset and a tiny BERT config, for the CPU demo and the tests.

Sentences are built from templates with four entity types (PER, LOC, ORG, TIME); some are joined into long
sentences so that windowing is exercised. Everything is made in code from the lists below -- no real data.

    python demo_data.py --output_dir demo_data            # writes data/ and tiny_bert/
"""
import argparse
import json
import os
import random

from ner_ofa import cli
from ner_ofa.data import write_ner_file

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"
PLACES = ["北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安", "重庆", "天津", "苏州", "长沙", "青岛",
          "大连", "厦门", "昆明", "沈阳", "济南", "郑州"]
PLACE_SUFFIX = ["", "市", "省", "县"]
ORG_SUFFIX = ["大学", "银行", "公司", "医院", "研究所", "电视台", "日报社"]
ORG_PREFIX = ["人民", "科技", "第一", "国际", "华夏", "长江", "东方"]
MONTHS = "一二三四五六七八九十"
FILLERS = ["今天", "我们", "认为", "这个", "问题", "已经", "得到", "解决", "大家", "表示", "非常", "满意", "会议",
           "讨论", "发展", "经济", "文化", "交流", "合作", "项目"]
TEMPLATES = [
    "{PER}在{LOC}的{ORG}工作。",
    "{TIME}，{PER}访问了{LOC}。",
    "{ORG}的代表{PER}表示，{F}{F}。",
    "据{ORG}消息，{TIME}{LOC}{F}{F}。",
    "{PER}和{PER}一起去了{LOC}{F}。",
    "{F}{F}，{LOC}和{LOC}的{ORG}{F}。",
    "{TIME}，{ORG}在{LOC}举行{F}。",
    "{F}{F}{F}。",
]


def _person(rng):
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice([1, 2])))


def _place(rng):
    return rng.choice(PLACES) + rng.choice(PLACE_SUFFIX)


def _org(rng):
    return rng.choice([rng.choice(PLACES), rng.choice(ORG_PREFIX)]) + rng.choice(ORG_SUFFIX)


def _time(rng):
    return rng.choice(MONTHS) + "月" + rng.choice(MONTHS) + "日"


MAKERS = {"PER": _person, "LOC": _place, "ORG": _org, "TIME": _time}


def make_sentence(rng):
    """One templated sentence as (chars, labels)."""
    template = rng.choice(TEMPLATES)
    chars, labels = [], []
    i = 0
    while i < len(template):
        if template[i] == "{":
            j = template.index("}", i)
            slot = template[i + 1:j]
            if slot == "F":
                piece = rng.choice(FILLERS)
                chars += list(piece)
                labels += ["O"] * len(piece)
            else:
                piece = MAKERS[slot](rng)
                chars += list(piece)
                labels += [f"B-{slot}"] + [f"I-{slot}"] * (len(piece) - 1)
            i = j + 1
        else:
            chars.append(template[i])
            labels.append("O")
            i += 1
    return chars, labels


def make_examples(n, seed, long_every=3, long_parts=6):
    """``n`` sentences; every ``long_every``-th one joins ``long_parts`` templates (a long sentence)."""
    rng = random.Random(seed)
    examples = []
    for k in range(n):
        parts = long_parts if long_every and k % long_every == long_every - 1 else 1
        chars, labels = [], []
        for _ in range(parts):
            c, lab = make_sentence(rng)
            chars += c
            labels += lab
        examples.append({"chars": chars, "labels": labels})
    return examples


def demo_vocab():
    chars = set("".join(SURNAMES + GIVEN + MONTHS) + "".join(PLACES + PLACE_SUFFIX + ORG_SUFFIX + ORG_PREFIX + FILLERS))
    for template in TEMPLATES:
        chars.update(c for c in template if c not in "{}PERLOCRGTIMF")
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(chars)


def tiny_bert_config(vocab_size, hidden_size=128, num_layers=2, num_heads=4, intermediate_size=256,
                     max_position_embeddings=128):
    return {"model_type": "bert", "vocab_size": vocab_size, "hidden_size": hidden_size,
            "num_hidden_layers": num_layers, "num_attention_heads": num_heads, "intermediate_size": intermediate_size,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": max_position_embeddings, "type_vocab_size": 2, "initializer_range": 0.02,
            "pad_token_id": 0, "layer_norm_eps": 1e-12}


def write_demo(output_dir, n_train=1200, n_dev=150, n_test=150, seed=0, **config_overrides):
    """Write ``output_dir/data/{train,dev,test}.tsv`` and ``output_dir/tiny_bert/{config.json,vocab.txt}``."""
    data_dir, model_dir = os.path.join(output_dir, "data"), os.path.join(output_dir, "tiny_bert")
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(model_dir, exist_ok=True)
    for split, n, split_seed in (("train", n_train, seed), ("dev", n_dev, seed + 1), ("test", n_test, seed + 2)):
        write_ner_file(os.path.join(data_dir, f"{split}.tsv"), make_examples(n, split_seed))
    vocab = demo_vocab()
    with open(os.path.join(model_dir, "vocab.txt"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(vocab) + "\n")
    with open(os.path.join(model_dir, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(tiny_bert_config(len(vocab), **config_overrides), handle, indent=2)
    return data_dir, model_dir


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("--output_dir", required=True, help="where data/ and tiny_bert/ are written")
    parser.add_argument("--n_train", type=int, default=1200, help="training sentences")
    parser.add_argument("--n_dev", type=int, default=150, help="dev sentences")
    parser.add_argument("--n_test", type=int, default=150, help="test sentences")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    return parser.parse_args(argv)


def main(args):
    data_dir, model_dir = write_demo(args.output_dir, args.n_train, args.n_dev, args.n_test, args.seed)
    print(f"data: {data_dir}\ntiny BERT config + vocab: {model_dir}")
    return {"data_dir": data_dir, "model_dir": model_dir}


if __name__ == "__main__":
    main(parse_args())
