"""The promotion gate and the registry's aliases, against a real ``mlflow server``.

The candidates here are real registered versions of one small logged model; what the gate compares
(test predictions) is given directly, so each case states exactly the accuracies it needs instead
of training students until one happens to be better. The whole pipeline's path through the same
code is covered in test_tracking.py.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import queue
import random
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from kdpipe.config import GateConfig
from kdpipe.infra.errors import KdpipeError, TrackingError
from kdpipe.models import create_model
from kdpipe.models.file import MODEL_FILE, save_model
from kdpipe.promotion.comparison import Basis
from kdpipe.promotion.gate import Scores, Thresholds
from kdpipe.promotion.moves import Candidate, basis_tags, promote_candidate, rollback
from kdpipe.promotion.records import PromotionRecord
from kdpipe.tracking import registry
from kdpipe.tracking.logged_models import log_classifier
from kdpipe.tracking.tags import (
    CHAMPION_HISTORY,
    DATA_SHA256,
    LOCK_OWNER,
    MODEL_SHA256,
    ONNX_INT8_MODEL_URI,
    ONNX_MODEL_URI,
    PREVIOUS_CHAMPION,
    PROMOTION_COMPARED_IMAGES,
    PROMOTION_COMPARED_ON,
    STUDENT_VERSION,
)

N_TEST = 400
DATA = "a" * 64
OTHER_DATA = "b" * 64
CLASSES = [f"c{i}" for i in range(10)]


def result(top1: float, sha: str = DATA) -> Scores:
    """Test predictions with the first round(top1 * N) images right: nested, so McNemar's c is 0."""
    correct = torch.zeros(N_TEST, dtype=torch.bool)
    correct[: round(top1 * N_TEST)] = True
    return Scores(float(correct.float().mean()), correct, sha)


def scored_from_tags(mv: Any) -> Scores:
    """The champion evaluator: a version's test results, rebuilt from the top-1 it was registered with."""
    return result(float(mv.tags["kdpipe.top1"]), mv.tags[DATA_SHA256])


def candidate(
    model_uri: str, top1: float, sha: str = DATA, passed: bool = True, fingerprint: str | None = None
) -> Candidate:
    """A validated student; with ``fingerprint`` its tags record a stable split and the classes, as promote's do."""
    basis = Basis(sha, fingerprint, tuple(CLASSES) if fingerprint else None)
    tags = {MODEL_SHA256: uuid.uuid4().hex, **basis_tags(basis), "kdpipe.top1": str(top1)}
    reasons = () if passed else ("top-1 0.1000 is below validate.min_top1 0.5000",)
    thresholds = Thresholds(passed, reasons, top1, 0.0, 1.0, None, "pytorch")
    return Candidate(model_uri, None, result(top1, sha), thresholds, tags)


