"""One test per pipeline step, in order: each shows what its step did and checks it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from pytest_punie.finetune.datasets import load_dataset
from pytest_punie.finetune.held_out import write_case_file
from pytest_punie.finetune.lora import MANIFEST
from pytest_punie.finetune.pipeline import evaluate, mode_differences, text_parsing_template
from pytest_punie.finetune.verdict import judge, verdict_text
from pytest_punie.results.run import CaseResult, call_sources_line
from pytest_punie.serving.chat_template import render, render_request, tools_visible

EVALS = Path(__file__).resolve().parent.parent / "evals"


def test_dataset_loads(source_data):
    splits = load_dataset(source_data)
    print({split: len(lines) for split, lines in splits.items()})
    assert splits.get("train"), f"{source_data} has no training lines"
    assert splits.get("valid"), f"{source_data} has no validation lines"


def test_every_line_is_valid(prepared):
    problems = [p for report in prepared.validation.values() for p in report.problems]
    assert not problems, f"{len(problems)} invalid line(s):\n" + "\n".join(map(str, problems))


def test_filters_keep_enough(prepared, punie_training):
    rows = prepared.retention_rows()
    for split, name, kept, removed, fraction in rows:
        print(f"{split:6} {name:12} kept {kept:4}  removed {removed:4}  ({fraction:.0%})")
    print(f"rejected lines and reasons: {prepared.rejects}")
    low = [r for r in rows if r[4] < punie_training.min_retention]
    assert not low, (
        f"filters kept less than --punie-min-retention={punie_training.min_retention}: "
        + ", ".join(f"{split}/{name} {fraction:.0%}" for split, name, _, _, fraction in low)
    )


def test_training_and_evaluation_use_the_same_tool_format(prepared, chat_template, model_path):
    """The journal's H1: training data and the eval requests must render tool calls alike."""
    from pytest_punie.serving.chat_template import model_template

    template = chat_template or model_template(Path(model_path))
    assert template, "the model has no chat template to render tool examples with"
    assert tools_visible(template), "the chat template ignores tools: the model never sees them"
    example = next(
        (
            e.data
            for e in prepared.kept["train"]
            if any(m.get("tool_calls") for m in e.data["messages"])
        ),
        None,
    )
    if example is None:
        pytest.skip("the training data has no tool-calling example")
    messages = example["messages"]
    turn = next(i for i, m in enumerate(messages) if m.get("tool_calls"))
    calls = [call["function"] for call in messages[turn]["tool_calls"]]
    # The request the eval sends after the model called the tools: OpenAI format, with the
    # calls' arguments as JSON strings, exactly as pydantic-ai sends it to the server.
    eval_request = _eval_request(messages[: turn + 1], example["tools"], calls)
    trained_text = render(template, messages[: turn + 1], example["tools"], False)
    eval_text = render_request(template, eval_request, add_generation_prompt=False)
    assert (
        trained_text.split("<|im_start|>assistant")[-1]
        == eval_text.split("<|im_start|>assistant")[-1]
    ), "the tool call renders differently in training and in evaluation"


def _eval_request(messages, tools, calls):
    """Replay the conversation through pydantic-ai against a fake server; return the request
    the eval plugin sends once the model has called the tools (one, or several at once)."""
    from pydantic_ai import Agent, Tool

    from pytest_punie.conversation.agent import Sampling, make_model
    from pytest_punie.serving.server import ServerInfo
    from pytest_punie.testing import FakeOpenAI

    prompt = next(m["content"] for m in messages if m["role"] == "user")
    made = [
        {"name": call["name"], "arguments": json.loads(call["arguments"])
         if isinstance(call["arguments"], str) else call["arguments"]}
        for call in calls
    ]  # fmt: skip
    answers = {prompt: {"tool_calls": made}}

    def tool(spec):
        function = spec["function"]

        def run(**kwargs) -> str:
            return "ok"

        return Tool.from_schema(
            run, name=function["name"], description=function.get("description", ""),
            json_schema=function["parameters"],
        )  # fmt: skip

    with FakeOpenAI(answers) as fake:
        info = ServerInfo(base_url=fake.base_url, model_name="default_model", model=None)
        agent = Agent(make_model(info, Sampling()), tools=[tool(t) for t in tools])
        system = [m["content"] for m in messages if m["role"] == "system"]
        if system:
            agent = Agent(make_model(info, Sampling()), tools=[tool(t) for t in tools],
                          system_prompt=system[0])  # fmt: skip
        agent.run_sync(prompt)
        request = next(r for r in fake.requests if any(m["role"] == "tool" for m in r["messages"]))
    cut = next(i for i, m in enumerate(request["messages"]) if m["role"] == "tool")
    return {"messages": request["messages"][:cut], "tools": request["tools"]}


