"""Deployed is tested (``--punie-parity``), shown with fake OpenAI servers: one for the adapter
as served and one for each derived model. A derived model that answers worse fails the run; one
that answers the same passes; the table, the results file and the HTML report show it; the
options refuse what cannot work. Deriving models is shown with mlx_lm's commands replaced by
stand-ins (the real ones run in ``tests/integration/test_parity.py``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_punie.cases.marker import Case
from pytest_punie.options import PARITY_OPTION
from pytest_punie.results.document import load_run
from pytest_punie.serving import parity as deriving
from pytest_punie.serving.parity import Variant, parse_variants, valid_names
from pytest_punie.testing import FakeOpenAI

CASES = """
import pytest
from pytest_punie import assert_keywords, assert_number

@pytest.mark.punie(category="math", prompt="What is 2 + 2?")
def test_sum(punie_result):
    assert_number(punie_result, 4)

@pytest.mark.punie(category="math", prompt="What is 3 * 3?")
def test_product(punie_result):
    assert_number(punie_result, 9)

@pytest.mark.punie(category="knowledge", prompt="Capital of France?")
def test_capital(punie_result):
    assert_keywords(punie_result, ["Paris"])
"""

RIGHT = {"What is 2 + 2?": "4", "What is 3 * 3?": "9", "Capital of France?": "Paris."}
MATH_WRONG = {**RIGHT, "What is 2 + 2?": "5", "What is 3 * 3?": "10"}


@pytest.fixture
def adapter(pytester: pytest.Pytester) -> Path:
    """An adapter folder as the options check it (served by a fake, never loaded)."""
    folder = pytester.mkdir("adapter")
    (folder / "adapter_config.json").write_text('{"fine_tune_type": "lora"}')
    (folder / "adapters.safetensors").write_bytes(b"weights")
    return folder


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    run = pytester.runpytest_subprocess if "-n" in args else pytester.runpytest
    return run("--punie-adapter=adapter", "-p", "no:cacheprovider", *args)


def test_a_worse_derived_model_fails_the_run_and_a_same_one_passes(
    pytester: pytest.Pytester, adapter: Path
) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(RIGHT) as served, FakeOpenAI(RIGHT) as fused, FakeOpenAI(MATH_WRONG) as q4:
        result = _run(
            pytester,
            f"--punie-base-url={served.base_url}",
            f"--punie-parity=fused={fused.base_url},q4={q4.base_url}",
            "--punie-results=results.json",
        )
        # every case ran on each model, and each model got only its own cases
        assert len(served.chat_requests) == len(fused.chat_requests) == len(q4.chat_requests) == 3
    result.assert_outcomes(passed=7, failed=2)  # q4's two math cases fail as tests
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*parity: the adapter as served against fused, q4; allowed drop *=10% (the default;*",
            "category*adapter*fused*change*paired p*verdict*q4*change*paired p*verdict*",
            "knowledge*100.0%*100.0%*+0.0 pts*same*100.0%*+0.0 pts*same",
            "math*100.0%*100.0%*+0.0 pts*same*0.0%*-100.0 pts*0.500*WORSE",
            "*q4: category 'math' dropped 100.0 points (100.0% -> 0.0%), more than the allowed*",
        ]
    )
    result.stdout.fnmatch_lines(["*broken against the adapter: 2*", "*test_sum*"])
    assert "fused: category" not in result.stdout.str()
    # the ids say which model a case ran on
    result.stdout.fnmatch_lines(["FAILED *::test_sum[[]q4[]]*", "FAILED *::test_product[[]q4[]]*"])
    document = load_run(pytester.path / "results.json")
    assert {c.nodeid for c in document.cases} == {
        "test_a_worse_derived_model_fails_the_run_and_a_same_one_passes.py::" + name
        for name in ("test_sum", "test_product", "test_capital")
    }
    assert {c.variant for c in document.cases} == {"adapter"}
    assert document.overall == 1.0  # the run's own figures are the adapter's
    assert document.parity is not None
    q4_result = next(v for v in document.parity.variants if v.name == "q4")
    assert {c.variant for c in q4_result.cases} == {"q4"}
    assert q4_result.server is not None
    assert q4_result.server["base_url"] == q4.base_url
    assert [r.verdict for r in q4_result.rows] == ["same", "worse", "ok"]  # knowledge, math, all
    assert document.gate is not None
    assert any("q4:" in g for g in document.gate)
    raw = json.loads((pytester.path / "results.json").read_text())
    assert raw["parity"]["default_max_drop"] is True
    assert raw["parity"]["max_drop"] == {"*": 0.1}


def test_derived_models_that_match_pass_the_gate(pytester: pytest.Pytester, adapter: Path) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(RIGHT) as served, FakeOpenAI(RIGHT) as fused:
        result = _run(
            pytester,
            f"--punie-base-url={served.base_url}",
            f"--punie-parity=fused={fused.base_url}",
        )
    result.assert_outcomes(passed=6)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*punie gate passed*"])


def test_the_allowed_drop_is_max_regression(pytester: pytest.Pytester, adapter: Path) -> None:
    """One of two math cases wrong on q8 is a 50-point drop: within 60%, beyond 40%."""
    pytester.makepyfile(CASES)
    one_wrong = {**RIGHT, "What is 2 + 2?": "5"}
    with FakeOpenAI(RIGHT) as served, FakeOpenAI(one_wrong) as q8:
        urls = (f"--punie-base-url={served.base_url}", f"--punie-parity=q8={q8.base_url}")
        within = _run(pytester, *urls, "--punie-max-regression=math=60%")
        beyond = _run(pytester, *urls, "--punie-max-regression=math=40%")
    assert within.ret == 0
    within.stdout.fnmatch_lines(["*allowed drop math=60%", "math*100.0%*50.0%*-50.0 pts*ok"])
    assert beyond.ret == 1
    beyond.stdout.fnmatch_lines(["*q8: category 'math' dropped 50.0 points*"])


def test_case_files_and_repeats_run_on_every_model(
    pytester: pytest.Pytester, adapter: Path
) -> None:
    pytester.makefile(
        ".jsonl",
        eval_math=json.dumps(
            {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "expected": {"number": 4}}
        ),
    )
    with FakeOpenAI(RIGHT) as served, FakeOpenAI(MATH_WRONG) as fused:
        result = _run(
            pytester,
            f"--punie-base-url={served.base_url}",
            f"--punie-parity=fused={fused.base_url}",
            "--punie-repeat=2",
            "-v",
        )
    result.stdout.fnmatch_lines(
        ["*eval_math.jsonl::*[[]repeat0-adapter[]] PASSED*", "*[[]repeat1-fused[]] FAILED*"]
    )
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["general*100.0%*0.0%*-100.0 pts*WORSE"])


def test_cases_marked_in_their_params_run_on_every_model(
    pytester: pytest.Pytester, adapter: Path
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_punie import assert_number

        @pytest.mark.parametrize(("question", "answer"), [
            pytest.param(q, a, marks=pytest.mark.punie(category="math", prompt=q), id=name)
            for name, q, a in [("sum", "What is 2 + 2?", 4), ("product", "What is 3 * 3?", 9)]
        ])
        def test_arithmetic(punie_result, question, answer):
            assert_number(punie_result, answer)
        """
    )
    with FakeOpenAI(RIGHT) as served, FakeOpenAI(MATH_WRONG) as q4:
        result = _run(
            pytester,
            f"--punie-base-url={served.base_url}",
            f"--punie-parity=q4={q4.base_url}",
            "-v",
        )
    result.stdout.fnmatch_lines(["*test_arithmetic[[]sum-adapter[]] PASSED*"])
    result.stdout.fnmatch_lines(["*test_arithmetic[[]product-q4[]] FAILED*"])
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["math*100.0%*0.0%*-100.0 pts*WORSE"])


