"""compress's budget planner on made-up probe times, checked against step counts worked out by hand."""
import pytest

from ner_ofa import planner
from ner_ofa.cli import UserError

# stage 1: 1 s a step, 10 s an evaluation, 30 s that do not depend on the steps (46 s for 6 steps + 1 evaluation);
# stage 2: 2 s, 20 s, 60 s
MEASURED = {"teacher": {"steps": 6, "step_seconds": 6.0, "first_step_seconds": 1.0, "evaluations": 1,
                        "evaluation_seconds": 10.0, "process_seconds": 46.0},
            "ofa": {"steps": 6, "step_seconds": 12.0, "first_step_seconds": 2.0, "evaluations": 1,
                    "evaluation_seconds": 20.0, "process_seconds": 92.0},
            "export_seconds": 10.0, "latency_pass_seconds": 1.0}
# 4 pairs, a probe of the largest alone (every pair costs as much): export 10 * 4.5 = 45 s; 9 models timed 1 + 3
# times at 1 s = 36 s; so 81 s after training
PAIRS = [(1.0, 1.0), (0.5, 1.0), (1.0, 0.5), (0.5, 0.5)]
ARGS = dict(pairs=PAIRS, repeats=3, steps_per_epoch=100, evaluations=8)


def make_plan(budget=3600.0, spent=100.0, measured=MEASURED, teacher_epochs=20, ofa_epochs=20, **fixed):
    return planner.plan(budget, spent, measured, teacher_epochs=teacher_epochs, ofa_epochs=ofa_epochs, **ARGS,
                        **fixed)


def test_costs_from_a_probe():
    assert planner.stage_costs(MEASURED["teacher"]) == (1.0, 10.0, 30.0)
    assert planner.stage_costs(MEASURED["ofa"]) == (2.0, 20.0, 60.0)
    # a first step of 3 s is a warm-up: the other 5 give the pace, its extra 2 s count as fixed
    warm = dict(MEASURED["teacher"], step_seconds=8.0, first_step_seconds=3.0, process_seconds=48.0)
    assert planner.stage_costs(warm) == (1.0, 10.0, 32.0)
    # the probe scored a test split 4 times smaller: its 5 s of test scoring count 20 s
    scaled = dict(MEASURED["ofa"], after_training_seconds=5.0, test_scale=4.0)
    assert planner.stage_costs(scaled) == (2.0, 20.0, 75.0)
    # and a dev split 5 times smaller: an evaluation of the real one takes 100 s
    assert planner.stage_costs(dict(scaled, dev_scale=5.0)) == (2.0, 100.0, 75.0)
    assert planner.after_training_seconds(MEASURED, PAIRS, 3) == {"export": 45.0, "latency": 36.0}
    # 1148 steps, an evaluation every 144: at 144, ..., 1008 and at the last step: 8
    assert planner.evaluations_of(1148, 144) == 8 and planner.evaluations_of(1152, 144) == 8


def test_pairs_between_the_largest_and_the_smallest_cost_in_proportion_to_width_times_depth():
    """A probe of the largest (1.0 x 1.0) and the smallest pair (0.5 x 0.5): the pairs at 0.5 x 1.0 and 1.0 x 0.5
    (width x depth 0.5) lie a third of the way from the smallest's 0.25 to the largest's 1.0."""
    measured = dict(MEASURED, export_seconds=90.0, smallest_export_seconds=30.0, teacher_export_seconds=2.0,
                    passes={"largest": {"fp32": [6.0, 3.0], "int8": [3.0, 1.5]},
                            "smallest": {"fp32": [3.0, 1.5], "int8": [1.5, 0.6]}})
    # export: 90 + 2 * (30 + 60 / 3) + 30, and the teacher's 2
    # latency (a first pass and 3 more): teacher as the largest fp32, 6 + 3 * 3 = 15; fp32: 15, 2 * (3 + 1 + 3 * 2),
    # 3 + 3 * 1.5 = 7.5; INT8: 3 + 3 * 1.5 = 7.5, 2 * (1.5 + 0.5 + 3 * (0.6 + 0.3)), 1.5 + 3 * 0.6 = 3.3
    assert planner.after_training_seconds(measured, PAIRS, 3) == {"export": 222.0,
                                                                   "latency": 15 + 15 + 20 + 7.5 + 7.5 + 9.4 + 3.3}
    assert planner.pair_position((0.75, 0.5), (1.0, 1.0), (0.5, 0.5)) == pytest.approx(1 / 6)
    assert planner.pair_position((1.0, 1.0), (1.0, 1.0), (1.0, 1.0)) == 1.0  # one pair