def test_no_eval_prompt_in_training_data(prepared, training_job):
    """The evals must measure generalisation: no eval prompt is (nearly) a training prompt."""
    if prepared.eval_prompts_checked is None:
        pytest.skip("no eval suite next to the training suite to check against")
    print(f"{prepared.eval_prompts_checked} eval prompts of {training_job.evals} checked")
    assert prepared.eval_prompts_checked > 0


def test_training_loss_goes_down(trained):
    adapter, manifest = trained
    losses = manifest["losses"]
    train = losses["train_losses"]
    print(
        f"{adapter}: train loss {train[0][1]:.3f} -> {train[-1][1]:.3f}; validation "
        f"{[round(v, 3) for _, v in losses['val_losses']]}; "
        f"{losses['seconds_per_iteration']:.2f} s/iter, "
        f"{losses['mean_tokens_per_second']:.0f} tok/s, peak {losses['peak_memory_gb']:.2f} GB"
    )
    assert train[-1][1] < train[0][1], f"training loss did not go down: {train}"
    val = [v for _, v in losses["val_losses"]]
    if len(val) >= 2 and val[-1] > min(val) + 1e-6:
        warnings.warn(
            f"validation loss rose from {min(val):.3f} to {val[-1]:.3f}: overfitting?",
            UserWarning,
            stacklevel=1,
        )


def test_adapter_is_complete(trained):
    adapter, manifest = trained
    assert (adapter / "adapters.safetensors").is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["lora_parameters"]["scale"] == pytest.approx(
        manifest["config"]["alpha"] / manifest["config"]["rank"]
    )
    on_disk = json.loads((adapter / MANIFEST).read_text())
    for key in ("dataset_hash", "config", "losses", "versions"):
        assert on_disk[key], f"the manifest has no {key}"


def test_the_best_checkpoint_is_the_adapter(trained, training_job):
    """With --punie-save-every (or a recipe's own) and a figure: every checkpoint was scored,
    the adapter holds the weights of the one with the best figure (the earliest of equal ones),
    and none was lost."""
    plan = training_job.checkpoints
    if plan is None or plan.averages:
        pytest.skip("run with --punie-save-every to choose the adapter among checkpoints")
    adapter, manifest = trained
    section = manifest["checkpoints"]
    entries = section["checkpoints"]
    for entry in entries:
        print(f"iteration {entry['iteration']}: {section['select_by']} {entry['figure']:.1%}"
              + ("  selected" if entry["selected"] else ""))  # fmt: skip
    print(f"selected: iteration {section['selected']}, {section['reason']}")
    chosen = next(e for e in entries if e["selected"])
    assert chosen["figure"] == max(e["figure"] for e in entries)
    assert chosen is next(e for e in entries if e["figure"] == chosen["figure"])
    weights = (adapter / chosen["folder"] / "adapters.safetensors").read_bytes()
    assert (adapter / "adapters.safetensors").read_bytes() == weights
    assert all((adapter / e["folder"] / "adapters.safetensors").is_file() for e in entries)


def test_the_average_of_the_checkpoints_is_the_adapter(trained, training_job):
    """With --punie-select-by=average (the tool-calling recipe's own plan): every checkpoint
    saved was averaged, none scored, the adapter's rank is theirs times their number, and the
    checkpoints are all still there."""
    plan = training_job.checkpoints
    if plan is None or not plan.averages:
        pytest.skip("run a recipe that averages, or --punie-select-by=average")
    adapter, manifest = trained
    section = manifest["checkpoints"]
    print(section["reason"])
    saved = sorted(int(p.name) for p in (adapter / "checkpoints").iterdir() if p.name.isdigit())
    assert section["averaged"] == saved
    assert saved[-1] == manifest["config"]["iters"]  # the last iteration is among them
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["lora_parameters"]["rank"] == manifest["config"]["rank"] * len(saved)