class TimedFake(FakeOpenAI):
    """A fake server that notes when it answered each chat request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answered: list[float] = []

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("max_tokens") != 1:
            self.answered.append(time.monotonic())
        return super().reply(body)


def test_the_models_answer_one_after_the_other(pytester: pytest.Pytester, adapter: Path) -> None:
    """Servers computing at once on a few cores slow each other down: the adapter's cases run
    first, then each derived model's, each model's cases concurrently."""
    pytester.makepyfile(CASES)
    delay = 1.0  # an answer comes this long after its request: no request overlaps another's
    fakes = [TimedFake(RIGHT, delay=delay) for _ in range(3)]
    with fakes[0] as served, fakes[1] as fused, fakes[2] as q4:
        result = _run(
            pytester,
            f"--punie-base-url={served.base_url}",
            f"--punie-parity=fused={fused.base_url},q4={q4.base_url}",
            "-v",
        )
    result.assert_outcomes(passed=9)
    assert max(served.answered) < min(fused.answered) - delay
    assert max(fused.answered) < min(q4.answered) - delay
    assert max(fused.max_in_flight, q4.max_in_flight) == 3  # each model's cases at once
    result.stdout.fnmatch_lines(
        ["*test_sum[[]adapter[]] PASSED*", "*test_capital[[]adapter[]] PASSED*",
         "*test_sum[[]fused[]] PASSED*", "*test_capital[[]fused[]] PASSED*",
         "*test_sum[[]q4[]] PASSED*"]
    )  # fmt: skip


def test_under_xdist(pytester: pytest.Pytester, adapter: Path) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(RIGHT) as served, FakeOpenAI(RIGHT) as fused, FakeOpenAI(MATH_WRONG) as q4:
        result = _run(
            pytester,
            "-n",
            "2",
            f"--punie-base-url={served.base_url}",
            f"--punie-parity=fused={fused.base_url},q4={q4.base_url}",
        )
        assert len(q4.chat_requests) == 3  # one worker ran the conversations, once each
    result.assert_outcomes(passed=7, failed=2)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["math*100.0%*100.0%*+0.0 pts*same*0.0%*-100.0 pts*WORSE"])


def test_the_html_report_shows_the_parity_table(pytester: pytest.Pytester, adapter: Path) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(RIGHT) as served, FakeOpenAI(MATH_WRONG) as q4:
        _run(
            pytester,
            f"--punie-base-url={served.base_url}",
            f"--punie-parity=q4={q4.base_url}",
            "--html=report.html",
        )
    page = (pytester.path / "report.html").read_text()
    assert "Deployed is tested" in page
    assert 'id="punie-parity"' in page
    assert "WORSE" in page
    assert '<tr class="worse">' in page  # red in the report's stylesheet
    assert "#punie-parity tr.worse td" in page


def test_a_derived_model_that_cannot_be_reached_fails_its_cases_and_the_gate(
    pytester: pytest.Pytester, adapter: Path
) -> None:
    pytester.makepyfile(CASES)
    with FakeOpenAI(RIGHT) as served:
        result = _run(
            pytester,
            f"--punie-base-url={served.base_url}",
            "--punie-parity=q4=http://127.0.0.1:9/v1",
            "--punie-timeout=5",
        )
    result.assert_outcomes(passed=3, errors=3)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*--punie-parity=q4: no OpenAI-compatible server answers at http://127.0.0.1:9/v1*",
            "*q4: 3 case(s) errored: *",
        ]
    )


def test_the_job_summary_shows_the_parity_table(
    pytester: pytest.Pytester, adapter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.makepyfile(CASES)
    with FakeOpenAI(RIGHT) as served, FakeOpenAI(MATH_WRONG) as q4:
        _run(pytester, f"--punie-base-url={served.base_url}", f"--punie-parity=q4={q4.base_url}")
    text = summary.read_text()
    assert "### Deployed is tested" in text
    assert "| category | adapter | q4 | change | paired p | verdict |" in text
    assert "| math | 100.0% | 0.0% | -100.0 pts | 0.500 | WORSE |" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--punie-parity=fused"], "*--punie-parity=fused needs --punie-adapter*"),
        (
            ["--punie-adapter=adapter", "--punie-parity=fused,q7"],
            "*--punie-parity=fused,q7: unknown variant 'q7'; valid: fused, q2, q3, q4, q5, q6, q8",
        ),
        (
            ["--punie-adapter=adapter", "--punie-parity=adapter"],
            "*'adapter' always runs (the adapter as served)*",
        ),
        (["--punie-adapter=adapter", "--punie-parity=q4,q4"], "*variant 'q4' is given twice"),
        (
            ["--punie-adapter=adapter", "--punie-parity=fused=ftp://x"],
            "*the server of fused must be an http(s) URL such as http://127.0.0.1:8080/v1",
        ),
        (
            ["--punie-adapter=adapter", "--punie-base-url=http://127.0.0.1:9/v1",
             "--punie-parity=fused"],
            "*with --punie-base-url the models are not started here; give the server of fused*",
        ),
    ],
)  # fmt: skip
def test_bad_parity_options_stop_the_run(
    pytester: pytest.Pytester, adapter: Path, args: list[str], message: str
) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_max_regression_alone_is_accepted_with_parity(
    pytester: pytest.Pytester, adapter: Path
) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest(
        "--punie-adapter=adapter", "--punie-parity=fused=http://127.0.0.1:9/v1",
        "--punie-max-regression=5%", "--co",
    )  # fmt: skip
    assert result.ret == 0


def test_parse_variants() -> None:
    assert parse_variants("fused, q4") == (Variant("fused"), Variant("q4"))
    assert parse_variants("q8=http://h:1/v1/") == (Variant("q8", "http://h:1/v1"),)
    assert Variant("q4").bits == 4
    assert Variant("fused").bits is None
    assert set(valid_names()) == {"fused", "q2", "q3", "q4", "q5", "q6", "q8"}
    with pytest.raises(ValueError, match="an empty variant"):
        parse_variants("fused,")
    assert PARITY_OPTION.flag == "--punie-parity"


@given(st.text(alphabet="fusedq0123456789,=:/htp. ", max_size=40))
def test_any_parity_text_is_variants_or_a_value_error(text: str) -> None:
    try:
        variants = parse_variants(text)
    except ValueError:
        return
    names = [v.name for v in variants]
    assert names
    assert len(set(names)) == len(names)
    assert set(names) <= set(valid_names())
    assert all(v.base_url is None or v.base_url.startswith("http") for v in variants)


def test_the_case_id_leaves_out_the_model_and_the_repeat() -> None:
    """The last id part is the variant's (added last); a parameter of the same name elsewhere
    in the id stays."""
    assert Case("t.py::test_x[fused]", variant="fused").case_id == "t.py::test_x"
    assert Case("t.py::test_x[a-repeat1-q4]", repeat=1, variant="q4").case_id == "t.py::test_x[a]"
    assert Case("t.py::test_x[fused-adapter]", variant="adapter").case_id == "t.py::test_x[fused]"
    assert Case("t.py::test_x[fused]").case_id == "t.py::test_x[fused]"


# -- deriving models, with stand-ins for mlx_lm's commands ---------------------------------------


def _model_folder(folder: Path, weights: bytes, quantized: bool = False) -> Path:
    folder.mkdir(parents=True)
    config: dict[str, Any] = {"model_type": "llama"}
    if quantized:
        config["quantization"] = {"bits": 4, "group_size": 64}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(weights)
    return folder


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Replace mlx_lm fuse and convert with functions that write a model folder whose weights
    say how it was made; return the commands run."""
    commands: list[str] = []

    def fuse(model: str, adapter: Path, out: Path, *, dequantize: bool = False) -> None:
        commands.append(f"fuse{' --dequantize' if dequantize else ''}")
        base = (Path(model) / "model.safetensors").read_bytes()
        quantized = "quantization" in (Path(model) / "config.json").read_text() and not dequantize
        _model_folder(out, base + b"+fused", quantized)

    def quantize(source: Path, out: Path, bits: int) -> None:
        assert "quantization" not in (source / "config.json").read_text()
        commands.append(f"convert -q {bits}")
        _model_folder(out, (source / "model.safetensors").read_bytes() + b"+q%d" % bits, True)

    monkeypatch.setattr(deriving, "_fuse", fuse)
    monkeypatch.setattr(deriving, "_quantize", quantize)
    monkeypatch.setenv("PUNIE_CACHE", str(tmp_path / "cache"))
    return commands


