"""Optimized prompt: search instructions, exemplars and answer format on the validation split, then score the
winner on the test split like any other arm and serve it exactly as it was found.

Practitioners iterate on prompts before they fine-tune, and tools such as DSPy search prompts against a metric;
a verdict that pits a fine-tuned model only against hand-written prompts is unfair to prompting. The candidates
are the task's own instruction, the user's alternatives (`instructions`) and, with a `proposer`, instructions a
model writes from training examples and the current prompt's validation errors (the idea of DSPy's MIPROv2
instruction proposal); crossed with answer formats (the task's prompt variants) and exemplar choices (none,
seeded label-balanced draws of k, or the k nearest training examples). They are compared by successive halving
(Jamieson & Talwalkar, AISTATS 2016): every candidate on a small nested validation subset, the best 1/eta on
eta times as many examples, and so on up to `val_examples`, so the budget goes to the promising ones. Answers
go through the answer cache, so a survivor never pays twice for the examples it was already scored on.

DSPy itself is not used: its optimizers drive an LM client that generates text, while tunewise classifies by
label log-likelihood on a local model; and it is not a dependency. The search never sees a test example: the
validation examples are the run's validation split (or, when that is too small, a seeded part of the training
split, which is then kept out of the exemplar pool during the search). Its seconds are the arm's training
cost; its trajectory is written to `training/<arm>.json` and the winner to `models/<arm>/prompt.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tunewise.settings import LocalArmConfig, Strict

if TYPE_CHECKING:
    from tunewise.arms.context import ArmContext
    from tunewise.schema import Example, Prediction

MIN_VAL = 8
WINNER = "prompt.json"


class ProposerConfig(Strict):
    """The model that writes candidate instructions: a local model, or any OpenAI-compatible endpoint."""

    model: str = Field("smollm2", description="Local folder or `smollm2`; with base_url, the endpoint's model name.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1); "
                                                   "unset: the local model.")
    api_key_env: str | None = Field(None, description="Environment variable holding the endpoint's key; null: none.")
    n: int = Field(3, ge=1, le=16, description="Instructions to propose.")
    max_tokens: int = Field(60, ge=8, le=512, description="Length budget of one proposed instruction.")


class PromptSearchArm(LocalArmConfig):
    """Instructions x answer formats x exemplar choices, searched by successive halving on validation data."""

    type: Literal["prompt_search"]
    instructions: list[str] = Field(default_factory=list, description="Alternative instructions to try beside the "
                                                                      "task's own.")
    formats: list[str] = Field(default_factory=lambda: ["default", "terse"], min_length=1,
                               description="Answer formats to try: the task's prompt variants (default, terse, cot).")
    shots: list[int] = Field(default_factory=lambda: [0, 2, 4], min_length=1,
                             description="Exemplar counts to try (0 = zero-shot).")
    exemplars: list[Literal["balanced", "retrieval"]] = Field(
        default_factory=lambda: ["balanced", "retrieval"], min_length=1,
        description="How exemplars are chosen: seeded label-balanced draws, or the k nearest training examples.")
    draws: int = Field(2, ge=1, le=16, description="Seeded label-balanced draws tried per exemplar count.")
    retriever: Literal["embedding", "bm25"] = Field("embedding", description="Nearest by MiniLM embeddings or BM25.")
    embedder: str = Field("minilm", description="Sentence-transformers folder, or `minilm` (bundled).")
    proposer: ProposerConfig | None = Field(None, description="A model that proposes instructions from training "
                                                              "examples and validation errors; unset: none.")
    candidates: int = Field(12, ge=1, le=256, description="At most this many candidates (a seeded sample of the "
                                                          "grid; the task's own zero-shot prompt is always one).")
    val_examples: int = Field(45, ge=MIN_VAL, le=5000, description="Validation examples the finalists are scored on.")
    eta: int = Field(3, ge=2, le=8, description="Successive halving: keep the best 1/eta, on eta x the examples.")


Config = PromptSearchArm


@dataclasses.dataclass(frozen=True)
class Candidate:
    instruction: str | None  # None: the task's own
    format: str
    k: int
    source: Literal["none", "balanced", "retrieval"]
    draw: int = 0

    def describe(self) -> str:
        said = "task instruction" if self.instruction is None else repr(_clip(self.instruction, 60))
        shots = "no exemplars" if self.k == 0 else f"{self.k} {self.source}" + \
            (f" (draw {self.draw})" if self.source == "balanced" else "")
        return f"{said} · {self.format} · {shots}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"describe": self.describe()}


def check(arm: PromptSearchArm, experiment: Any) -> None:
    """An unknown answer format is refused when the config loads, not an hour into the run."""
    from tunewise.schema import Example, Message
    from tunewise.tasks import make_task

    probe = Example(id="check", messages=(Message("user", "text"), Message("assistant", "label")), line=0)
    task = make_task(experiment.task, [probe])
    for fmt in arm.formats:
        try:
            task.messages(probe, (), fmt)
        except ValueError as exc:
            raise ValueError(f"arm {arm.name!r}: formats: {exc}. Fix: list only the task's prompt variants") from None


def serve(arm: PromptSearchArm, run: Any) -> Any:
    """The winning prompt exactly as evaluated: its instruction, format and exemplars (from models/<arm>/)."""
    path = run.run_dir / "models" / arm.name / WINNER
    if not path.is_file():
        raise ValueError(f"{path} is missing: the search of arm {arm.name!r} did not finish in this run")
    won = json.loads(path.read_text(encoding="utf-8"))
    winner = Candidate(**{k: won[k] for k in ("instruction", "format", "k", "source", "draw")})
    render = _prompter(winner, run.task, run.train, [], run.seed, arm)
    return run.prompted(arm, lambda text: render(run.request(text)))


def run(arm: PromptSearchArm, ctx: ArmContext) -> list[Prediction]:
    """Search on validation data (once per run; resumed and perturbed re-runs reuse the winner), then score the
    winner on the test split through the same path as every prompted arm."""
    from tunewise.arms.exemplars import ExemplarPool
    from tunewise.arms.prompted import local_backend, run_prompted

    backend = local_backend(arm, ctx, ctx.max_new_tokens)
    winner_path = ctx.run_dir / "models" / arm.name / WINNER
    if winner_path.is_file():
        won = json.loads(winner_path.read_text(encoding="utf-8"))
        winner = Candidate(**{k: won[k] for k in ("instruction", "format", "k", "source", "draw")})
    elif ctx.store_suffix:
        raise ValueError(f"arm {arm.name!r}: no search result in this run to re-score on perturbed inputs")
    else:
        winner = _search_and_record(arm, ctx, backend)
    pool = ExemplarPool(ctx.train, ctx.test, drop_leaked=ctx.allow_leakage).examples
    render = _prompter(winner, ctx.task, pool, ctx.test, ctx.seed, arm)
    return run_prompted(arm.name, ctx, render, backend)


# ------------------------------------------------------------------------------------------------ search


def _search_and_record(arm: PromptSearchArm, ctx: ArmContext, backend: Any) -> Candidate:
    from tunewise.store.atomic import atomic_write_text

    started = time.perf_counter()
    val, pool, source = _validation(arm, ctx)
    candidates, proposals = _candidates(arm, ctx, backend, val, pool)
    trajectory, winner, answered = _halving(arm, ctx, backend, candidates, val, pool)
    seconds = time.perf_counter() - started
    record = {"method": "prompt_search", "seconds": seconds, "train_examples": len(pool),
              "val_examples": len(val), "val_source": source,
              "candidates": len(candidates), "answers_scored": answered, "proposals": proposals,
              "winner": winner.to_dict(), "trajectory": trajectory}
    atomic_write_text(ctx.run_dir / "training" / f"{arm.name}.json", json.dumps(record, indent=2) + "\n")
    (ctx.run_dir / "models" / arm.name).mkdir(parents=True, exist_ok=True)
    atomic_write_text(ctx.run_dir / "models" / arm.name / WINNER, json.dumps(winner.to_dict(), indent=2) + "\n")
    best = max(trajectory, key=lambda row: (len(row["rounds"]), row["rounds"][-1]["score"]))
    ctx.log(f"{arm.name}: {len(candidates)} candidates, {answered} validation answers in {seconds:.0f} s; "
            f"winner {winner.describe()} ({best['rounds'][-1]['score']:.3f} on {best['rounds'][-1]['examples']})")
    return winner


def _validation(arm: PromptSearchArm, ctx: ArmContext) -> tuple[list[Example], list[Example], str]:
    """(validation examples, exemplar pool, where the former came from): the validation split when it has enough,
    else a seeded part of the training split that is then left out of the pool. Never the test split."""
    from tunewise.data.split import stratified_subset

    labelled = bool(ctx.task.labels)
    source = "validation split"
    if len(ctx.val) >= MIN_VAL:
        val, pool = stratified_subset(ctx.val, arm.val_examples, ctx.seed, labelled), list(ctx.train)
    else:
        source = "part of the training split (the validation split is too small)"
        val = stratified_subset(ctx.train, min(arm.val_examples, len(ctx.train) // 3), ctx.seed, labelled)
        held = {e.id for e in val}
        pool = [e for e in ctx.train if e.id not in held]
    if len(val) < 2 or not pool:
        raise ValueError(f"arm {arm.name!r}: too little data to search prompts on ({len(val)} validation, "
                         f"{len(pool)} training examples); add data or use a few_shot arm")
    random.Random(ctx.seed).shuffle(val)  # nested subsets: the first r of this order in every round
    return val, pool, source


def _candidates(arm: PromptSearchArm, ctx: ArmContext, backend: Any, val: list[Example],
                pool: list[Example]) -> tuple[list[Candidate], list[str]]:
    """The task's zero-shot prompt first, then a seeded sample of the rest of the grid (duplicates dropped)."""
    proposals = _propose(arm, ctx, backend, val, pool) if arm.proposer else []
    instructions: list[str | None] = [None, *arm.instructions, *proposals]
    shots: list[tuple[int, str, int]] = [(0, "none", 0)]
    for k in sorted(set(arm.shots) - {0}):
        shots += [(k, "balanced", d) for d in range(arm.draws)] if "balanced" in arm.exemplars else []
        shots += [(k, "retrieval", 0)] if "retrieval" in arm.exemplars else []
    grid, seen = [], set()
    for instruction in instructions:
        for fmt in arm.formats:
            system = _task_for(ctx.task, instruction).messages(val[0], (), fmt)[0]["content"]
            for k, source, draw in shots:
                if (system, k, source, draw) not in seen:
                    seen.add((system, k, source, draw))
                    grid.append(Candidate(instruction, fmt, k, source, draw))  # type: ignore[arg-type]
    first, rest = grid[0], grid[1:]
    chosen = random.Random(ctx.seed).sample(rest, min(len(rest), arm.candidates - 1))
    return [first, *sorted(chosen, key=grid.index)], proposals