@pytest.fixture(scope="module")
def model_uri(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One small student logged once on the server; every candidate registers a version of it."""
    import mlflow

    torch.manual_seed(0)
    net = create_model("cnn8", len(CLASSES), 1).eval()
    ckpt = tmp_path_factory.mktemp("logged") / MODEL_FILE
    save_model(ckpt, net, "cnn8", CLASSES, 1)
    manifest = {"shape": [1, 28, 28], "classes": CLASSES, "mean": [0.3], "std": [0.35], "sha256": DATA}
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("promotion-tests")
    with mlflow.start_run():
        return log_classifier(net, ckpt, manifest, tracking_uri=mlflow_server)["model_uri"]


@pytest.fixture
def reg(mlflow_server: str) -> tuple[Any, str]:
    """A client on the real server and a registered-model name of this test's own."""
    return registry.client(mlflow_server), f"students-{uuid.uuid4().hex[:8]}"


def champion_of(client: Any, name: str) -> str | None:
    mv = registry.version_by_alias(client, name, registry.CHAMPION)
    return None if mv is None else str(mv.version)


def promote(client: Any, name: str, cand: Candidate, gate: GateConfig | None = None, **kw: Any) -> PromotionRecord:
    return promote_candidate(client, name, cand, gate or GateConfig(), scored_from_tags, **kw)


def test_first_model_becomes_champion(reg: tuple[Any, str], model_uri: str) -> None:
    client, name = reg
    record = promote(client, name, candidate(model_uri, 0.80))
    assert record.promoted and record.version == "1"
    assert champion_of(client, name) == "1"
    assert str(registry.version_by_alias(client, name, registry.CHALLENGER).version) == "1"
    tags = client.get_model_version(name, "1").tags
    assert tags["kdpipe.promotion.decision"] == "champion"
    assert "no champion yet" in tags["kdpipe.promotion.reasons"]
    assert tags[PREVIOUS_CHAMPION] == ""
    assert "v1 is the new champion" in record.message


def test_worse_model_stays_challenger(reg: tuple[Any, str], model_uri: str) -> None:
    client, name = reg
    promote(client, name, candidate(model_uri, 0.80))
    record = promote(client, name, candidate(model_uri, 0.70))
    assert not record.promoted and record.version == "2"
    assert champion_of(client, name) == "1"
    assert str(registry.version_by_alias(client, name, registry.CHALLENGER).version) == "2"
    tags = client.get_model_version(name, "2").tags
    assert tags["kdpipe.promotion.decision"] == "challenger"
    assert "does not beat the champion v1" in tags["kdpipe.promotion.reasons"]
    assert "stays challenger, champion stays v1" in record.message


def test_better_model_becomes_champion(reg: tuple[Any, str], model_uri: str) -> None:
    client, name = reg
    promote(client, name, candidate(model_uri, 0.80))
    record = promote(client, name, candidate(model_uri, 0.85))
    assert record.promoted
    assert champion_of(client, name) == "2"
    assert client.get_model_version(name, "2").tags[PREVIOUS_CHAMPION] == "1"
    assert "champion v1 -> v2 (promoted)" in client.get_registered_model(name).tags[CHAMPION_HISTORY]


def test_tie_and_margin_keep_the_champion(reg: tuple[Any, str], model_uri: str) -> None:
    client, name = reg
    promote(client, name, candidate(model_uri, 0.80))
    tie = promote(client, name, candidate(model_uri, 0.80))
    small = promote(client, name, candidate(model_uri, 0.81), GateConfig(min_improvement=0.02))
    enough = promote(client, name, candidate(model_uri, 0.83), GateConfig(min_improvement=0.02))
    assert not tie.promoted and "does not beat" in tie.message
    assert not small.promoted and "less than gate.min_improvement 0.0200" in small.message
    assert enough.promoted and champion_of(client, name) == enough.version


def test_mcnemar_must_agree_when_significance_is_set(reg: tuple[Any, str], model_uri: str) -> None:
    client, name = reg
    promote(client, name, candidate(model_uri, 0.800))
    gate = GateConfig(significance=0.05)
    lucky = promote(client, name, candidate(model_uri, 0.805), gate)  # 2 more right of 400: chance
    clear = promote(client, name, candidate(model_uri, 0.850), gate)  # 20 more right, none worse
    assert not lucky.promoted and "McNemar: 2 images only the student gets right, 0 only" in lucky.message
    assert clear.promoted and champion_of(client, name) == clear.version


def test_on_new_data_the_champion_is_compared_on_todays_gate_split_and_the_tags_say_which(
    reg: tuple[Any, str], model_uri: str
) -> None:
    """Night 1 on DATA, nights 2 and 3 on OTHER_DATA with the same split fingerprint: the champion's figures
    (its recorded top-1, standing in for its re-measurement) are compared, a worse student stays challenger and a
    better one is promoted; the version tags record the data and the images of the comparison."""
    client, name = reg
    promote(client, name, candidate(model_uri, 0.80, fingerprint="f" * 16))
    worse = promote(client, name, candidate(model_uri, 0.75, OTHER_DATA, fingerprint="f" * 16))
    assert not worse.promoted and champion_of(client, name) == "1"
    assert (
        f"pass: champion v1 re-measured on today's gate split ({OTHER_DATA[:12]}, {N_TEST} images; split proven "
        "disjoint)" in worse.gate.checks
    )
    assert worse.reasons == (
        "top-1 0.7500 does not beat the champion v1 (0.8000) re-measured on today's gate split: -0.0500",
    )
    tags = client.get_model_version(name, worse.version).tags
    assert (tags[PROMOTION_COMPARED_ON], tags[PROMOTION_COMPARED_IMAGES]) == (OTHER_DATA, str(N_TEST))
    assert tags["kdpipe.split_fingerprint"] == "f" * 16 and json.loads(tags["kdpipe.classes"]) == CLASSES
    better = promote(client, name, candidate(model_uri, 0.85, OTHER_DATA, fingerprint="f" * 16))
    assert better.promoted and champion_of(client, name) == better.version


def test_a_champion_without_a_split_fingerprint_is_rescored_or_refused_as_gate_champion_on_new_data_says(
    reg: tuple[Any, str], model_uri: str
) -> None:
    client, name = reg
    promote(client, name, candidate(model_uri, 0.80))
    refused = promote_candidate(
        client,
        name,
        candidate(model_uri, 0.99, OTHER_DATA, fingerprint="f" * 16),
        GateConfig(champion_on_new_data="refuse"),
        lambda mv: pytest.fail("a refused champion is not scored"),
    )
    assert not refused.promoted and champion_of(client, name) == "1" and len(refused.reasons) == 1
    assert refused.reasons[0].endswith("gate.champion_on_new_data is refuse, so the two are not compared")
    assert "(champion v1 records no split fingerprint and no class list)" in refused.reasons[0]
    assert PROMOTION_COMPARED_ON not in client.get_model_version(name, refused.version).tags
    rescored = promote(client, name, candidate(model_uri, 0.99, OTHER_DATA, fingerprint="f" * 16))
    assert rescored.promoted and "not proven disjoint: champion v1 records no split fingerprint" in rescored.message


def test_failed_thresholds_never_become_champion(reg: tuple[Any, str], model_uri: str) -> None:
    client, name = reg
    record = promote(client, name, candidate(model_uri, 0.10, passed=False))
    assert not record.promoted and champion_of(client, name) is None
    assert str(registry.version_by_alias(client, name, registry.CHALLENGER).version) == record.version
    assert "below validate.min_top1" in record.message


def test_dry_run_changes_nothing(reg: tuple[Any, str], model_uri: str) -> None:
    client, name = reg
    promote(client, name, candidate(model_uri, 0.80))
    before = [(mv.version, dict(mv.tags), list(mv.aliases)) for mv in client.search_model_versions(f"name = '{name}'")]
    record = promote(client, name, candidate(model_uri, 0.90), dry_run=True)
    assert record.dry_run and record.would_promote and not record.promoted
    assert record.message.startswith("dry run: nothing changed") and "would become champion" in record.message
    after = [(mv.version, dict(mv.tags), list(mv.aliases)) for mv in client.search_model_versions(f"name = '{name}'")]
    assert after == before


def test_rerunning_promote_for_the_same_student_adds_no_version(reg: tuple[Any, str], model_uri: str) -> None:
    client, name = reg
    cand = candidate(model_uri, 0.80)
    promote(client, name, cand)
    again = promote(client, name, cand)
    assert "already the champion" in again.message
    assert len(client.search_model_versions(f"name = '{name}'")) == 1


def test_rollback_moves_champion_back_and_keeps_history(
    reg: tuple[Any, str], model_uri: str, make_params: Any, tmp_path: Path, mlflow_server: str, capsys: Any
) -> None:
    client, name = reg
    promote(client, name, candidate(model_uri, 0.80))
    promote(client, name, candidate(model_uri, 0.85))
    promote(client, name, candidate(model_uri, 0.90))
    assert champion_of(client, name) == "3"

    dry = rollback(client, name, dry_run=True)
    assert (dry.from_version, dry.to_version) == ("3", "2") and champion_of(client, name) == "3"

    params_file = tmp_path / "params.yaml"
    params = make_params(tracking__uri=mlflow_server, tracking__registered_model=name)
    params_file.write_text(yaml.safe_dump(params.to_dict()))
    from kdpipe.cli import main  # here, so the racing processes below need not import the whole CLI

    assert main(["-q", "rollback", "-c", str(params_file)]) == 0
    assert capsys.readouterr().out.strip() == f"champion of {name} moved from v3 back to v2"
    assert champion_of(client, name) == "2"
    assert client.get_model_version(name, "3").tags["kdpipe.rolled_back_to"] == "2"

    assert rollback(client, name).to_version == "1"
    with pytest.raises(KdpipeError, match=r"champion v1 of .* has no previous champion"):
        rollback(client, name)
    assert champion_of(client, name) == "1"
    history = client.get_registered_model(name).tags[CHAMPION_HISTORY].splitlines()
    assert [line.split(" ", 1)[1] for line in history] == [
        "champion v- -> v1 (promoted)",
        "champion v1 -> v2 (promoted)",
        "champion v2 -> v3 (promoted)",
        "champion v3 -> v2 (rollback)",
        "champion v2 -> v1 (rollback)",
    ]


def test_rollback_without_champion_is_a_clear_error(reg: tuple[Any, str]) -> None:
    client, name = reg
    with pytest.raises(KdpipeError, match=f"registry: {name} has no champion to roll back"):
        rollback(client, name)


def _promote_in_process(uri: str, name: str, model_uri: str, top1: float, barrier: Any, out: Any) -> None:
    """One racing promotion in its own process: waits for the others, then promotes."""
    client = registry.client(uri)
    cand = candidate(model_uri, top1)
    try:
        barrier.wait(timeout=600)
        out.put((top1, promote(client, name, cand).version))
    except Exception as exc:  # reported to the test instead of dying silently
        out.put((top1, f"{type(exc).__name__}: {exc}"))


def test_concurrent_promotions_leave_one_consistent_champion(
    reg: tuple[Any, str], model_uri: str, mlflow_server: str
) -> None:
    """Four processes promote at once. Whatever order the lock gives them, the best one must end as
    champion and each champion's back pointer must name the champion it replaced: without the lock
    a slower, worse student could read the old champion and overwrite a better one."""
    client, name = reg
    promote(client, name, candidate(model_uri, 0.50))
    scores = [0.60, 0.70, 0.80, 0.90]
    random.Random(0).shuffle(scores)
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(len(scores)), ctx.Queue()
    procs = [
        ctx.Process(target=_promote_in_process, args=(mlflow_server, name, model_uri, s, barrier, out)) for s in scores
    ]
    for p in procs:
        p.start()
    results: dict[float, str] = {}
    while len(results) < len(procs):
        try:
            top1, outcome = out.get(timeout=5)
            results[top1] = outcome
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"a promoting process died before reporting (exit codes {dead})"
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(v.isdigit() for v in results.values()), results
    versions = {str(mv.version): mv for mv in client.search_model_versions(f"name = '{name}'")}
    assert len(versions) == 1 + len(scores)
    champion = versions[champion_of(client, name)]
    assert float(champion.tags["kdpipe.top1"]) == max(scores) and results[max(scores)] == str(champion.version)
    chain, mv = [], champion
    while mv.tags.get(PREVIOUS_CHAMPION):
        prev = versions[mv.tags[PREVIOUS_CHAMPION]]
        assert float(prev.tags["kdpipe.top1"]) < float(mv.tags["kdpipe.top1"])
        chain.append(str(mv.version))
        mv = prev
    crowned = {v for v, m in versions.items() if m.tags["kdpipe.promotion.decision"] == "champion"}
    assert crowned == {*chain, str(mv.version)}
    with pytest.raises(Exception, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(name + registry.LOCK_SUFFIX)


def test_stale_lock_is_taken_over(reg: tuple[Any, str], model_uri: str) -> None:
    client, name = reg
    client.create_registered_model(name + registry.LOCK_SUFFIX, tags={LOCK_OWNER: "crashed:0"})
    record = promote(client, name, candidate(model_uri, 0.8), lock_options={"stale_after_s": 0.5, "poll_s": 0.05})
    assert record.promoted
    with pytest.raises(Exception, match="RESOURCE_DOES_NOT_EXIST"):
        client.get_registered_model(name + registry.LOCK_SUFFIX)


def test_held_lock_makes_a_waiter_give_up_with_a_clear_error(reg: tuple[Any, str], model_uri: str) -> None:
    client, name = reg
    lock = name + registry.LOCK_SUFFIX
    client.create_registered_model(lock, tags={LOCK_OWNER: "busy:1"})
    with pytest.raises(TrackingError, match=f"promotion lock '{lock}' has been held by busy:1"):
        promote(
            client, name, candidate(model_uri, 0.8), lock_options={"stale_after_s": 3600, "wait_s": 0.3, "poll_s": 0.05}
        )
    assert client.get_registered_model(lock).tags[LOCK_OWNER] == "busy:1"  # the holder's lock stays
    assert champion_of(client, name) is None


def test_a_registered_version_loads_through_the_client_alone(
    reg: tuple[Any, str], model_uri: str, mlflow_server: str, tmp_path: Path
) -> None:
    """In a fresh process with no process-wide MLflow URI, a version's serving module and checkpoint
    load from the client's own server, and kdpipe sets no process-wide URI while doing it."""
    client, name = reg
    version = registry.register_version(client, name, model_uri, None, {}).version
    probe = textwrap.dedent(f"""
        from pathlib import Path
        import mlflow, torch
        from kdpipe.tracking import registry
        client = registry.client({mlflow_server!r})
        module = registry.load_serving(client, {name!r}, "{version}", Path({str(tmp_path)!r}))
        path, mv = registry.fetch_checkpoint(client, "models:/{name}/{version}", Path({str(tmp_path)!r}))
        shape = tuple(module(torch.rand(2, 1, 28, 28)).shape)
        print(shape, path.name, mv.version, mlflow.tracking.is_tracking_uri_set())
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == f"(2, {len(CLASSES)}) {MODEL_FILE} {version} False"


@pytest.fixture(scope="module")
def onnx_uris(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two small ONNX models logged once on the server with the onnx flavour, standing for a student's fp32 and
    int8 exports: the aliases under test do not depend on what the files compute."""
    import mlflow

    from kdpipe.deploy import onnx as export
    from kdpipe.tracking.logged_models import log_onnx_model

    torch.manual_seed(0)
    net = create_model("cnn8", len(CLASSES), 1).eval()
    manifest = {"shape": [1, 28, 28], "classes": CLASSES, "mean": [0.3], "std": [0.35], "sha256": DATA}
    out = tmp_path_factory.mktemp("onnx")
    path = export.to_onnx(net, manifest["mean"], manifest["std"], (1, 28, 28), out / "student.onnx", "student")
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("promotion-tests")
    with mlflow.start_run() as run:
        return {
            tag: log_onnx_model(path, manifest, f"student{suffix}", tracking_uri=mlflow_server, run_id=run.info.run_id)
            for tag, suffix in ((ONNX_MODEL_URI, ""), (ONNX_INT8_MODEL_URI, "_int8"))
        }


def with_exports(cand: Candidate, uris: dict[str, str], int8: bool = True) -> Candidate:
    """``cand`` whose promote logs its ONNX exports (int8 only when offered) once its version is known."""
    offered = {tag: uri for tag, uri in uris.items() if int8 or tag != ONNX_INT8_MODEL_URI}
    return dataclasses.replace(cand, exports=lambda version: offered)


def sibling_aliases(client: Any, name: str) -> dict[str, dict[str, str | None]]:
    """For each sibling and alias, the student version its aliased version was exported from (None: no alias)."""
    found: dict[str, dict[str, str | None]] = {}
    for suffix in ("onnx", "onnx-int8"):
        for alias in (registry.CHAMPION, registry.CHALLENGER):
            mv = registry.version_by_alias(client, f"{name}-{suffix}", alias)
            found.setdefault(suffix, {})[alias] = None if mv is None else mv.tags[STUDENT_VERSION]
    return found


def student_aliases(client: Any, name: str, int8_versions: set[str]) -> dict[str, dict[str, str | None]]:
    """What the siblings' aliases must say: the student's, for int8 only where that version offered int8."""
    held = {}
    for alias in (registry.CHAMPION, registry.CHALLENGER):
        mv = registry.version_by_alias(client, name, alias)
        held[alias] = None if mv is None else str(mv.version)
    return {
        "onnx": dict(held),
        "onnx-int8": {alias: v if v in int8_versions else None for alias, v in held.items()},
    }


def test_the_onnx_siblings_aliases_follow_the_students_through_promotes_and_a_rollback(
    reg: tuple[Any, str], model_uri: str, onnx_uris: dict[str, str], mlflow_server: str
) -> None:
    """``<name>-onnx`` and ``<name>-onnx-int8`` get a version per promoted student and their champion and
    challenger name the exports of the student versions holding those aliases; where the student offered no
    int8, the int8 sibling's alias is removed rather than left on another model."""
    import mlflow

    from kdpipe.tracking.server import fluent_uri

    client, name = reg
    promote(client, name, with_exports(candidate(model_uri, 0.80), onnx_uris))
    assert sibling_aliases(client, name) == student_aliases(client, name, {"1"})
    assert sibling_aliases(client, name)["onnx"] == {"champion": "1", "challenger": "1"}

    promote(client, name, with_exports(candidate(model_uri, 0.85), onnx_uris, int8=False))  # int8 not offered
    assert champion_of(client, name) == "2"
    assert sibling_aliases(client, name) == student_aliases(client, name, {"1"})
    assert sibling_aliases(client, name)["onnx-int8"] == {"champion": None, "challenger": None}

    promote(client, name, with_exports(candidate(model_uri, 0.70), onnx_uris))  # worse: stays challenger
    assert champion_of(client, name) == "2"
    assert sibling_aliases(client, name) == student_aliases(client, name, {"1", "3"})
    assert sibling_aliases(client, name)["onnx"] == {"champion": "2", "challenger": "3"}

    rollback(client, name)
    assert champion_of(client, name) == "1"
    assert sibling_aliases(client, name) == student_aliases(client, name, {"1", "3"})
    onnx_champion = registry.version_by_alias(client, f"{name}-onnx", registry.CHAMPION)
    assert onnx_champion.tags[PREVIOUS_CHAMPION] == ""  # v1 replaced no champion, nor did its export
    promote(client, name, with_exports(candidate(model_uri, 0.95), onnx_uris))
    onnx_champion = registry.version_by_alias(client, f"{name}-onnx", registry.CHAMPION)
    previous = client.get_model_version(f"{name}-onnx", onnx_champion.tags[PREVIOUS_CHAMPION])
    assert (onnx_champion.tags[STUDENT_VERSION], previous.tags[STUDENT_VERSION]) == ("4", "1")
    # What a deployer runs: the champion's ONNX model by alias, with onnx and MLflow alone.
    with fluent_uri(mlflow_server):
        model = mlflow.onnx.load_model(f"models:/{name}-onnx@champion")
    assert [i.name for i in model.graph.input] == ["images"]


def test_a_promote_interrupted_between_the_moves_is_completed_by_the_next_one(
    reg: tuple[Any, str],
    model_uri: str,
    onnx_uris: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    make_params: Any,
    tmp_path: Path,
    mlflow_server: str,
    capsys: Any,
) -> None:
    """The pod dies after the student's champion moved and before its siblings' did (KeyboardInterrupt raised
    where the siblings would follow): the registries disagree, ``kdpipe registry repair --dry-run`` says where, and
    the next promote moves the siblings first and says so."""
    from kdpipe.cli import main
    from kdpipe.promotion import moves, siblings

    client, name = reg
    promote(client, name, with_exports(candidate(model_uri, 0.80), onnx_uris))
    calls: list[int] = []
    follow = siblings.follow

    def dies_after_the_student_moved(mlflow_client: Any, registered: str) -> tuple[str, ...]:
        calls.append(1)
        if len(calls) == 2:  # the first call repairs before anything moves; the second follows the moves
            raise KeyboardInterrupt
        return follow(mlflow_client, registered)

    monkeypatch.setattr(moves.siblings, "follow", dies_after_the_student_moved)
    with pytest.raises(KeyboardInterrupt):
        promote(client, name, with_exports(candidate(model_uri, 0.90), onnx_uris))
    monkeypatch.setattr(moves.siblings, "follow", follow)
    assert champion_of(client, name) == "2"
    assert sibling_aliases(client, name)["onnx"] == {"champion": "1", "challenger": "1"}
    assert not registry.exists(client, name + registry.LOCK_SUFFIX)  # the interrupted promote released its lock

    params_file = tmp_path / "params.yaml"
    params = make_params(tracking__uri=mlflow_server, tracking__registered_model=name)
    params_file.write_text(yaml.safe_dump(params.to_dict()))
    assert main(["-q", "registry", "repair", "--dry-run", "-c", str(params_file)]) == 0
    said = capsys.readouterr().out
    assert f"{name}-onnx@champion: v1 -> v2 ({name}@champion is v2)" in said
    assert sibling_aliases(client, name)["onnx"]["champion"] == "1"  # a dry run changes nothing

    record = promote(client, name, with_exports(candidate(model_uri, 0.70), onnx_uris))
    assert "repaired first, an earlier move had been interrupted" in record.message
    assert f"{name}-onnx@champion: v1 -> v2" in record.message
    assert sibling_aliases(client, name) == student_aliases(client, name, {"1", "2", "3"})
    assert main(["-q", "registry", "repair", "-c", str(params_file)]) == 0
    assert capsys.readouterr().out.strip().endswith("their aliases already agree; nothing to repair")