def _adapter_folder(folder: Path, weights: bytes = b"lora") -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapters.safetensors").write_bytes(weights)
    return folder


def test_derived_models_are_made_once_and_reused(tmp_path: Path, stand_ins: list[str]) -> None:
    base = _model_folder(tmp_path / "base", b"base")
    adapter = _adapter_folder(tmp_path / "adapter")
    q4 = deriving.derive(str(base), adapter, Variant("q4"))
    fused = deriving.derive(str(base), adapter, Variant("fused"))
    assert stand_ins == ["fuse", "convert -q 4"]  # q4 is the fused model quantized
    assert (fused / "model.safetensors").read_bytes() == b"base+fused"
    assert (q4 / "model.safetensors").read_bytes() == b"base+fused+q4"
    manifest = json.loads((q4 / "punie-derived.json").read_text())
    assert manifest["steps"][1] == "mlx_lm convert -q --q-bits 4"
    assert deriving.derive(str(base), adapter, Variant("q4")) == q4
    assert stand_ins == ["fuse", "convert -q 4"]  # a second run reuses them
    assert not [p for p in q4.parent.iterdir() if p.name.startswith(".")]  # no temp folder left
    # another adapter's content is another model
    (adapter / "adapters.safetensors").write_bytes(b"retrained")
    assert deriving.derive(str(base), adapter, Variant("q4")) != q4
    assert stand_ins[-2:] == ["fuse", "convert -q 4"]


