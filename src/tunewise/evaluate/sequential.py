"""Repeated looks at a growing test set (`tunewise run --resume RUN --extend`) without inflating false results.

Each `--extend` scores more of the frozen test split for the arms still in contention and looks again. Testing
at alpha at every look would make a false "significantly worse" (or a false "equivalent") more likely with
every look, so each look gets its own level from an O'Brien-Fleming-type alpha-spending function (Lan and
DeMets): spent(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t)), where t is the information fraction, the examples
scored so far over the whole test split (the most the extension can ever reach). Look j tests at
spent(t_j) - spent(t_{j-1}); these increments add up to at most alpha, so by the union bound the chance of any
false result over all looks stays at most alpha whatever the correlation between looks (conservative: the
exact group-sequential boundaries would spend a little more). O'Brien-Fleming spends almost nothing early and
nearly all of alpha at the end, so extending to the whole split costs little power. A run's own verdict is a
single look at alpha; once it is extended, look 1 is read again at its spent level, so the whole sequence
spends at most alpha.

An arm is settled at a look (significantly worse than the best at the look's level, or out of the verdict by a
failure or a gate) and keeps that look's figures; the others stay in contention and are scored on the new
examples. The decision is resolved when no arm in contention is inconclusive against the best. The looks live
in extend.json in the run folder. Knows nothing about models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scipy.special import ndtr, ndtri

from tunewise.schema import Example
from tunewise.store.atomic import atomic_write_text

FILE = "extend.json"
METHOD = ("O'Brien-Fleming-type alpha spending (Lan-DeMets), information fraction = examples scored / test split; "
          "each look tests at its increment of spent alpha (union bound: at most alpha over all looks)")


def spent(alpha: float, fraction: float) -> float:
    """Alpha spent by information fraction `fraction` (0-1]: 2 - 2 Phi(z_{1-alpha/2} / sqrt(t))."""
    if fraction >= 1:
        return alpha
    if fraction <= 0:
        return 0.0
    return float(2 * (1 - ndtr(ndtri(1 - alpha / 2) / math.sqrt(fraction))))


def look_levels(alpha: float, sizes: Sequence[int], total: int) -> list[float]:
    """Each look's own level: the increment of spent alpha between the previous look's size and this one's."""
    fractions = [min(n / total, 1.0) for n in sizes]
    spends = [spent(alpha, t) for t in fractions]
    return [s - (spends[i - 1] if i else 0.0) for i, s in enumerate(spends)]


def status_at(comparison: Mapping[str, Any], level: float) -> str:
    """A comparison with the best read at `level`, as verdict.compare_to_best reads it at alpha."""
    if comparison["equivalence_p"] < level:
        return "equivalent"
    if comparison["p_adjusted"] < level and comparison["delta"] < 0:
        return "worse"
    return "inconclusive"


def contention(results: Mapping[str, Any], level: float, look: int) -> tuple[list[str], dict[str, str], bool]:
    """(arms still in contention, settled arm -> why, resolved) from a look's results read at `level`."""
    verdict = results["verdict"]
    settled = {name: why for name, why in verdict["excluded"].items() if name in results["arms"]}
    statuses = {c["arm"]: status_at(c, level) for c in verdict["comparisons"]}
    for c in verdict["comparisons"]:
        if statuses[c["arm"]] == "worse":
            settled[c["arm"]] = (f"significantly worse than {c['best']} at look {look} ({results['test_examples']:,} "
                                 f"test examples, Holm-adjusted p={c['p_adjusted']:.3g} below the look's level "
                                 f"{level:.3g}); not scored on the extra examples")
    contenders = [name for name in results["arms"] if name not in settled]
    return contenders, settled, "inconclusive" not in statuses.values()


def read_looks(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_looks(run_dir: Path, looks: Mapping[str, Any]) -> None:
    atomic_write_text(run_dir / FILE, json.dumps(looks, indent=1))


def extended_test(base: Sequence[Example], split: Sequence[Example], looks: Mapping[str, Any] | None) -> list[Example]:
    """The evaluated examples of the latest look: the run's own subset plus every look's extra ids."""
    if not looks:
        return list(base)
    extra = {i for look in looks["looks"] for i in look.get("extra_ids", [])}
    keep = {e.id for e in base} | extra
    return [e for e in split if e.id in keep]


def sequential_results(build: Any, experiment: Any, run_dir: Path, run_id: str, task: Any, test: Sequence[Example],
                       done: Mapping[str, Any], failures: Mapping[str, str], looks: Mapping[str, Any]) -> dict[str, Any]:
    """results.json of the latest look: `build` (evidence.build_results) on the arms in contention at the look's
    level, the settled arms' figures from the look that settled them, and the looks themselves."""
    last = looks["looks"][-1]
    settled = {name: entry["reason"] for name, entry in last["settled"].items()}
    evaluation = experiment.evaluation.model_copy(update={"alpha": last["alpha"]})
    at_look = experiment.model_copy(update={"evaluation": evaluation})
    contenders = {name: done[name] for name in last["contenders"] if name in done}
    results = build(at_look, run_dir, run_id, task, test, contenders, failures, settled=settled)
    for name, entry in last["settled"].items():
        results["arms"][name] = dict(entry["record"], settled=entry["reason"])
    results["extension"] = {"method": METHOD, "alpha": experiment.evaluation.alpha, "split_size": looks["split_size"],
                            "looks": [{k: v for k, v in look.items() if k not in ("settled", "extra_ids")}
                                      | {"settled": sorted(look["settled"])} for look in looks["looks"]]}
    results["notes"].append(f"Look {len(looks['looks'])} of an extended run: arms in contention are compared on "
                            f"{results['test_examples']:,} test examples at the look's level alpha={last['alpha']:.3g} "
                            "(alpha spending over looks); settled arms keep the figures of the look that settled them")
    return results
