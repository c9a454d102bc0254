"""Planning a compress run: the step count and evaluation interval of each training stage, either from the epochs
asked for or, with a wall-clock budget, from what a probe of a few steps measured on this machine."""
import math

from ner_ofa.errors import UserError

TEACHER_SHARE = 0.4  # of the training time, when both stages train (the last headline run spent 43 % in stage 1)
MARGIN = 0.92  # the plan fills this fraction of the time left: step times drift on a noisy machine
# what follows training (export, INT8 and timing of every model) cannot be cut short the way a stage's steps can
# (--stop_at): the plan and stage 2's deadline keep RESERVE times its estimate for it (a CI run on a busy machine
# took 243 s of a 240 s budget, its export slower than the probe's when the budget's 8 % was only 12 s)
RESERVE = 2.0
MIN_STEPS = 10


def evaluations_of(steps, save_steps):
    """How many dev evaluations a stage makes: every save_steps, and at the last step."""
    return steps // save_steps + (1 if steps % save_steps else 0)


def save_steps_for(steps, evaluations):
    return max(1, math.ceil(steps / max(1, evaluations)))


def stage_costs(measured):
    """(seconds per step, seconds per dev evaluation, seconds that do not depend on the step count) of a stage,
    from its probe: the stage's timing record plus ``process_seconds``, the wall time of its process(es), and
    ``test_scale`` / ``dev_scale``, how many times more characters the real test and dev splits have than the
    probe's (its test scoring, ``after_training_seconds``, and its evaluations are scaled by them). The first
    step, a warm-up, counts as fixed."""
    steps, first = measured["steps"], measured.get("first_step_seconds", 0.0)
    step = (measured["step_seconds"] - first) / (steps - 1) if steps > 1 else measured["step_seconds"]
    evaluation = measured["evaluation_seconds"] / max(1, measured["evaluations"]) * measured.get("dev_scale", 1.0)
    test = measured.get("after_training_seconds", 0.0)
    fixed = measured["process_seconds"] - step * steps - measured["evaluation_seconds"] - test \
        + test * measured.get("test_scale", 1.0)
    return step, evaluation, max(0.0, fixed)


def stage_tail(measured):
    """Seconds a stage still needs once it stops training: a last dev evaluation and what the stage does after
    training (stage 1's test scoring; stage 2's, without --no_test)."""
    _, evaluation, _ = stage_costs(measured)
    return evaluation + measured.get("after_training_seconds", 0.0) * measured.get("test_scale", 1.0)


def time_to_train(seconds_left, after_seconds):
    """Of ``seconds_left`` in the budget, what the training stages may plan to use: MARGIN of it, and RESERVE times
    the estimate of what follows training kept free."""
    return min(seconds_left * MARGIN, seconds_left - (RESERVE - 1) * after_seconds) - after_seconds


def stop_at(budget_end, plan, stage, measured):
    """The wall-clock time at which ``stage`` ("teacher" or "ofa") must stop training so that what the plan puts
    after it still fits before ``budget_end``: its own last evaluation and after-training work (:func:`stage_tail`),
    then the later parts (the export and timing at RESERVE times their estimate)."""
    after = plan["after_teacher_seconds"] if stage == "teacher" else plan["after_ofa_seconds"]
    return budget_end - after - (RESERVE - 1) * plan["after_ofa_seconds"] - stage_tail(measured[stage])


def stage_seconds(costs, steps, evaluations):
    step, evaluation, fixed = costs
    return fixed + steps * step + evaluations_of(steps, save_steps_for(steps, evaluations)) * evaluation