def test_the_budget_is_shared_between_the_stages():
    plan = make_plan()
    # (3600 - 100) * 0.92 - 81 = 3139 s to train; stage 1 gets 0.4 of it, 1255.6 s: (1255.6 - 30 - 80) // 1
    assert plan["teacher"]["steps"] == 1145 and plan["teacher"]["save_steps"] == 144
    assert plan["teacher"]["seconds"] == 30 + 1145 + 80
    # stage 2: 1883.4 s: (1883.4 - 60 - 160) // 2
    assert plan["ofa"]["steps"] == 831 and plan["ofa"]["seconds"] == 60 + 2 * 831 + 160
    assert plan["planned_total_seconds"] == 100 + 1255 + 1882 + 81 <= 3600
    assert plan["teacher"]["epochs"] == 11.45


def test_a_stage_at_its_epochs_leaves_its_time_to_the_other():
    plan = make_plan(teacher_epochs=5)  # at most 500 steps
    assert plan["teacher"]["steps"] == 500
    # stage 1 takes 30 + 500 + 80 = 610 s of 3139; stage 2: (2529 - 220) // 2
    assert plan["ofa"]["steps"] == 1154
    both_capped = make_plan(teacher_epochs=5, ofa_epochs=3)
    assert (both_capped["teacher"]["steps"], both_capped["ofa"]["steps"]) == (500, 300)


def test_stage_2_epochs_count_the_windows_stage_2_reads():
    """With --unlabeled_file stage 2 reads more windows than stage 1: its epochs (cap, plan, replan, unplanned)
    count its own steps per epoch, 250 here against stage 1's 100."""
    plan = make_plan(teacher_epochs=5, ofa_epochs=3, ofa_steps_per_epoch=250)
    assert (plan["teacher"]["steps"], plan["ofa"]["steps"]) == (500, 750)
    assert (plan["teacher"]["epochs"], plan["ofa"]["epochs"]) == (5.0, 3.0)
    uncapped = make_plan(ofa_steps_per_epoch=250)  # the budget binds: the same 831 steps, 3.32 of its epochs
    assert uncapped["ofa"]["steps"] == 831 and uncapped["ofa"]["epochs"] == 3.32
    # stage 1 took 300 s more: the 744 steps of the replan are under the cap of 2 epochs x 250, so 500
    later = planner.replan_stage_2(uncapped, 3600.0, 1655, MEASURED, ofa_epochs=2, evaluations=8)
    assert later["ofa"]["steps"] == 500 and later["ofa"]["epochs"] == 2.0
    flags = planner.unplanned(100, 2, 3, 0, 0, 8, ofa_steps_per_epoch=250)
    assert (flags["teacher"]["steps"], flags["ofa"]["steps"], flags["ofa"]["epochs"]) == (200, 750, 3.0)


def test_fixed_steps_are_kept_and_a_skipped_teacher_gives_stage_2_everything():
    plan = make_plan(fixed_teacher_steps=300)
    # 30 + 300 + 80 = 410 s; stage 2: (3139 - 410 - 220) // 2
    assert plan["teacher"]["steps"] == 300 and plan["ofa"]["steps"] == 1254
    alone = make_plan(measured={k: v for k, v in MEASURED.items() if k != "teacher"})
    assert alone["teacher"]["steps"] == 0 and alone["ofa"]["steps"] == (3139 - 220) // 2


