"""solve.budgeted: the fastest plan under a budget, from answers that depend only on (problem, cap) and may be
remembered across builds."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_solve import concat_fanout, consistent, every_plan, primitives, random_problem, two_layers

from tasobuild.errors import UserError
from tasobuild.solve import solve
from tasobuild.solve.budgeted import Answer, fastest_within


class Memo:
    """A remember() over a dict, counting the solves it could not answer."""

    def __init__(self) -> None:
        self.answers: dict[int, Answer] = {}
        self.solved: list[int] = []

    def __call__(self, cap, solve_it):
        if cap not in self.answers:
            self.solved.append(cap)
            answer = solve_it()
            if answer is not None:
                self.answers[cap] = answer
            return answer
        return self.answers[cap]


def test_concat_fanout_at_450_asks_two_questions_and_remembers_both() -> None:
    p, memo = concat_fanout(), Memo()
    plan = consistent(fastest_within(p, 450, remember=memo), p)
    assert primitives(plan)["n5"] == "gemm" and plan.time_ns == 5_700_000 and plan.peak_bytes == 450
    assert (plan.status, plan.tie_break) == ("optimal", "optimal")
    # the budget, then the tie break one byte under the plan's peak: 449 has no plan (450 is the smallest peak)
    assert memo.solved == [450, 449]
    assert memo.answers == {450: Answer(("conv", "conv", "concat", "gemm", "gemm", "gemm", "add3"), 5_700_000),
                            449: Answer(None, 0)}
    again = fastest_within(p, 450, remember=memo)  # from the memo alone: no solver time
    assert again == replace(plan, solver_seconds=0.0) and memo.solved == [450, 449]


def test_a_shared_tie_break_is_solved_once() -> None:
    p, memo = two_layers(), Memo()
    # 3000 and 2500 bytes both give the 2000-byte plan (direct + gemm): its tie break (1999) is asked once
    assert primitives(fastest_within(p, 3000, remember=memo)) == {"conv": "direct", "fc": "gemm"}
    assert primitives(fastest_within(p, 2500, remember=memo)) == {"conv": "direct", "fc": "gemm"}
    assert memo.solved == [3000, 1999, 2500]


def test_no_plan_is_the_sessions_error() -> None:
    with pytest.raises(UserError, match=r"memory budget 1999 bytes .* smallest budget with a plan is 2000 bytes"):
        fastest_within(two_layers(), 1999)


@pytest.mark.parametrize("seed", range(12))
def test_same_answer_as_a_session_and_the_brute_force(seed: int) -> None:
    p = random_problem(seed)
    plans = every_plan(p)
    if not plans:
        return
    memo = Memo()
    for budget in sorted({q.peak_bytes for q in plans}, reverse=True):
        b = consistent(fastest_within(p, budget, remember=memo), p)
        assert b.time_ns == min(q.time_ns for q in plans if q.peak_bytes <= budget)
        assert b.peak_bytes == min(q.peak_bytes for q in plans if q.peak_bytes <= budget and q.time_ns == b.time_ns)
        session = solve(p, budget)
        assert (b.time_ns, b.peak_bytes, b.status, b.tie_break) == (session.time_ns, session.peak_bytes,
                                                                    session.status, session.tie_break)
        # what was asked before does not matter: the same plan from an empty memo
        assert fastest_within(p, budget).choices == b.choices
