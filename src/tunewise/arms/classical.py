"""The classical arm: TF-IDF (+ metadata features) into a linear model or a random forest, chosen by a
cross-validated search on the training split (the engine is train/classical.py; this module is the glue that
fits, caches, saves and scores it in a run, and serves the saved model).

The search is this arm's training: its seconds go to training/<arm>.json like a fine-tuned arm's, so the
cost and ROI tables count what the baseline took to build (a cached search counts its original seconds).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tunewise.settings import ArmConfig
from tunewise.train.settings import ClassicalConfig

if TYPE_CHECKING:
    from tunewise.arms.context import ArmContext
    from tunewise.schema import Prediction


class ClassicalArm(ArmConfig):
    """TF-IDF (+ metadata features) into a linear model or random forest, chosen by cross-validated search."""

    type: Literal["classical"]
    settings: ClassicalConfig = Field(default_factory=ClassicalConfig, description="Model family, search and features.")


Config = ClassicalArm


def check(arm: ClassicalArm, experiment: Any) -> None:
    if experiment.task.type != "classify":
        raise ValueError(f"arm {arm.name!r}: the classical arm needs task.type classify")


def serve(arm: ClassicalArm, run: Any) -> Any:
    return run.classical(arm.name)


def _write_training(arm: ClassicalArm, ctx: ArmContext, model: Any) -> None:
    """The search's seconds as this arm's training record (read by evaluate/cost.py like a fine-tune's)."""
    from tunewise.store.atomic import atomic_write_text

    record = {"method": f"classical {arm.settings.search} search", "precision": "fp64",
              "seconds": model.search_seconds, "best_model": model.best_model_name, "best_params": model.best_params,
              "cv_score": model.cv_score, "scoring": arm.settings.scoring, "rounds": model.rounds,
              "stopped_early": model.stopped_early, "train_examples": len(ctx.train), "gap_warning": None}
    atomic_write_text(ctx.run_dir / "training" / f"{arm.name}.json", json.dumps(record, indent=2) + "\n")


def run(arm: ClassicalArm, ctx: ArmContext) -> list[Prediction]:
    """The classical arm in a run: fit on the training split (or reuse the identical fit from the cache),
    save the model into the run folder, and write one prediction per test example with per-label scores."""
    import sklearn

    from tunewise.assets import cache_dir
    from tunewise.schema import Prediction
    from tunewise.store.answer_cache import cache_key
    from tunewise.train.classical import META_FILE, ClassicalModel, train_classical

    key = cache_key(kind="classical", settings=arm.settings.model_dump(mode="json"), sklearn=sklearn.__version__,
                    train=[(e.id, e.input, e.label, e.metadata) for e in ctx.train])
    cached_folder = cache_dir() / "classical" / key[:32]
    cached = (cached_folder / META_FILE).is_file()
    if cached:
        model = ClassicalModel.load(cached_folder)
    else:
        model = train_classical(ctx.train, arm.settings,
                                lambda what, total: ctx.progress(f"{arm.name} ({what})", total))
        model.save(cached_folder)
    model.save(ctx.run_dir / "models" / arm.name)
    _write_training(arm, ctx, model)
    ctx.log(f"{arm.name}: {model.best_model_name} {model.best_params} (cv {arm.settings.scoring} "
            f"{model.cv_score:.3f}, search {model.search_seconds:.1f} s{', cached' if cached else ''})")
    store = ctx.store(arm.name)
    with ctx.progress(arm.name, len(ctx.test)) as advance:
        start = time.perf_counter()
        scores = model.predict_scores(ctx.test)
        each = (time.perf_counter() - start) / max(len(ctx.test), 1)
        predictions = [Prediction(id=e.id, arm=arm.name, input=e.input, reference=e.output.strip(),
                                  prediction=max(row, key=lambda label: row[label]), raw="", latency_s=each,
                                  scores=row, cached=cached) for e, row in zip(ctx.test, scores)]
        store.path.unlink(missing_ok=True)  # cheap to recompute from the saved model; never stale
        store = ctx.store(arm.name)
        store.append(predictions)
        advance(len(ctx.test))
    ctx.probe(arm.name, lambda e: model.predict_scores([e]))
    return predictions