def _halving(arm: PromptSearchArm, ctx: ArmContext, backend: Any, candidates: list[Candidate],
             val: list[Example], pool: list[Example]) -> tuple[list[dict[str, Any]], Candidate, int]:
    """Successive halving; returns the trajectory (every candidate and its score per round), the winner and
    how many validation answers were scored."""
    rounds = max(1, math.ceil(math.log(len(candidates), arm.eta) - 1e-9))
    sizes = [max(min(MIN_VAL, len(val)), math.ceil(len(val) / arm.eta ** (rounds - 1 - i))) for i in range(rounds)]
    index = _index(arm, pool) if any(c.source == "retrieval" for c in candidates) else None
    renders = {c: _prompter(c, ctx.task, pool, val, ctx.seed, arm, index) for c in candidates}
    rows = {c: {"candidate": c.to_dict(), "rounds": []} for c in candidates}
    alive, answered = list(candidates), 0
    total = sum(math.ceil(len(candidates) / arm.eta ** i) * size for i, size in enumerate(sizes))
    with ctx.progress(f"{arm.name} (search)", total) as advance:
        for i, size in enumerate(sizes):
            subset = val[:size]
            for candidate in alive:
                score, n = _score(ctx, backend, renders[candidate], subset, advance)
                answered += n
                rows[candidate]["rounds"].append({"round": i + 1, "examples": len(subset), "score": score})
            if i < len(sizes) - 1:  # ties keep the earlier (simpler) candidate
                ranked = sorted(alive, key=lambda c: (-rows[c]["rounds"][-1]["score"], candidates.index(c)))
                alive = ranked[:math.ceil(len(alive) / arm.eta)]
    winner = min(alive, key=lambda c: (-rows[c]["rounds"][-1]["score"], c.k, candidates.index(c)))
    return list(rows.values()), winner, answered