def test_a_quantized_base_is_quantized_again_from_its_float_fused_model(
    tmp_path: Path, stand_ins: list[str]
) -> None:
    base = _model_folder(tmp_path / "base", b"base", quantized=True)
    adapter = _adapter_folder(tmp_path / "adapter")
    deriving.derive(str(base), adapter, Variant("q8"))
    assert stand_ins == ["fuse", "fuse --dequantize", "convert -q 8"]


def test_a_failed_derivation_leaves_nothing_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUNIE_CACHE", str(tmp_path / "cache"))
    base = _model_folder(tmp_path / "base", b"not a model")
    adapter = _adapter_folder(tmp_path / "adapter")
    with pytest.raises(deriving.DerivedModelError, match="mlx_lm fuse failed"):
        deriving.derive(str(base), adapter, Variant("fused"))
    target = deriving.derived_folder(str(base), adapter, "fused")
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.is_dir()]


def test_each_derived_model_has_its_own_cache_key(tmp_path: Path, stand_ins: list[str]) -> None:
    """The response cache keys on what is served: the adapter's server and each derived
    model's differ, so no answer of one is taken for another."""
    from pytest_punie.conversation.cache import served_content
    from pytest_punie.serving.shared import ServerSpec, planned

    base = _model_folder(tmp_path / "base", b"base")
    adapter = _adapter_folder(tmp_path / "adapter")
    folders = [deriving.derive(str(base), adapter, Variant(n)) for n in ("fused", "q4", "q8")]
    specs = [ServerSpec(model=str(base), adapter=adapter)]
    specs += [ServerSpec(model=str(folder)) for folder in folders]
    keys = [json.dumps(served_content(planned(spec)), sort_keys=True) for spec in specs]
    assert len(set(keys)) == 4
