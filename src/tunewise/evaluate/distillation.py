"""What a distilled student is worth against its teacher: gold quality (the arm's metrics), agreement with the
teacher on the test split, what labelling the pool cost, and the request volume at which the student pays back
that labelling plus its own training.

Break-even volume = (teacher labelling USD + student training USD) / (teacher USD per request - student USD
per request), only when the student is cheaper per request; payback days = that volume / requests a day.
Reads the teacher's pool answers from `predictions/<teacher>~distill-<student>.jsonl`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tunewise.schema import Prediction


def distillation_summary(student: str, record: Mapping[str, Any], arms: Mapping[str, Any],
                         aligned: Mapping[str, Sequence[Prediction]], run_dir: Path, cost_of: Any,
                         requests_per_day: float) -> dict[str, Any]:
    """`cost_of(arm_name, predictions)` is USD per 1,000 requests of that arm (None when unknown)."""
    from tunewise.arms.distill import pool_name
    from tunewise.store.predictions import PredictionStore

    teacher = record["teacher"]
    out: dict[str, Any] = dict(record)
    path = run_dir / "predictions" / f"{teacher}{pool_name(student)}.jsonl"
    pool = list(PredictionStore(path).done.values()) if path.is_file() else []
    per_1k = cost_of(teacher, pool) if pool else None
    out["labelling_usd"] = None if per_1k is None else per_1k * len(pool) / 1000
    if teacher in aligned and student in aligned:
        pairs = list(zip(aligned[student], aligned[teacher]))
        out["agreement_with_teacher"] = sum(s.prediction == t.prediction for s, t in pairs) / max(len(pairs), 1)
    else:
        out["agreement_with_teacher"] = None
    out["break_even_requests"], out["payback_days"] = None, None
    mine, theirs = arms.get(student, {}), arms.get(teacher, {})
    student_cost, teacher_cost = mine.get("cost", {}).get("per_1k_usd"), theirs.get("cost", {}).get("per_1k_usd")
    training = (mine.get("cost", {}).get("training") or {}).get("usd") or 0.0
    if None not in (student_cost, teacher_cost, out["labelling_usd"]) and teacher_cost > student_cost:
        saving = (teacher_cost - student_cost) / 1000
        out["break_even_requests"] = (out["labelling_usd"] + training) / saving
        out["payback_days"] = out["break_even_requests"] / requests_per_day
    return out
