"""Remote: the same prompts sent to any OpenAI-compatible endpoint (zero-shot, few-shot or chain-of-thought).

Answers are free text parsed by the task (an `Answer:` line for chain-of-thought). Failed requests, after
the backend's retries, become predictions with `error` set rather than aborting the arm; they are not
cached, so a re-run retries them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tunewise.arms.context import ArmContext
from tunewise.arms.exemplars import ExemplarPool
from tunewise.arms.prompted import Messages, run_prompted
from tunewise.config import RemoteArm
from tunewise.schema import Generation, Prediction


@dataclass
class RemoteChat:
    client: Any
    arm: RemoteArm
    batch_size: int = 64

    def identity(self) -> dict[str, Any]:
        return {"kind": "remote", "base_url": self.arm.base_url, "model": self.arm.model,
                "max_tokens": self.arm.max_tokens, "temperature": 0.0}

    def answer(self, prompts: Sequence[Messages], advance: Callable[[int], None]) -> list[dict[str, Any]]:
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
    from tunewise.models.remote import RemoteLM

    client = RemoteLM(arm.base_url, arm.model, api_key_env=arm.api_key_env, concurrency=arm.concurrency,
                      timeout_s=arm.timeout_s, retries=arm.retries)
    shots = ExemplarPool(ctx.train, ctx.test).balanced(arm.k, ctx.seed, labelled=bool(ctx.task.labels)) \
        if arm.mode == "few_shot" else []
    variant = "cot" if arm.mode == "cot" and ctx.task.labels else "default"
    return run_prompted(arm.name, ctx, lambda e: ctx.task.messages(e, shots, variant), RemoteChat(client, arm),
                        chunk=max(64, arm.concurrency * 8))