def test_adapter_against_base(
    trained, training_job, punie_training, training_runs, eval_options, gate, lora_config,
    request, tmp_path,
):  # fmt: skip
    """With --punie-eval-after: the eval suite on the base (once per session) and on the
    adapter, side by side, the adapter once more with calls parsed by the plugin instead of the
    server, and the gate: no category drops more than allowed (the README's ``*=0.1`` unless
    --punie-max-regression) and a recipe's goal category rises significantly (with several
    seeds: for the median seed, judged at the end of the session). A failed gate fails this
    test (or the session), so the session exits non-zero."""
    if not punie_training.eval_after:
        pytest.skip("run with --punie-eval-after to evaluate the adapter against the base")
    adapter, _ = trained
    model = training_job.model
    base = request.getfixturevalue("base_results")  # only now: it runs the suite on the base
    tuned = evaluate(EVALS, tmp_path / "adapter.json", model=model, adapter=adapter,
                     cwd=tmp_path, extra=eval_options)  # fmt: skip
    template = (adapter / "text-parsing.jinja").absolute()  # the eval runs in tmp_path
    template.write_text(text_parsing_template(training_job.chat_template or ""))
    text_extra = [*eval_options, f"--punie-chat-template={template}"]
    by_text = evaluate(EVALS, tmp_path / "adapter-text.json", model=model, adapter=adapter,
                       cwd=tmp_path, extra=text_extra)  # fmt: skip
    seed = lora_config.seed if punie_training.seeds else None
    verdict = judge(base, tuned, label=str(adapter), seed=seed,
                    over_seeds=punie_training.over_seeds, **gate)  # fmt: skip
    comparison = verdict.comparison
    lines = [verdict_text(verdict), ""]
    for name, document in (("server parses calls", tuned), ("plugin parses calls", by_text)):
        cases = [CaseResult.from_json(c) for c in document["cases"]]
        sources = call_sources_line(cases) or "tool calls: none"
        scores = " ".join(f"{c['name']}={c['mean']:.1%}" for c in document["categories"])
        lines.append(f"{name}: {scores}; {sources}")
    differences = mode_differences(tuned, by_text)
    lines.append(f"same output scored differently by the two modes: {differences or 'none'}")
    table = "\n".join(lines)
    (adapter / "comparison.txt").write_text(table + "\n")
    for name, document in (("base.json", base), ("adapter.json", tuned),
                           ("adapter-text.json", by_text)):  # fmt: skip
        (adapter / f"eval-{name}").write_text(json.dumps(document, indent=1))
    print(table)
    for row in training_runs:
        if row["adapter"] == str(adapter):
            row["scores"] = {c["name"]: c["mean"] for c in tuned["categories"]}
            row["verdict"] = verdict
    # both runs really ran the whole suite, and the comparison pairs every case
    for label, document in (("base", base), ("adapter", tuned), ("text parsing", by_text)):
        errors = [c["nodeid"] for c in document["cases"] if c["outcome"] == "error"]
        assert not errors, f"{label} run: {len(errors)} case(s) errored: {errors[:5]}"
    assert len(tuned["cases"]) == len(base["cases"]) > 0
    assert {c.name for c in comparison.categories} == {c["name"] for c in base["categories"]}
    assert all(c.paired == c.baseline_cases for c in comparison.categories)
    assert not differences, (
        f"the two parsing modes scored the same output differently: {differences}"
    )
    assert verdict.passed, f"{adapter} fails the gate:\n" + "\n".join(verdict.failures)


@pytest.fixture(scope="session")
def split_cases(training_job, tmp_path_factory) -> Path:
    """The data's test split as an eval case file (skips when there is none to check)."""
    split = training_job.data_folder / "test.jsonl"
    if not split.is_file():
        pytest.skip(f"{training_job.data} has no test split")
    lines = [json.loads(text) for text in split.read_text().splitlines() if text.strip()]
    cases = tmp_path_factory.mktemp("test-split")
    if not write_case_file(lines, cases / "eval_test_split.jsonl"):
        pytest.skip(f"{split}: no line has an assistant turn to check")
    return cases


@pytest.fixture(scope="session")
def split_base_results(split_cases, training_job, eval_options, tmp_path_factory) -> dict:
    """The test split on the base model, once per session."""
    folder = tmp_path_factory.mktemp("split-base")
    return evaluate(split_cases, folder / "split-base.json", model=training_job.model,
                    cwd=folder, extra=eval_options)  # fmt: skip


def test_adapter_on_the_test_split(trained, training_job, punie_training, eval_options,
                                   request, tmp_path):  # fmt: skip
    """With --punie-eval-after: the data's test split (lines never trained on; for the
    tool-calling recipe, tools never seen in training) as eval cases, on the base and on the
    adapter; the counts go to ``test-split.txt`` next to the adapter."""
    if not punie_training.eval_after:
        pytest.skip("run with --punie-eval-after to evaluate the adapter against the base")
    adapter, _ = trained
    cases = request.getfixturevalue("split_cases")
    base = request.getfixturevalue("split_base_results")
    tuned = evaluate(cases, tmp_path / "split-adapter.json", model=training_job.model,
                     adapter=adapter, cwd=tmp_path, extra=eval_options)  # fmt: skip
    rows = []
    for label, document in (("base", base), ("adapter", tuned)):
        errors = [c["nodeid"] for c in document["cases"] if c["outcome"] == "error"]
        assert not errors, f"{label} run: {len(errors)} case(s) errored: {errors[:5]}"
        passed = sum(c["outcome"] == "passed" for c in document["cases"])
        called = sum(bool((c.get("response") or {}).get("tool_calls")) for c in document["cases"])
        rows.append(
            f"{label}: {passed}/{len(document['cases'])} right "
            f"({passed / len(document['cases']):.0%}), a tool called in {called}"
        )
        (adapter / f"eval-test-split-{label}.json").write_text(json.dumps(document, indent=1))
    table = f"test split of {training_job.data} ({len(tuned['cases'])} cases)\n" + "\n".join(rows)
    (adapter / "test-split.txt").write_text(table + "\n")
    print(table)
    assert len(tuned["cases"]) == len(base["cases"]) > 0