def steps_within(costs, seconds, evaluations, cap):
    """The most steps (at most ``cap``) whose stage fits in ``seconds``."""
    step, evaluation, fixed = costs
    steps = int((seconds - fixed - evaluations * evaluation) // step) if step > 0 else cap
    steps = min(cap, steps)
    while steps > 1 and stage_seconds(costs, steps, evaluations) > seconds:  # fewer steps, fewer evaluations
        steps -= 1
    return steps


def pair_position(pair, largest, smallest):
    """Where ``pair`` (width, depth) lies between the probe's smallest (0) and largest (1) pair, by width x depth:
    the export, INT8 scoring and inference time of a pair fall about linearly with it (on a Zen 3, m3e-small:
    95, 72, 56, 55, 56, 40 s to export widths 1.0 0.75 0.5 x depths 1.0 0.5; docs/results.md)."""
    low, high = smallest[0] * smallest[1], largest[0] * largest[1]
    return 1.0 if high == low else (pair[0] * pair[1] - low) / (high - low)


def after_training_seconds(measured, pairs, repeats):
    """Export + INT8 of every (width, depth) pair, the teacher's static export, and the timed passes (a warm-up,
    then ``repeats``) of the teacher and of every pair's fp32 and INT8 model. The probe measured the largest and the
    smallest pair ("export_seconds", "smallest_export_seconds"; "passes": {"largest"/"smallest": {"fp32"/"int8":
    [first pass, second pass]}}) and the teacher's export ("teacher_export_seconds"); every other pair is placed
    between the two by :func:`pair_position`. A probe of the largest pair alone (runs started before it measured
    more) counts every pair, and the teacher's export, as the largest pair's (half of it for the teacher's)."""
    largest = max(pairs, key=lambda p: p[0] * p[1])
    smallest = min(pairs, key=lambda p: p[0] * p[1])
    big = measured["export_seconds"]
    small = measured.get("smallest_export_seconds", big)
    one_pass = measured["latency_pass_seconds"]
    passes = measured.get("passes", {size: {kind: [one_pass, one_pass] for kind in ("fp32", "int8")}
                                     for size in ("largest", "smallest")})

    def between(at_largest, at_smallest, pair):
        return at_smallest + (at_largest - at_smallest) * pair_position(pair, largest, smallest)

    def timed(kind, pair):  # the warm-up pass (the first) and ``repeats`` more
        first, later = (between(passes["largest"][kind][i], passes["smallest"][kind][i], pair) for i in (0, 1))
        return first + repeats * later

    export = sum(between(big, small, p) for p in pairs) + measured.get("teacher_export_seconds", 0.5 * big)
    latency = timed("fp32", largest) + sum(timed(kind, p) for p in pairs for kind in ("fp32", "int8"))
    return {"export": round(export, 1), "latency": round(latency, 1)}


def plan(budget_seconds, spent_seconds, measured, pairs, repeats, steps_per_epoch, teacher_epochs,
         ofa_epochs, evaluations, fixed_teacher_steps=0, fixed_ofa_steps=0, ofa_steps_per_epoch=None):
    """Steps for stage 1 (when ``measured`` has a "teacher" probe) and stage 2 so that the run, ``spent_seconds``
    in already, ends within ``budget_seconds``. ``measured``: what the probe timed ({"teacher", "ofa"}: timing
    records; the export and latency times of :func:`after_training_seconds`; ``pairs``: the (width, depth) pairs).
    Each stage gets at most its epochs (``steps_per_epoch`` * epochs; stage 2's epoch is ``ofa_steps_per_epoch``
    when given: with --unlabeled_file it reads more windows than stage 1); when stage 1 reaches its cap the time it
    leaves goes to stage 2, and back. A fixed step count (> 0) is kept as given. A UserError when the budget
    cannot hold MIN_STEPS of each stage."""
    after = after_training_seconds(measured, pairs, repeats)
    left = time_to_train(budget_seconds - spent_seconds, sum(after.values()))
    stages = [s for s in ("teacher", "ofa") if s in measured]
    costs = {s: stage_costs(measured[s]) for s in stages}
    per_epoch = {"teacher": steps_per_epoch, "ofa": ofa_steps_per_epoch or steps_per_epoch}
    caps = {s: max(1, math.ceil(epochs * per_epoch[s])) for s, epochs in (("teacher", teacher_epochs),
                                                                          ("ofa", ofa_epochs))}
    fixed = {"teacher": fixed_teacher_steps, "ofa": fixed_ofa_steps}
    steps = {s: fixed[s] for s in stages if fixed[s] > 0}
    usable = left - sum(stage_seconds(costs[s], n, evaluations) for s, n in steps.items())
    free = [s for s in stages if s not in steps]
    if len(free) == 2:
        share = {"teacher": TEACHER_SHARE, "ofa": 1 - TEACHER_SHARE}
        first = {s: steps_within(costs[s], usable * share[s], evaluations, caps[s]) for s in free}
        for s, other in (("teacher", "ofa"), ("ofa", "teacher")):
            if first[s] == caps[s]:  # capped: what it leaves goes to the other one
                rest = usable - stage_seconds(costs[s], first[s], evaluations)
                first[other] = steps_within(costs[other], rest, evaluations, caps[other])
                break
        steps.update(first)
    elif free:
        steps[free[0]] = steps_within(costs[free[0]], usable, evaluations, caps[free[0]])
    short = [s for s in stages if steps[s] < MIN_STEPS]
    if short:
        needed = spent_seconds + sum(after.values()) + sum(
            stage_seconds(costs[s], max(MIN_STEPS, steps[s]), evaluations) for s in stages)
        raise UserError(f"--budget_minutes {budget_seconds / 60:g} is too small for this data and model on this "
                        f"machine: {MIN_STEPS} steps of each stage need about {math.ceil(needed / 60 / MARGIN)} "
                        f"minutes, of which the export and timing of every model take about {sum(after.values()) / 60:.1f}")
    result = {"budget_seconds": round(budget_seconds, 1), "probe_seconds": round(spent_seconds, 1),
              "steps_per_epoch": steps_per_epoch, "ofa_steps_per_epoch": per_epoch["ofa"], "after_training": after}
    for s in ("teacher", "ofa"):
        if s in steps:
            result[s] = {"steps": steps[s], "save_steps": save_steps_for(steps[s], evaluations),
                         "epochs": round(steps[s] / per_epoch[s], 2),
                         "seconds": round(stage_seconds(costs[s], steps[s], evaluations), 1),
                         "seconds_per_step": round(costs[s][0], 3)}
        else:
            result[s] = {"steps": 0, "save_steps": 1, "epochs": 0.0, "seconds": 0.0}
    result["after_ofa_seconds"] = round(sum(after.values()), 1)
    result["after_teacher_seconds"] = round(result["ofa"]["seconds"] + result["after_ofa_seconds"], 1)
    result["planned_total_seconds"] = round(spent_seconds + result["teacher"]["seconds"]
                                            + result["after_teacher_seconds"], 1)
    return result


SPEED_RATIO_LIMITS = (0.5, 2.0)  # how far a stage-1 run may move stage 2's per-step estimate


def step_seconds(timing):
    """Seconds per step of a timing record (``training.timing_record`` or a probe's), the first step left out."""
    return stage_costs(dict(timing, process_seconds=0.0))[0]


def replan_stage_2(plan, budget_seconds, spent_seconds, measured, ofa_epochs, evaluations, fixed_ofa_steps=0,
                   teacher_timing=None):
    """After stage 1, stage 2's steps again from the time actually left (stage 1 may have taken more or less than
    planned); the plan's estimate of what follows stage 2 stays. With ``teacher_timing`` (stage 1's own timing
    record), stage 2's seconds per step are the probe's scaled by how much faster or slower stage 1's steps ran
    than its probe's (within SPEED_RATIO_LIMITS): the probe's few steps on an idle or busy moment mislead both
    stages alike. Returns the updated plan."""
    if fixed_ofa_steps > 0 or budget_seconds is None:
        return plan
    left = time_to_train(budget_seconds - spent_seconds, plan["after_ofa_seconds"])
    per_epoch = plan.get("ofa_steps_per_epoch") or plan["steps_per_epoch"]
    cap = max(1, math.ceil(ofa_epochs * per_epoch))
    step, evaluation, fixed = stage_costs(measured["ofa"])
    ratio = 1.0
    if teacher_timing and teacher_timing.get("steps", 0) > 1 and "teacher" in measured:
        ratio = step_seconds(teacher_timing) / step_seconds(measured["teacher"])
        ratio = min(max(ratio, SPEED_RATIO_LIMITS[0]), SPEED_RATIO_LIMITS[1])
    costs = (step * ratio, evaluation, fixed)
    steps = max(1, steps_within(costs, left, evaluations, cap))
    if steps == plan["ofa"]["steps"]:
        return plan
    ofa = dict(plan["ofa"], steps=steps, save_steps=save_steps_for(steps, evaluations),
               epochs=round(steps / per_epoch, 2), seconds=round(stage_seconds(costs, steps, evaluations), 1),
               seconds_per_step=round(costs[0], 3), planned_before_stage_1=plan["ofa"]["steps"],
               stage_1_speed_ratio=round(ratio, 3))
    after_teacher = round(ofa["seconds"] + plan["after_ofa_seconds"], 1)
    return dict(plan, ofa=ofa, after_teacher_seconds=after_teacher,
                planned_total_seconds=round(spent_seconds + after_teacher, 1))


def unplanned(steps_per_epoch, teacher_epochs, ofa_epochs, teacher_steps, ofa_steps, evaluations,
              ofa_steps_per_epoch=None):
    """Without a budget: the steps the flags ask for, and no time estimates."""
    per_epoch = {"teacher": steps_per_epoch, "ofa": ofa_steps_per_epoch or steps_per_epoch}
    result = {"budget_seconds": None, "steps_per_epoch": steps_per_epoch, "ofa_steps_per_epoch": per_epoch["ofa"]}
    for s, epochs, fixed in (("teacher", teacher_epochs, teacher_steps), ("ofa", ofa_epochs, ofa_steps)):
        steps = fixed if fixed > 0 else max(1, math.ceil(epochs * per_epoch[s]))
        result[s] = {"steps": steps, "save_steps": save_steps_for(steps, evaluations),
                     "epochs": round(steps / per_epoch[s], 2)}
    return result


def describe(plan):
    parts = []
    for s, title in (("teacher", "stage 1"), ("ofa", "stage 2")):
        p = plan[s]
        if p.get("skipped"):
            parts.append(f"{title} skipped")
        else:
            parts.append(f"{title} {p['steps']} steps ({p['epochs']} epochs, dev every {p['save_steps']})"
                         + (f" ~{p['seconds'] / 60:.1f} min" if "seconds" in p else ""))
    if plan.get("budget_seconds"):
        parts.append(f"export and timing ~{plan['after_ofa_seconds'] / 60:.1f} min; the run ~"
                     f"{plan['planned_total_seconds'] / 60:.1f} of {plan['budget_seconds'] / 60:g} min")
    return "; ".join(parts)