def test_stage_2_is_planned_again_from_the_time_stage_1_left():
    plan = make_plan()
    # stage 1 took 300 s more than its 1255: (3600 - 1655) * 0.92 - 81 = 1708.4 s left; (1708.4 - 220) // 2
    later = planner.replan_stage_2(plan, 3600.0, 100 + 1255 + 300, MEASURED, ofa_epochs=20, evaluations=8)
    assert later["ofa"]["steps"] == 744 and later["ofa"]["planned_before_stage_1"] == 831
    assert later["after_teacher_seconds"] == 60 + 2 * 744 + 160 + 81
    assert later["planned_total_seconds"] == 1655 + 60 + 2 * 744 + 160 + 81  # the run's end, as planned now
    assert planner.replan_stage_2(plan, 3600.0, 1655, MEASURED, 20, 8, fixed_ofa_steps=831) is plan


def test_stage_2_steps_follow_how_fast_stage_1_ran_against_its_probe():
    """Stage 1's steps ran at half (then 1.5 times) its probe's 1 s: stage 2's 2 s a step become 1 s (3 s), within
    the 1,708.4 s left -- 60 s fixed and 8 evaluations of 20 s: (1708.4 - 220) // 1 = 1488, // 3 = 496; a ratio
    beyond SPEED_RATIO_LIMITS counts as the limit."""
    plan = make_plan()

    def teacher_ran(per_step):  # 100 steps after a 5 s first one
        return {"steps": 100, "step_seconds": 5.0 + 99 * per_step, "first_step_seconds": 5.0, "evaluations": 8,
                "evaluation_seconds": 80.0}

    spent = 100 + 1255 + 300
    faster = planner.replan_stage_2(plan, 3600.0, spent, MEASURED, 20, 8, teacher_timing=teacher_ran(0.5))
    assert faster["ofa"]["steps"] == 1488 and faster["ofa"]["stage_1_speed_ratio"] == 0.5
    assert faster["ofa"]["seconds_per_step"] == 1.0
    slower = planner.replan_stage_2(plan, 3600.0, spent, MEASURED, 20, 8, teacher_timing=teacher_ran(1.5))
    assert slower["ofa"]["steps"] == 496
    clamped = planner.replan_stage_2(plan, 3600.0, spent, MEASURED, 20, 8, teacher_timing=teacher_ran(0.1))
    assert clamped["ofa"]["steps"] == 1488 and clamped["ofa"]["stage_1_speed_ratio"] == 0.5
    # no stage 1 run (a given teacher): the probe's speed, as before
    assert planner.replan_stage_2(plan, 3600.0, spent, MEASURED, 20, 8, teacher_timing=None)["ofa"]["steps"] == 744


def test_a_budget_too_small_is_one_line_with_what_it_needs():
    with pytest.raises(UserError, match=r"--budget_minutes 4 is too small .* about \d+ minutes"):
        make_plan(budget=240.0)
    # 900 s left: not 0.92 of it (828 s) but 900 - 2 * 81 = 738 s to train, twice the 81 s of export and timing
    # kept (they cannot be cut short); 295.2 s for stage 1, 442.8 for stage 2
    small = make_plan(budget=1000.0)
    assert (small["teacher"]["steps"], small["ofa"]["steps"]) == (185, 111)


def test_a_stage_stops_in_time_for_what_the_plan_puts_after_it():
    plan = make_plan()
    # stage 2: its last evaluation (20 s) and test scoring (none in this probe) before export and timing (81 s,
    # kept twice)
    assert planner.stop_at(5000.0, plan, "ofa", MEASURED) == 5000 - 2 * 81 - 20
    # stage 1: its evaluation (10 s), then all of stage 2 as planned and the 81 s twice
    assert planner.stop_at(5000.0, plan, "teacher", MEASURED) == 5000 - (60 + 2 * 831 + 160 + 2 * 81) - 10
