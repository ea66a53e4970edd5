"""Which chat template the server renders requests with, and whether it shows the model its tools.

``mlx_lm server`` hands a request's ``tools`` to the tokenizer's chat template. A template that
ignores them (SmolLM2's does) means the model never sees the tools it is evaluated on, and no
training on tool calls can fix that. The plugin renders a request with and without tools: the
same text means the tools are invisible, and it says so. It ships a ChatML template with
Hermes-style ``<tool_call>`` JSON, used for such models, and the training pipeline renders tool
examples with the same template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "CHOICES",
    "TemplateChoice",
    "choose_template",
    "hermes_template",
    "model_template",
    "render",
    "render_request",
    "tools_visible",
]

CHOICES = ("auto", "model", "hermes")
_PROBE_MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
_PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@cache
def hermes_template() -> str:
    """The shipped tool-aware ChatML template (Hermes ``<tool_call>`` JSON)."""
    return (
        resources.files("pytest_punie.serving").joinpath("templates/hermes_tools.jinja").read_text()
    )


def model_template(model_dir: Path) -> str | None:
    """The chat template a model folder ships (``chat_template.jinja`` or tokenizer_config)."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = model_dir / "tokenizer_config.json"
    if not config.is_file():
        return None
    template = json.loads(config.read_text()).get("chat_template")
    if isinstance(template, list):  # named templates: the default one, or the first
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) else None


def render(
    template: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    **extra: Any,
) -> str:
    """Render ``template`` the way transformers' ``apply_chat_template`` does (same Jinja setup)."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(value: Any, indent: int | None = None) -> str:
        return json.dumps(value, indent=indent, ensure_ascii=False)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    return environment.from_string(template).render(
        messages=messages,
        tools=tools,
        add_generation_prompt=add_generation_prompt,
        bos_token="",
        eos_token="",
        **extra,
    )


def render_request(template: str, body: dict[str, Any], add_generation_prompt: bool = True) -> str:
    """What ``mlx_lm server`` renders for an OpenAI chat request ``body``: its own message
    preprocessing first (text parts joined, tool-call arguments parsed from JSON strings)."""
    import copy

    from mlx_lm.server import process_message_content

    messages = copy.deepcopy(body["messages"])
    process_message_content(messages)
    return render(template, messages, body.get("tools"), add_generation_prompt)


def tools_visible(template: str) -> bool:
    """True when rendering a request with tools differs from rendering it without them."""
    return render(template, _PROBE_MESSAGES, _PROBE_TOOLS) != render(template, _PROBE_MESSAGES)


@dataclass(frozen=True)
class TemplateChoice:
    """The template to pass to the server (None: the model's own) and why, for the report."""

    template: str | None
    name: str
    tools_visible: bool | None
    reason: str


def choose_template(choice: str, model: str) -> TemplateChoice:
    """Resolve ``--punie-chat-template`` (auto, model, hermes, or a file) for ``model``.

    ``auto`` keeps a model template that shows tools and replaces one that ignores them.
    """
    if choice not in CHOICES:
        path = Path(choice).expanduser()
        template = path.read_text()
        return TemplateChoice(template, str(path), tools_visible(template), "given as a file")
    if choice == "hermes":
        return TemplateChoice(hermes_template(), "hermes", True, "chosen with the option")
    own = model_template(Path(model)) if Path(model).is_dir() else None
    if own is None:
        reason = "the model has no local chat template to check"
        return TemplateChoice(None, "model", None, reason)
    visible = tools_visible(own)
    if visible or choice == "model":
        reason = "it shows the tools" if visible else "KEPT although it ignores tools"
        return TemplateChoice(None, "model", visible, reason)
    return TemplateChoice(
        hermes_template(),
        "hermes",
        True,
        "the model's own template ignores tools, so the model would never see them",
    )