def _score(ctx: ArmContext, backend: Any, render: Any, examples: list[Example], advance: Any) -> tuple[float, int]:
    """The primary metric of one candidate on `examples` (answers cached by backend and exact prompt); for generate
    tasks ranked by `score` or `judge`, ROUGE-L, since exact match is ~0 for every candidate and a judge is too
    costly here."""
    from tunewise.arms.prompted import answer_cached

    answers, _ = answer_cached(ctx, backend, backend.identity(), [render(e) for e in examples], advance)
    predicted = [ctx.task.parse(a.get("raw", "")) if not a.get("error") else "" for a in answers]
    references = [e.output.strip() for e in examples]
    return candidate_metric(ctx.task, ctx.primary_metric, predicted, references), len(answers)


def candidate_metric(task: Any, primary: str | None, predicted: list[str], references: list[str]) -> float:
    """The primary metric over one candidate's validation answers, computed as the evidence computes it."""
    if not predicted:
        return 0.0
    if primary == "macro_f1" and task.labels:
        from sklearn.metrics import f1_score

        return float(f1_score(references, predicted, labels=list(task.labels), average="macro", zero_division=0))
    if task.name == "generate" and primary in ("chrf", "bleu"):  # corpus-level, as evidence scores them
        from sacrebleu.metrics import BLEU, CHRF

        return (CHRF() if primary == "chrf" else BLEU()).corpus_score(predicted, [references]).score / 100
    if task.name == "extract" and primary == "field_f1":
        from tunewise.evaluate.metrics import field_family

        return float(field_family(references, predicted).values()["field_f1"][0])
    if task.name == "generate":  # exact match ties every candidate at ~0 on free text; ROUGE-L ranks them
        from tunewise.evaluate.metrics import rouge_l

        return sum(rouge_l(references, predicted)) / len(predicted)
    return sum(task.score(p, r) for p, r in zip(predicted, references)) / len(predicted)


