"""Chat templates: whether a model sees its tools, and the shipped Hermes tool template."""

from __future__ import annotations

import json

import pytest

from pytest_punie.serving.chat_template import (
    choose_template,
    hermes_template,
    model_template,
    render,
    tools_visible,
)

# SmolLM2-135M-Instruct's own template, as its GGUF carries it: it never renders `tools`.
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "list_dir",
            "description": "List a folder.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        },
    }
]


def _model_dir(tmp_path, template):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    return folder


def test_smollm2_template_hides_tools_and_hermes_shows_them():
    assert not tools_visible(SMOLLM2)
    assert tools_visible(hermes_template())


def test_hermes_renders_tools_calls_and_results():
    messages = [
        {"role": "user", "content": "What is in src?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "1", "type": "function",
                 "function": {"name": "list_dir", "arguments": '{"path": "src"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "1", "content": "app.py\nutils.py"},
    ]  # fmt: skip
    text = render(hermes_template(), messages, TOOLS)
    assert '"name": "list_dir"' in text.split("\n</tools>")[0]
    assert '<tool_call>\n{"name": "list_dir", "arguments": {"path": "src"}}\n</tool_call>' in text
    assert "<tool_response>\napp.py\nutils.py\n</tool_response>" in text
    assert text.endswith("<|im_start|>assistant\n")
    # the same call given as a dict (as training data holds it) renders the same way
    messages[1]["tool_calls"][0]["function"]["arguments"] = {"path": "src"}
    assert render(hermes_template(), messages, TOOLS) == text


def test_hermes_without_tools_is_plain_chatml():
    text = render(hermes_template(), [{"role": "user", "content": "hi"}])
    assert text == render(SMOLLM2, [{"role": "user", "content": "hi"}])


def test_auto_replaces_a_template_that_ignores_tools(tmp_path):
    choice = choose_template("auto", str(_model_dir(tmp_path, SMOLLM2)))
    assert choice.name == "hermes"
    assert choice.template == hermes_template()
    assert "ignores tools" in choice.reason


def test_auto_keeps_a_template_that_shows_tools(tmp_path):
    choice = choose_template("auto", str(_model_dir(tmp_path, hermes_template())))
    assert choice.template is None
    assert choice.tools_visible is True


def test_model_keeps_the_model_template_and_says_tools_are_invisible(tmp_path):
    choice = choose_template("model", str(_model_dir(tmp_path, SMOLLM2)))
    assert choice.template is None
    assert choice.tools_visible is False


def test_a_template_file(tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text(SMOLLM2)
    choice = choose_template(str(path), "org/model")
    assert choice.template == SMOLLM2
    assert choice.tools_visible is False


def test_model_template_reads_jinja_file_and_named_templates(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    assert model_template(folder) is None
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": [{"name": "tool_use", "template": "T"},
                                      {"name": "default", "template": "D"}]})
    )  # fmt: skip
    assert model_template(folder) == "D"
    (folder / "chat_template.jinja").write_text("J")
    assert model_template(folder) == "J"


def test_bad_chat_template_option_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--punie-chat-template=nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--punie-chat-template=nope: must be one of auto, model*"])
