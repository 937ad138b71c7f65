"""The judging stage of `tunewise run`: after the arms, ask evaluation.judge's model about their answers and
write the verdicts to judge.json in the run folder, where the evidence (evaluate/judge_evidence.py) reads them.

The judge is asked like an arm asks its model: a local model (the bundled one by default) through the same
generation backend, or any OpenAI-compatible endpoint through the remote arms' client, and every call goes
through the shared answer cache, so a resumed or repeated run re-judges nothing. Token usage and compute
seconds are recorded for the judge's cost (priced in the evidence, like the arms). Pairwise mode asks each pair
in both orders (evaluate/judge.py combines them). A judge that cannot be reached is recorded in judge.json
with its error; the arms' predictions are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tunewise.arms.context import ArmContext
from tunewise.evaluate.judge import (
    JudgePrompts,
    combine_orders,
    default_rubric,
    pairs,
    parse_reason,
    parse_score,
    parse_winner,
)
from tunewise.schema import Prediction
from tunewise.settings import JudgeSettings
from tunewise.store.atomic import atomic_write_text

CHUNK = 64  # prompts per cached batch: an interrupted run keeps every finished chunk in the answer cache


def verdict_options(settings: JudgeSettings) -> list[str]:
    """What a local judge chooses between: the scale's scores, PASS/FAIL, or A/B/tie."""
    if settings.mode == "pairwise":
        return ["A", "B", "tie"]
    return ["1", "2", "3", "4", "5"] if settings.scale == "1-5" else ["PASS", "FAIL"]


def judge_backend(settings: JudgeSettings, ctx: ArmContext) -> Any:
    """The judge's model: the remote arms' client for an endpoint (a verdict and a reason, parsed); a local model
    picks its verdict by the log-likelihood of each option, as local arms classify, since small local models
    rarely keep to a reply format (the bundled 135M one echoes the prompt) and a verdict must always come back."""
    if settings.base_url is not None:
        from tunewise.arms.remote import RemoteChat
        from tunewise.models.remote import RemoteLM

        client = RemoteLM(settings.base_url, str(settings.model), api_key_env=settings.api_key_env,
                          concurrency=settings.concurrency, timeout_s=settings.timeout_s, retries=settings.retries)
        return RemoteChat(client, settings)  # type: ignore[arg-type]  # the same base_url/model/max_tokens fields
    from tunewise.arms.prompted import LabelScoring
    from tunewise.models.local import choose_precision

    model = settings.model or "smollm2"
    dtype = str(choose_precision("auto", settings.precision).dtype)
    return LabelScoring(lambda: ctx.local_model(model, settings.precision), ctx.model_id(model), dtype,
                        verdict_options(settings), settings.batch_size)


def judge_prompts(settings: JudgeSettings, ctx: ArmContext) -> JudgePrompts:
    return JudgePrompts(rubric=settings.rubric or default_rubric(ctx.task.name), scale=settings.scale,
                        use_reference=settings.use_reference, verdict_only=settings.base_url is None,
                        max_input_words=int(getattr(ctx.task, "max_input_words", 200)),
                        instructions=getattr(ctx.task, "instructions", None) or "")


class _Asker:
    """Cached judge calls with their usage totals (tokens for endpoints, compute seconds for local models)."""

    def __init__(self, backend: Any, ctx: ArmContext, advance: Callable[[int], None]) -> None:
        self.backend, self.ctx, self.advance = backend, ctx, advance
        self.identity = backend.identity() | {"role": "judge"}
        self.usage = {"calls": 0, "cached": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0,
                      "compute_s": 0.0}

    def ask(self, messages: Sequence[list[dict[str, str]]]) -> list[str | None]:
        from tunewise.arms.prompted import answer_cached

        replies: list[str | None] = []
        for start in range(0, len(messages), CHUNK):
            answers, hits = answer_cached(self.ctx, self.backend, self.identity, messages[start:start + CHUNK],
                                          self.advance)
            for answer, hit in zip(answers, hits):
                self.usage["calls"] += 1
                self.usage["cached"] += int(hit)
                self.usage["failed"] += int(bool(answer.get("error")))
                self.usage["prompt_tokens"] += int(answer.get("prompt_tokens", 0))
                self.usage["completion_tokens"] += int(answer.get("completion_tokens", 0))
                self.usage["compute_s"] += float(answer.get("latency_s", 0.0))
                replies.append(None if answer.get("error") else str(answer.get("raw", "")))
        return replies


