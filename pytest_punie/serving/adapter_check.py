"""Checks that the server serves what it was asked to: an adapter must change the model.

An adapter that changes nothing (never trained, LoRA B matrices still zero, or not applied) makes
every adapter-vs-base comparison meaningless, so it stops the run. The check compares the
log-probabilities of a fixed probe with and without the adapter, on the server itself.
"""

from __future__ import annotations

import json
from typing import Any

from pytest_punie.serving.server import SERVED_MODEL_NAME, ServerError, request_json

__all__ = ["PROBE", "adapter_effect", "check_adapter_changes_model", "probe_logprobs"]

# float32 arithmetic through an untrained LoRA layer moves log-probabilities by ~1e-5; any
# trained adapter moves them by far more.

PROBE = "Write one sentence about the sea."
TOLERANCE = 1e-3


def _positions(logprobs: Any) -> list[dict[int, float]]:
    """Per generated position: token id -> log-probability (the chosen token and the top ones).

    Matched by id, because the order of the top tokens is not stable between two runs.
    """
    positions = []
    for entry in (logprobs or {}).get("content") or []:
        found = {int(top["id"]): float(top["logprob"]) for top in entry.get("top_logprobs") or []}
        found[int(entry["id"])] = float(entry["logprob"])
        positions.append(found)
    return positions


def probe_logprobs(
    base_url: str, model_name: str, tokens: int = 8
) -> tuple[str, list[dict[int, float]]]:
    """The greedy text and per-position log-probabilities of the probe, from the server."""
    payload = {
        "model": model_name,
        "messages": [{"role": "user", "content": PROBE}],
        "max_tokens": tokens,
        "temperature": 0.0,
        "logprobs": True,
        "top_logprobs": 5,
    }
    status, body = request_json(f"{base_url}/chat/completions", payload, timeout=300)
    if status != 200:
        raise ServerError(f"the log-probability probe of {model_name!r} got {status}: {body[:300]}")
    choice = json.loads(body)["choices"][0]
    return str(choice["message"].get("content") or ""), _positions(choice.get("logprobs"))


def adapter_effect(base_url: str, model_path: str) -> float:
    """The largest change the adapter makes to the probe's log-probabilities (0: none).

    ``default_model`` is served with the adapter; the model's own path without one. Asking for
    the base makes mlx_lm swap models, so ``default_model`` is asked again at the end, which
    loads the adapter back before any case runs.
    """
    adapted_text, adapted = probe_logprobs(base_url, SERVED_MODEL_NAME)
    base_text, base = probe_logprobs(base_url, model_path)
    probe_logprobs(base_url, SERVED_MODEL_NAME, tokens=1)
    if adapted_text != base_text or len(adapted) != len(base):
        return float("inf")
    changes = [
        abs(position[token] - other[token])
        for position, other in zip(adapted, base, strict=True)
        for token in position.keys() & other.keys()
    ]
    return max(changes, default=0.0)


def check_adapter_changes_model(base_url: str, model_path: str, adapter: str) -> float:
    """Raise ``ServerError`` when the adapter leaves the model's output unchanged."""
    effect = adapter_effect(base_url, model_path)
    if effect < TOLERANCE:
        raise ServerError(
            f"the adapter {adapter} does not change the model: the log-probabilities of a fixed "
            f"probe are the same with and without it (largest difference {effect:.2g}). Was it "
            "trained (an untrained LoRA adapter is exactly the base model)?"
        )
    return effect
