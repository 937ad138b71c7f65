"""Remote: the same prompts sent to any OpenAI-compatible endpoint (zero-shot, few-shot or chain-of-thought).

Answers are free text parsed by the task (an `Answer:` line for chain-of-thought). Failed requests, after
the backend's retries, become predictions with `error` set rather than aborting the arm; they are not
cached, so a re-run retries them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from tunewise.arms.base import priced_cost_per_1k
from tunewise.settings import ArmConfig

if TYPE_CHECKING:
    from tunewise.arms.context import ArmContext
    from tunewise.schema import Prediction
    from tunewise.settings import CostConfig

Messages = list[dict[str, str]]


class RemoteArm(ArmConfig):
    """Any OpenAI-compatible endpoint."""

    type: Literal["remote"]
    base_url: str = Field(description="Endpoint base URL, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(description="Model name the endpoint knows.")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="Environment variable holding the key; null for none.")
    mode: Literal["zero_shot", "few_shot", "cot"] = Field("zero_shot", description="Prompting strategy.")
    k: int = Field(4, ge=1, le=64, description="Exemplars for few_shot mode.")
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once.")
    timeout_s: float = Field(60, gt=0, description="Per-request timeout.")
    retries: int = Field(4, ge=0, le=20, description="Retries on 429/5xx/timeouts, with exponential backoff.")
    max_tokens: int = Field(64, ge=1, le=32768, description="Completion budget per request.")


Config = RemoteArm


def train_examples(arm: RemoteArm, available: int) -> int:
    return min(arm.k, available) if arm.mode == "few_shot" else 0


def cost_per_1k(arm: RemoteArm, predictions: Sequence[Prediction], cost: CostConfig,
                known: Mapping[str, float | None]) -> float | None:
    return priced_cost_per_1k(arm.model, predictions, cost)


def not_served(arm: RemoteArm) -> str:
    return "a remote arm is answered by its own endpoint, not served by tunewise"


@dataclass
class RemoteChat:
    client: Any
    arm: RemoteArm
    batch_size: int = 64

    def identity(self) -> dict[str, Any]:
        return {"kind": "remote", "base_url": self.arm.base_url, "model": self.arm.model,
                "max_tokens": self.arm.max_tokens, "temperature": 0.0}

    def answer(self, prompts: Sequence[Messages], advance: Callable[[int], None]) -> list[dict[str, Any]]:
        from tunewise.schema import Generation

        results = self.client.chat(prompts, max_tokens=self.arm.max_tokens, temperature=0.0, progress=advance)
        answers = []
        for result in results:
            if isinstance(result, Generation):
                answers.append({"raw": result.text, "prompt_tokens": result.prompt_tokens,
                                "completion_tokens": result.completion_tokens, "latency_s": result.latency_s})
            else:
                answers.append({"raw": "", "error": result.error, "latency_s": 0.0})
        return answers


def run(arm: RemoteArm, ctx: ArmContext) -> list[Prediction]:
    from tunewise.arms.exemplars import ExemplarPool
    from tunewise.arms.prompted import run_prompted
    from tunewise.models.remote import RemoteLM

    client = RemoteLM(arm.base_url, arm.model, api_key_env=arm.api_key_env, concurrency=arm.concurrency,
                      timeout_s=arm.timeout_s, retries=arm.retries)
    pool = ExemplarPool(ctx.train, ctx.test, drop_leaked=ctx.allow_leakage)
    shots = pool.balanced(arm.k, ctx.seed, labelled=bool(ctx.task.labels)) \
        if arm.mode == "few_shot" else []
    variant = "cot" if arm.mode == "cot" and ctx.task.labels else "default"
    return run_prompted(arm.name, ctx, lambda e: ctx.task.messages(e, shots, variant), RemoteChat(client, arm),
                        chunk=max(64, arm.concurrency * 8))