# ------------------------------------------------------------------------------------------------ prompts


def _task_for(task: Any, instruction: str | None) -> Any:
    return task if instruction is None else dataclasses.replace(task, instructions=instruction)


def _index(arm: PromptSearchArm, pool: list[Example]) -> Any:
    from tunewise.arms.retrieval import arm_index

    return arm_index(arm, [e.input for e in pool])  # type: ignore[arg-type]  (it reads retriever and embedder)


def _prompter(candidate: Candidate, task: Any, pool: list[Example], queries: list[Example], seed: int,
              arm: PromptSearchArm, index: Any = None) -> Any:
    """Example -> messages under `candidate`, exemplars drawn from `pool` only (the training split)."""
    from tunewise.arms.exemplars import ExemplarPool

    shaped = _task_for(task, candidate.instruction)
    if candidate.k == 0:
        return lambda e: shaped.messages(e, (), candidate.format)
    if candidate.source == "balanced":
        shots = ExemplarPool(pool, []).balanced(candidate.k, seed + candidate.draw, labelled=bool(task.labels))
        return lambda e: shaped.messages(e, shots, candidate.format)
    index = index if index is not None else _index(arm, pool)
    known = {e.id: [pool[i] for i in reversed(found)]
             for e, found in zip(queries, index.search([e.input for e in queries], candidate.k))} if queries else {}

    def render(example: Example) -> list[dict[str, str]]:
        shots = known.get(example.id)
        if shots is None:  # a served request: search for it now, as evaluation did for a test input
            shots = [pool[i] for i in reversed(index.search([example.input], candidate.k)[0])]
        return shaped.messages(example, shots, candidate.format)

    return render


def _propose(arm: PromptSearchArm, ctx: ArmContext, backend: Any, val: list[Example],
             pool: list[Example]) -> list[str]:
    """Instructions written by the proposer from training examples and the task prompt's validation errors."""
    proposer = arm.proposer
    assert proposer is not None
    first = val[:MIN_VAL]
    base = _prompter(Candidate(None, arm.formats[0], 0, "none"), ctx.task, pool, first, ctx.seed, arm)
    answers = backend.answer([base(e) for e in first], lambda n: None)
    wrong = [(e, ctx.task.parse(a.get("raw", ""))) for e, a in zip(first, answers)
             if ctx.task.parse(a.get("raw", "")) != e.output.strip()]
    shown = random.Random(ctx.seed).sample(pool, min(6, len(pool)))
    lines = [f"- {_clip(e.input, 40)} -> {e.output.strip()}" for e in shown]
    errors = [f"- {_clip(e.input, 40)} -> answered {got or '(nothing)'}, correct {e.output.strip()}"
              for e, got in wrong[:4]]
    current = ctx.task.messages(first[0], (), arm.formats[0])[0]["content"]
    request = [{"role": "system", "content": "You write the instruction for a model that answers a task."},
               {"role": "user", "content": "Examples of inputs and correct answers:\n" + "\n".join(lines)
                + f"\n\nCurrent instruction: {current}\n" + ("Its mistakes:\n" + "\n".join(errors) if errors else "")
                + "\n\nWrite one better instruction, one or two sentences. Reply with the instruction only."}]
    texts = _generate(proposer, ctx, arm, [request] * proposer.n)
    cleaned = [t.strip().strip('"').split("\n\n")[0].strip() for t in texts]
    return list(dict.fromkeys(t[:400] for t in cleaned if len(t.split()) >= 3))


def _generate(proposer: ProposerConfig, ctx: ArmContext, arm: PromptSearchArm, prompts: list[Any]) -> list[str]:
    if proposer.base_url is None:
        lm = ctx.local_model(proposer.model, arm.precision)
        return [lm.generate([p], max_new_tokens=proposer.max_tokens, temperature=0.8, seed=ctx.seed + i)[0].text
                for i, p in enumerate(prompts)]
    from tunewise.models.remote import RemoteLM
    from tunewise.schema import Generation

    client = RemoteLM(proposer.base_url, proposer.model, api_key_env=proposer.api_key_env)
    results = client.chat(prompts, max_tokens=proposer.max_tokens, temperature=0.8)
    return [r.text for r in results if isinstance(r, Generation)]


def _clip(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")
