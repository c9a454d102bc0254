"""Print the README's result tables (Markdown) from results/msra_cpu.json and results/benchmark_cpu.json."""
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def msra_table(path):
    r = json.load(open(path))
    lines = ["| model | parameters | dev F1 | test P | test R | test F1 | F1 vs teacher | latency (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        lines.append(f"| {row['name']} | {row['parameters']:,} | {row['dev_f1']:.4f} | {row['test_precision']:.4f} | "
                     f"{row['test_recall']:.4f} | {row['test_f1']:.4f} | {100 * row['f1_vs_teacher']:.2f} % | "
                     f"{row['latency_seconds']:.3f} |")
    s = r["stage_seconds"]
    lines.append("")
    lines.append(f"Teacher {r['teacher_config']} trained {r['teacher_steps']} steps (best dev step); wall time: teacher "
                 f"{s['teacher'] / 60:.1f} min, OFA {s['ofa'] / 60:.1f} min, export {s['export'] / 60:.1f} min. "
                 f"Hardware: {r['hardware']}. Latency: {r['latency_workload']['characters']:,} characters, "
                 f"{r['latency_workload']['threads']} threads, batch {r['latency_workload']['batch_size']}.")
    return "\n".join(lines)


def bench_table(path):
    r = json.load(open(path))
    lines = ["| path | width | precision | graph | seconds | vs dygraph teacher | vs static teacher |",
             "|---|---:|---|---|---:|---:|---:|"]
    for row in r["rows"]:
        lines.append(f"| {row['name']} | {row['width']} | {row['precision']} | {row['graph']} | {row['seconds']:.2f} | "
                     f"{row['speedup_vs_dynamic_teacher']:.2f}x | {row['speedup_vs_static_teacher']:.2f}x |")
    w = r["workload"]
    lines.append("")
    lines.append(f"{w['characters']:,} characters in {w['texts']} texts, {w['threads']} threads, windows of "
                 f"{w['max_seq_length']} tokens, batch {w['batch_size']}, median of {w['repeats']}; models: "
                 f"{w['models']}; {r['hardware']}.")
    return "\n".join(lines)


if __name__ == "__main__":
    for name, fn in (("msra_cpu.json", msra_table), ("benchmark_cpu.json", bench_table),
                     ("benchmark_cpu_msra.json", bench_table)):
        path = os.path.join(REPO, "results", name)
        if os.path.isfile(path):
            print(f"### {name}\n\n{fn(path)}\n")
    sys.exit(0)
