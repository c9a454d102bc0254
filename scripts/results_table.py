"""Print the result tables of README.md and docs/results.md (Markdown) from the JSON files in results/."""
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def markdown_table(columns, cells):
    """``columns``: (title, right-aligned?) pairs; ``cells``: one list of strings per row."""
    lines = ["| " + " | ".join(title for title, _ in columns) + " |",
             "|" + "|".join("---:" if right else "---" for _, right in columns) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in cells]


def msra_table(path):
    r = json.load(open(path))

    def cell(row, key, fmt):
        return format(row[key], fmt) if row.get(key) is not None else "—"

    lac = next((row["latency_seconds"] for row in r["rows"] if row["name"] == "LAC"), None)
    columns = [("model", False)] + [(title, True) for title in ("parameters", "dev F1", "test P", "test R", "test F1",
                                                                 "F1 vs teacher", "latency (s)", "time vs LAC")]
    lines = markdown_table(columns, [[row["name"], cell(row, "parameters", ","), cell(row, "dev_f1", ".4f"),
                                      cell(row, "test_precision", ".4f"), cell(row, "test_recall", ".4f"),
                                      cell(row, "test_f1", ".4f"),
                                      f"{100 * row['f1_vs_teacher']:.2f} %" if row.get("f1_vs_teacher") else "—",
                                      cell(row, "latency_seconds", ".3f"),
                                      f"{row['latency_seconds'] / lac:.2f}x" if lac else "—"] for row in r["rows"]])
    s = r["stage_seconds"]
    # files written by compress keep the step counts in "plan" and one export time per pair
    teacher_steps = r.get("teacher_steps") or r["plan"]["teacher"]["steps"]
    export = s.get("export", sum(v for k, v in s.items() if k.startswith("export/")))
    lines.append("")
    lines.append(f"Teacher {r['teacher_config']} trained {teacher_steps} steps (best dev step); wall time: teacher "
                 f"{s['teacher'] / 60:.1f} min, OFA {s['ofa'] / 60:.1f} min, export {export / 60:.1f} min. "
                 f"Hardware: {r['hardware']}. Latency: {r['latency_workload']['characters']:,} characters, "
                 f"{r['latency_workload']['threads']} threads, batch {r['latency_workload']['batch_size']}.")
    return "\n".join(lines)


def headline_table(path):
    """The README's compact table: test F1, share of the teacher's, seconds for the workload, time against LAC."""
    r = json.load(open(path))
    lac = next((row["latency_seconds"] for row in r["rows"] if row["name"] == "LAC"), None)
    columns = [("model", False), ("parameters", True), ("MSRA test F1", True), ("vs teacher", True),
               ("seconds for 10,451 chars", True), ("time vs LAC", True)]
    return "\n".join(markdown_table(columns, [
        [row["name"], format(row["parameters"], ",") if row.get("parameters") else "—", f"{row['test_f1']:.4f}",
         f"{100 * row['f1_vs_teacher']:.1f} %" if row.get("f1_vs_teacher") else "—", f"{row['latency_seconds']:.3f}",
         f"{row['latency_seconds'] / lac:.2f}x" if lac else "—"] for row in r["rows"]]))


def serve_attack_table(path):
    r = json.load(open(path))
    if "attack_phases" not in r:
        return "(no attack phases in this file)"
    columns = [("phase", False), ("good requests", True), ("errors", True), ("texts/s", True), ("p50 ms", True),
               ("p99 ms", True), ("p99 vs alone", True), ("server RSS MiB", True), ("what the attacker got", False)]
    lines = markdown_table(columns, [[p["attack"], str(p["requests"]), str(p["errors"]), f"{p['texts_per_s']:.1f}",
                                      f"{p['p50_ms']:.1f}", f"{p['p99_ms']:.1f}",
                                      f"{p['p99_vs_alone']:.2f}x" if "p99_vs_alone" in p else "—",
                                      f"{p['server_rss_mib']:.0f}",
                                      ", ".join(f"{k}: {v}" for k, v in sorted(p["attacker_outcomes"].items())) or "—"]
                                     for p in r.get("attack_phases", [])])
    lines.append("")
    lines.append(f"{r['attack_workload']}; {r['hardware']}.")
    return "\n".join(lines)


def bench_table(path):
    r = json.load(open(path))
    columns = [("path", False), ("width", True), ("depth", True), ("precision", False), ("graph", False),
               ("seconds", True), ("vs dygraph teacher", True), ("vs static teacher", True)]
    lines = markdown_table(columns, [[row["name"], str(row.get("width") or "—"), str(row.get("depth") or "—"),
                                      row["precision"], row.get("graph") or "—", f"{row['seconds']:.2f}",
                                      f"{row['speedup_vs_dynamic_teacher']:.2f}x",
                                      f"{row['speedup_vs_static_teacher']:.2f}x"] for row in r["rows"]])
    w = r["workload"]
    lines.append("")
    lines.append(f"{w['characters']:,} characters in {w['texts']} texts, {w['threads']} threads, windows of "
                 f"{w['max_seq_length']} tokens, batch {w['batch_size']}, median of {w['repeats']}; models: "
                 f"{w['models']}; {r['hardware']}.")
    return "\n".join(lines)


if __name__ == "__main__":
    for name, fn in (("msra_pretrained_cpu.json", headline_table), ("msra_pretrained_cpu.json", msra_table),
                     ("msra_cpu.json", msra_table),
                     ("benchmark_cpu.json", bench_table), ("serve_cpu.json", serve_attack_table)):
        path = os.path.join(REPO, "results", name)
        if os.path.isfile(path):
            print(f"### {name}\n\n{fn(path)}\n")
    sys.exit(0)
