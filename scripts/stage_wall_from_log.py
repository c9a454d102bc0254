"""Where a pipeline's training wall time goes, read from its two stages' train.log files, and how many steps it would
fit in a given time: per stage, the start-up before the first step (data, model, importance), the seconds of a
training step, of a dev evaluation and after the last one (test scoring, the summary). It reads the log lines every
version of the stages writes ("step N/M ... | S s/step", "dev step N ..."), so an older checkout's run is measured
the same way as today's. Prints JSON.

    python scripts/stage_wall_from_log.py --teacher_log OLD/teacher/train.log --ofa_log OLD/ofa/train.log \\
        --teacher_steps 1000 --teacher_evaluations 2 --ofa_steps 600 --ofa_evaluations 2 --budget_seconds 5800

The projection assumes each part costs what it cost in the logs: a step its mean, an evaluation its mean, start-up
and after-training once per stage. Log times are to the second, and the seconds before a stage's first log line
(Python imports) are not in its log.
"""
import argparse
import datetime
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ner_ofa import cli  # noqa: E402

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:,\d+)? [A-Z]+ (.*)$")
STEP = re.compile(r"^step (\d+)/\d+ .*\| ([0-9.]+) s/step")
DEV = re.compile(r"^dev step (\d+) ")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--teacher_log", required=True, help="stage 1's OUTPUT_DIR/train.log")
    p.add_argument("--ofa_log", required=True, help="stage 2's OUTPUT_DIR/train.log")
    p.add_argument("--teacher_steps", type=int, default=0, help="stage-1 steps of the projected recipe (0: none)")
    p.add_argument("--teacher_evaluations", type=int, default=0, help="stage-1 dev evaluations of the recipe")
    p.add_argument("--ofa_steps", type=int, default=0, help="stage-2 steps of the projected recipe")
    p.add_argument("--ofa_evaluations", type=int, default=0, help="stage-2 dev evaluations of the recipe")
    p.add_argument("--budget_seconds", type=float, default=0.0,
                   help="> 0: also the steps both stages fit in this much wall, in the recipe's ratio of stage-1 "
                        "to stage-2 steps and with its evaluations")
    args = p.parse_args(argv)
    for path in (args.teacher_log, args.ofa_log):
        if not os.path.isfile(path):
            p.error(f"{path} not found")
    return args


def read_log(path):
    """[(seconds since the log's first line, message)] of the timestamped lines of ``path``."""
    lines, first = [], None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            first = t if first is None else first
            lines.append((t - first, m.group(2)))
    return lines


def stage_parts(lines):
    """One stage's wall by part, from its log lines (see the module docstring). Between two step lines, the time
    their steps do not explain (at the later line's rate) goes to the evaluations logged between them (checkpoint
    saves included); an evaluation after the last step line ends at its own line. One logged before any step line is
    counted, and its time taken as the mean of the others."""
    step_lines = [(t, int(m.group(1)), float(m.group(2))) for t, m in ((t, STEP.match(x)) for t, x in lines) if m]
    dev_lines = [(t, int(m.group(1))) for t, m in ((t, DEV.match(x)) for t, x in lines) if m]
    if not step_lines:
        raise cli.UserError("no 'step N/M ... s/step' line in the log: is it a training stage's train.log?")
    step_seconds, evaluations, early = 0.0, [], 0
    previous = None
    for t, step, rate in step_lines:
        done = previous[1] if previous else 0
        step_seconds += (step - done) * rate
        inside = [d for d in dev_lines if (previous is None or d[0] > previous[0]) and d[0] <= t]
        if previous is None:
            early = len(inside)
        elif inside:
            gap = t - previous[0] - (step - done) * rate
            evaluations += [gap / len(inside)] * len(inside)
        previous = (t, step, rate)
    t_last, step_last, rate_last = step_lines[-1]
    anchor = (t_last, step_last)
    for t, step in dev_lines:
        if t > t_last:
            evaluations.append(t - anchor[0] - (step - anchor[1]) * rate_last)
            anchor = (t, step)
    steps = step_last
    per_evaluation = sum(evaluations) / len(evaluations) if evaluations else 0.0
    first_time, first_step, _ = step_lines[0]
    startup = first_time - first_step * (step_seconds / steps) - early * per_evaluation
    end = lines[-1][0]
    return {"wall_seconds": round(end, 1), "startup_seconds": round(max(0.0, startup), 1), "steps": steps,
            "seconds_per_step": round(step_seconds / steps, 3), "evaluations": len(evaluations) + early,
            "seconds_per_evaluation": round(per_evaluation, 1),
            "after_training_seconds": round(end - anchor[0], 1)}


def recipe_wall(stages, steps, evaluations):
    """Wall seconds of both stages at ``steps`` and ``evaluations`` ({stage: n}), each part at its logged cost."""
    total = 0.0
    for name, parts in stages.items():
        total += parts["startup_seconds"] + parts["after_training_seconds"] + steps[name] * parts["seconds_per_step"]
        total += evaluations[name] * (parts["seconds_per_evaluation"])
    return total


def main(args):
    stages = {"teacher": stage_parts(read_log(args.teacher_log)), "ofa": stage_parts(read_log(args.ofa_log))}
    result = {"logs": {"teacher": os.path.abspath(args.teacher_log), "ofa": os.path.abspath(args.ofa_log)},
              "stages": stages}
    steps = {"teacher": args.teacher_steps, "ofa": args.ofa_steps}
    evaluations = {"teacher": args.teacher_evaluations, "ofa": args.ofa_evaluations}
    if sum(steps.values()):
        result["recipe"] = {"steps": steps, "evaluations": evaluations,
                            "projected_wall_seconds": round(recipe_wall(stages, steps, evaluations), 1)}
        if args.budget_seconds > 0:
            fixed = recipe_wall(stages, {"teacher": 0, "ofa": 0}, evaluations)
            per_recipe = recipe_wall(stages, steps, {"teacher": 0, "ofa": 0}) - recipe_wall(
                stages, {"teacher": 0, "ofa": 0}, {"teacher": 0, "ofa": 0})
            scale = max(0.0, args.budget_seconds - fixed) / per_recipe
            result["budget"] = {"seconds": args.budget_seconds,
                                "steps": {name: int(n * scale) for name, n in steps.items()}}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    cli.run_main(main, parse_args)