def _reason(reply: str | None, asker: _Asker) -> str:
    if reply is None:
        return "(no reply: the request failed)"
    if asker.identity.get("kind") == "label_scoring":
        return "(local judge: the most likely verdict, no reason given)"
    return parse_reason(reply)


def _pointwise(asker: _Asker, prompts: JudgePrompts, by_arm: Mapping[str, Sequence[Prediction]],
               scale: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for arm, predictions in by_arm.items():
        replies = asker.ask([prompts.pointwise(p.input, p.reference, p.prediction) for p in predictions])
        out[arm] = {p.id: {"score": parse_score(r, scale) if r is not None else None,
                           "reason": _reason(r, asker), "reply": r}
                    for p, r in zip(predictions, replies)}
    return out


def _pairwise(asker: _Asker, prompts: JudgePrompts,
              by_arm: Mapping[str, Sequence[Prediction]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for a, b in pairs(list(by_arm)):
        left, right = by_arm[a], by_arm[b]
        first = asker.ask([prompts.pairwise(p.input, p.reference, p.prediction, q.prediction)
                           for p, q in zip(left, right)])
        second = asker.ask([prompts.pairwise(p.input, p.reference, q.prediction, p.prediction)
                            for p, q in zip(left, right)])
        rows = {}
        for p, r1, r2 in zip(left, first, second):
            w1, w2 = (parse_winner(r) if r is not None else None for r in (r1, r2))
            outcome, disagreed = combine_orders(w1, w2)
            rows[p.id] = {"first": w1, "second": w2, "outcome": outcome, "disagreed": disagreed,
                          "reason": _reason(r1, asker)}
        out[f"{a}|{b}"] = {"a": a, "b": b, "examples": rows}
    return out


def run_judge(settings: JudgeSettings, ctx: ArmContext, done: Mapping[str, Sequence[Prediction]],
              log: Callable[[str], None]) -> dict[str, Any]:
    """Judge every judged arm's answers on the examples all of them answered; writes and returns judge.json."""
    names = [n for n in (settings.arms or list(done)) if done.get(n)]
    by_id = {n: {p.id: p for p in done[n]} for n in names}
    ids = [e.id for e in ctx.test if all(e.id in by_id[n] for n in names)]
    by_arm = {n: [by_id[n][i] for i in ids] for n in names}
    prompts = judge_prompts(settings, ctx)
    record: dict[str, Any] = {
        "mode": settings.mode, "scale": settings.scale if settings.mode == "pointwise" else None,
        "rubric": prompts.rubric, "rubric_source": "evaluation.judge.rubric" if settings.rubric else "default",
        "use_reference": settings.use_reference, "arms": names, "examples": len(ids),
        "endpoint": settings.base_url, "model": settings.model or "smollm2",
    }
    calls = len(ids) * (len(names) if settings.mode == "pointwise" else len(names) * (len(names) - 1))
    started = time.perf_counter()
    try:
        backend = judge_backend(settings, ctx)
        with ctx.progress("judge", calls) as advance:
            asker = _Asker(backend, ctx, advance)
            record["identity"] = asker.identity
            if settings.mode == "pointwise":
                record["pointwise"] = _pointwise(asker, prompts, by_arm, settings.scale)
            else:
                record["pairwise"] = _pairwise(asker, prompts, by_arm)
        record["usage"] = asker.usage
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # an endpoint down or a model that will not load: say so, keep the arms' figures
        record["error"] = f"{type(exc).__name__}: {exc}"
        log(f"judge failed: {record['error']}")
    record["seconds"] = time.perf_counter() - started
    write_judge(ctx.run_dir, record)
    return record


def judge_path(run_dir: Path) -> Path:
    return run_dir / "judge.json"


def write_judge(run_dir: Path, record: Mapping[str, Any]) -> None:
    import json

    atomic_write_text(judge_path(run_dir), json.dumps(record, indent=1, ensure_ascii=False, default=str))
