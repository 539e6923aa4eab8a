"""Comparisons with the baseline on stored rows, pending verdicts reached once, and the
aggregate of a version's policies (worker/gates.py, worker/registry_verdicts.py)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta

import numpy as np
import pytest

from app.migrate import upgrade
from core.baselines import BASELINE_LABEL, reusable_audit
from core.config import Settings
from core.db import Database
from core.models import Audit, AuditPolicy, AuditStatus, SampleResult
from core.notifications import audit_outcome
from core.policies import idempotency_key
from core.verdicts import pending_verdict
from worker import gates
from worker.registry_verdicts import AGGREGATE_TAGS, verdict_tags

SHA = "a" * 64
URI = "mlflow:models:/support-bot/{}"
RATE = {"metric": "extraction.greedy_extraction_rate", "greater_is_better": False}
SETTINGS = Settings(public_url="https://memaudit.example")


@pytest.fixture
def db(tmp_path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'gates.db'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


def _policy(
    db: Database,
    name: str,
    thresholds: list[dict],
    baseline: str | None = "champion",
    on_inconclusive: str = "block",
) -> str:
    with db.session() as session:
        policy = AuditPolicy(
            name=name,
            source="mlflow",
            model_pattern="support-*",
            dataset_uri="dataset:x",
            checks=[{"kind": "extraction", "params": {}}],
            thresholds=thresholds,
            baseline=baseline,
            on_inconclusive=on_inconclusive,
        )
        session.add(policy)
        session.flush()
        return policy.id


def _audit(
    db: Database,
    extracted: Sequence[bool],
    *,
    version: int = 1,
    policy_id: str | None = None,
    sha: str = SHA,
    status: str = AuditStatus.SUCCEEDED,
    fragile: Sequence[int] = (),
    verdict: dict | None = None,
) -> str:
    """An audit of `version` whose extraction rows say which records greedy decoding reproduced."""
    rate = float(np.mean(extracted))
    with db.session() as session:
        audit = Audit(
            status=status,
            model_uri=URI.format(version),
            model_version=str(version),
            dataset_uri="dataset:x",
            dataset_sha256=sha,
            n_samples=len(extracted),
            checks=[{"kind": "extraction", "params": {}}],
            labels={},
            summary={"extraction": {"all": {"greedy_rate": rate}}},
            provenance={},
            policy_id=policy_id,
            verdict=verdict,
        )
        session.add(audit)
        session.flush()
        for i, value in enumerate(extracted):
            row = {"greedy_extracted": bool(value), "fragile": i in fragile}
            session.add(
                SampleResult(
                    audit_id=audit.id,
                    check="extraction",
                    sample_index=i,
                    sample_id=f"r{i}",
                    values=row,
                )
            )
        return audit.id


def _compare(
    db: Database, candidate: str, baseline: str, rule: dict = RATE
) -> gates.RelativeResult:
    with db.session() as session:
        now, base = session.get(Audit, candidate), session.get(Audit, baseline)
        return gates.compare(
            session, rule, (now, now.summary), (base, base.summary, base.status), "champion v7"
        )


def _flags(n: int, positive: range | Sequence[int]) -> list[bool]:
    return [i in positive for i in range(n)]


def test_more_records_extracted_fails_and_says_so(db) -> None:
    champion = _audit(db, _flags(100, range(10)))
    candidate = _audit(db, _flags(100, range(30)), version=2)
    found = _compare(db, candidate, champion)
    assert found.status == "fail"
    assert (found.newly, found.no_longer, found.n_shared) == (20, 0, 100)
    assert found.p_value == pytest.approx(2.0**-20)
    assert found.explanation == (
        "extraction rate 30.0% vs 10.0% on champion v7, 20 of 100 records newly extracted, "
        "McNemar p < 0.001: worse beyond noise, fail"
    )


def test_fewer_or_the_same_passes_and_a_small_change_is_inconclusive(db) -> None:
    champion = _audit(db, _flags(100, range(10)))
    assert _compare(db, _audit(db, _flags(100, range(3))), champion).status == "pass"
    # No record changed: Newcombe's 95% score interval of the difference is +-3.5 points
    # (by hand from the Wilson intervals of 10/100, phi = 1 shrunk by n/2 to 0.944), so the
    # same rate is not shown harmless at margin 0, but is within a tolerated 5 points.
    same = _compare(db, _audit(db, _flags(100, range(10))), champion)
    assert same.status == "inconclusive"
    assert (same.low, same.high) == pytest.approx((-0.035296, 0.035296), abs=1e-6)
    tolerant_same = {**RATE, "min_absolute_change": 0.05}
    assert _compare(db, _audit(db, _flags(100, range(10))), champion, tolerant_same).status == (
        "pass"
    )
    # Two more records extracted: p = 1/4, not beyond noise, but not shown harmless either.
    slightly = _compare(db, _audit(db, _flags(100, range(12))), champion)
    assert slightly.status == "inconclusive" and slightly.p_value == 0.25
    # Within a tolerated worsening of 8 points, the same two records pass.
    tolerant = {**RATE, "min_absolute_change": 0.08}
    assert _compare(db, _audit(db, _flags(100, range(12))), champion, tolerant).status == "pass"


def test_twenty_unchanged_records_do_not_pass_at_margin_zero(db) -> None:
    # 20 shared records, none extracted on either side: a bootstrap interval is exactly [0, 0];
    # the score interval still allows a 16-point worsening.
    champion = _audit(db, [False] * 20)
    found = _compare(db, _audit(db, [False] * 20), champion)
    assert found.status == "inconclusive"
    assert found.high == pytest.approx(0.161125, abs=1e-6) and found.low == -found.high


def _loss_audit(db: Database, losses: Sequence[float]) -> str:
    audit_id = _audit(db, [False] * len(losses))
    with db.session() as session:
        row = session.get(Audit, audit_id)
        row.summary = {"loss": {"mean_sample_loss": float(np.mean(losses))}}
        for i, loss in enumerate(losses):
            session.add(
                SampleResult(
                    audit_id=audit_id,
                    check="loss",
                    sample_index=i,
                    sample_id=f"r{i}",
                    values={"loss": loss},
                )
            )
    return audit_id


def test_a_bootstrap_interval_without_width_is_underpowered(db) -> None:
    losses = [1.0 + 0.01 * i for i in range(40)]
    rule = {"metric": "loss.mean_loss", "greater_is_better": False}
    found = _compare(db, _loss_audit(db, losses), _loss_audit(db, losses), rule)
    assert (found.low, found.high) == (0.0, 0.0)
    assert found.status == "inconclusive"
    assert found.explanation.endswith("(underpowered: every resample gave the same difference)")
    lower = _compare(db, _loss_audit(db, [x - 0.5 for x in losses]), _loss_audit(db, losses), rule)
    assert lower.status == "pass" and lower.low < lower.high


def test_a_baseline_audited_on_other_records_is_inconclusive(db) -> None:
    champion = _audit(db, _flags(100, range(10)), sha="b" * 64)
    found = _compare(db, _audit(db, _flags(100, range(60))), champion)
    assert found.status == "inconclusive" and "other records" in found.explanation


@pytest.mark.parametrize(
    ("changed", "says"),
    [
        (
            {"checks": [{"kind": "extraction", "params": {"prefix_tokens": 32}}]},
            "confounded: the baseline ran other checks",
        ),
        (
            {"provenance": {"code_version": "0.0.1"}},
            "confounded: the baseline ran code version 0.0.1",
        ),
    ],
)
def test_a_baseline_that_ran_other_checks_or_code_is_confounded(db, changed, says) -> None:
    # A fixed `audit:<id>` baseline is whatever that audit ran: 30 newly extracted records
    # would fail against a comparable one, but not against one that measured something else.
    champion = _audit(db, _flags(100, range(10)))
    with db.session() as session:
        row = session.get(Audit, champion)
        for field, value in changed.items():
            setattr(row, field, value)
    found = _compare(db, _audit(db, _flags(100, range(40)), version=2), champion)
    assert found.status == "inconclusive" and says in found.explanation


def test_too_few_shared_records_are_inconclusive(db) -> None:
    champion = _audit(db, _flags(12, range(1)))
    found = _compare(db, _audit(db, _flags(12, range(12))), champion)
    assert found.status == "inconclusive" and "only 12 shared records" in found.explanation


def test_fragile_records_that_could_change_the_outcome_make_it_inconclusive(db) -> None:
    champion = _audit(db, _flags(100, range(10)))
    # 6 newly extracted: McNemar p = 1/64, a fail; unless 4 of them are fragile.
    assert _compare(db, _audit(db, _flags(100, range(16))), champion).status == "fail"
    fragile = _audit(db, _flags(100, range(16)), fragile=[12, 13, 14, 15])
    found = _compare(db, fragile, champion)
    assert found.status == "inconclusive"
    assert found.explanation.endswith("(4 fragile records could change the outcome)")


def test_each_sides_fragile_records_flip_only_in_its_own_column(db) -> None:
    # 7 records no longer extracted, none newly: a pass. The baseline's fragile records 50-59
    # were not extracted by either; flipping them in the candidate's column (as if the
    # candidate's readings were fragile too) would invent 10 newly extracted records.
    champion = _audit(db, _flags(100, range(10)), fragile=range(50, 60))
    found = _compare(db, _audit(db, _flags(100, range(3)), version=2), champion)
    assert found.status == "pass", found.explanation
    # The baseline's own fragile records do count in its column: 6 newly extracted (a fail)
    # are records 10-15, fragile in the baseline; read as extracted there, none is new.
    champion = _audit(db, _flags(100, range(10)), fragile=range(10, 16))
    found = _compare(db, _audit(db, _flags(100, range(16)), version=2), champion)
    assert found.status == "inconclusive"
    assert found.explanation.endswith("(6 fragile records could change the outcome)")


def test_a_withheld_membership_reading_is_inconclusive(db) -> None:
    champion = _audit(db, _flags(100, range(10)))
    candidate = _audit(db, _flags(100, range(10)))
    membership = {
        "scores": {"loss": {"auroc": {"value": 0.9}, "reading": {"reading": "underpowered"}}}
    }
    with db.session() as session:
        for audit_id in (champion, candidate):
            row = session.get(Audit, audit_id)
            row.summary = {**row.summary, "membership": membership}
    rule = {"metric": "membership.loss.auc", "greater_is_better": False}
    found = _compare(db, candidate, champion, rule)
    assert found.status == "inconclusive" and "underpowered" in found.explanation


def test_membership_auroc_is_compared_by_a_paired_bootstrap(db) -> None:
    rng = np.random.default_rng(0)
    members = np.arange(200) % 2 == 0
    noise = rng.normal(size=200)
    ids = {}
    for name, shift in (("champion", 0.2), ("candidate", 1.5)):
        scores = noise + shift * members
        auc = float(np.mean([s > t for s in scores[members] for t in scores[~members]]))
        ids[name] = _audit(db, [False] * 200)
        with db.session() as session:
            row = session.get(Audit, ids[name])
            reading = {"reading": "stands"}
            row.summary = {
                "membership": {"scores": {"loss": {"auroc": {"value": auc}, "reading": reading}}}
            }
            for i in range(200):
                values = {"loss": float(scores[i]), "member": bool(members[i])}
                session.add(
                    SampleResult(
                        audit_id=row.id,
                        check="membership",
                        sample_index=i,
                        sample_id=f"r{i}",
                        values=values,
                    )
                )
    rule = {"metric": "membership.loss.auc", "greater_is_better": False}
    worse = _compare(db, ids["candidate"], ids["champion"], rule)
    assert worse.status == "fail" and worse.method == "bootstrap_auroc"
    assert worse.low > 0 and worse.value > worse.baseline_value
    assert "paired bootstrap p < 0.001: worse beyond noise, fail" in worse.explanation
    assert _compare(db, ids["champion"], ids["candidate"], rule).status == "pass"


def test_a_pending_verdict_is_reached_once_when_its_baseline_ends(db) -> None:
    policy = _policy(db, "gate", [RATE])
    champion = _audit(db, _flags(100, range(10)), policy_id=policy, status=AuditStatus.RUNNING)
    candidate = _audit(db, _flags(100, range(40)), version=2, policy_id=policy)
    found = {"ref": "champion", "model_uri": URI.format(1), "version": "1", "audit_id": champion}
    with db.session() as session:
        row = session.get(Audit, candidate)
        row.baseline, row.baseline_audit_id = found, champion
        verdict, pending = gates.verdict_of(
            session, row, session.get(AuditPolicy, policy), row.summary
        )
        assert pending and verdict == pending_verdict(found)
        row.verdict, row.verdict_pending = verdict, True
    assert not gates.reach_pending(db, candidate)  # the champion's audit still runs
    assert gates.reach_waiting(db, champion) == []
    with db.session() as session:
        session.get(Audit, champion).status = AuditStatus.SUCCEEDED
    assert gates.reach_waiting(db, champion) == [candidate]
    assert gates.reach_waiting(db, champion) == []  # reached, and announced, once
    assert not gates.reach_pending(db, candidate)
    with db.session() as session:
        reached = session.get(Audit, candidate)
        assert not reached.verdict_pending
        assert reached.verdict["status"] == "fail" and reached.verdict["baseline"] == found
        assert "30 of 100 records newly extracted" in reached.verdict["explanation"]


def test_a_cancelled_baseline_leaves_the_candidate_unknown_and_blocked(db) -> None:
    # Nothing was compared: even a policy that lets `inconclusive` through must block.
    policy = _policy(db, "gate", [RATE], on_inconclusive="allow")
    champion = _audit(db, _flags(100, range(10)), policy_id=policy, status=AuditStatus.CANCELLED)
    candidate = _audit(db, _flags(100, range(40)), version=2, policy_id=policy)
    with db.session() as session:
        row = session.get(Audit, candidate)
        row.baseline = {"ref": "champion", "version": "1", "audit_id": champion}
        row.baseline_audit_id, row.verdict_pending = champion, True
    assert gates.reach_stale(db) == [candidate]
    with db.session() as session:
        verdict = session.get(Audit, candidate).verdict
    assert verdict["status"] == "unknown" and verdict["promotion"] == "blocked"
    assert f"its audit {champion} cancelled" in verdict["explanation"]
    assert f"its audit {champion} cancelled" in verdict["reason"]


@pytest.mark.parametrize(
    "found",
    [
        {"ref": "champion", "error": "baseline 'champion' not resolved: alias not set"},
        {"ref": "champion", "version": "1", "audit_id": "gone"},  # its audit deleted
    ],
)
def test_a_baseline_never_compared_is_unknown_even_where_inconclusive_is_allowed(db, found) -> None:
    policy = _policy(db, "gate", [RATE], on_inconclusive="allow")
    candidate = _audit(db, _flags(100, range(10)), version=2, policy_id=policy)
    with db.session() as session:
        row = session.get(Audit, candidate)
        row.baseline, row.baseline_audit_id = found, found.get("audit_id")
        verdict, pending = gates.verdict_of(
            session, row, session.get(AuditPolicy, policy), row.summary
        )
    assert not pending
    assert verdict["status"] == "unknown" and verdict["promotion"] == "blocked"
    assert "not compared with champion" in verdict["reason"]


def test_compared_but_untrusted_stays_inconclusive_which_a_policy_may_allow(db) -> None:
    policy = _policy(db, "gate", [RATE], on_inconclusive="allow")
    champion = _audit(db, _flags(100, range(10)), sha="b" * 64, policy_id=policy)
    candidate = _audit(db, _flags(100, range(10)), version=2, policy_id=policy)
    with db.session() as session:
        row = session.get(Audit, candidate)
        row.baseline = {"ref": "champion", "version": "1", "audit_id": champion}
        row.baseline_audit_id = champion
        verdict, _ = gates.verdict_of(session, row, session.get(AuditPolicy, policy), row.summary)
    assert verdict["status"] == "inconclusive" and verdict["promotion"] == "allowed"


def _verdict(status: str, promotion: str = "blocked", reason: str | None = None) -> dict:
    found = {"status": status, "results": [], "promotion": promotion}
    return {**found, "reason": reason} if reason else found


def _tags(session, audit_id: str) -> tuple[dict[str, str], list[str]]:  # type: ignore[no-untyped-def]
    """The tags the version of `audit_id` must hold, and those to remove."""
    return verdict_tags(session, SETTINGS, session.get(Audit, audit_id), "mlflow", "support-bot")


def _aggregate(session, audit_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The aggregate tags among those the version of `audit_id` must hold."""
    tags, _ = _tags(session, audit_id)
    return {key: value for key, value in tags.items() if key in AGGREGATE_TAGS}


def test_the_aggregate_holds_the_worst_once_every_policys_audit_has_ended(db) -> None:
    gate, floor = _policy(db, "gate", [RATE]), _policy(db, "floor", [], baseline=None)
    flags = _flags(50, range(5))
    first = _audit(db, flags, version=3, policy_id=gate, verdict=_verdict("pass", "allowed"))
    running = _audit(db, flags, version=3, policy_id=floor, status=AuditStatus.RUNNING)
    with db.session() as session:
        tags = _aggregate(session, first)
        assert tags == {
            "memaudit.verdict": "pending",
            "memaudit.promotion": "blocked",
            "memaudit.verdict_reason": f"waiting for floor's audit {running}",
        }
        row = session.get(Audit, running)
        row.status, row.verdict = (
            AuditStatus.SUCCEEDED,
            _verdict("unknown", reason="unknown: no rows"),
        )
    with db.session() as session:
        tags = _aggregate(session, first)
    assert tags == {
        "memaudit.verdict": "unknown",
        "memaudit.promotion": "blocked",
        "memaudit.verdict_reason": "unknown: no rows",
    }
    # A re-audit under `floor` replaces its earlier audit; while its verdict is pending so is
    # the aggregate: the earlier one must not stand for it.
    again = _audit(
        db, flags, version=3, policy_id=floor, verdict=pending_verdict({"audit_id": first})
    )
    with db.session() as session:
        session.get(Audit, again).verdict_pending = True
    with db.session() as session:
        tags = _aggregate(session, first)
        assert (tags["memaudit.verdict"], tags["memaudit.promotion"]) == ("pending", "blocked")
        row = session.get(Audit, again)
        row.verdict, row.verdict_pending = _verdict("pass", "allowed"), False
    with db.session() as session:
        tags = _aggregate(session, first)
    assert tags == {"memaudit.verdict": "pass", "memaudit.promotion": "allowed"}
    # An inconclusive one that allows promotion still ranks below pass.
    _audit(db, flags, version=3, policy_id=gate, verdict=_verdict("inconclusive", "allowed"))
    with db.session() as session:
        tags = _aggregate(session, first)
    assert tags == {"memaudit.verdict": "inconclusive", "memaudit.promotion": "allowed"}


def test_a_reaudit_still_running_makes_an_allowed_aggregate_pending(db) -> None:
    gate = _policy(db, "gate", [RATE])
    flags = _flags(50, range(5))
    first = _audit(db, flags, version=3, policy_id=gate, verdict=_verdict("pass", "allowed"))
    with db.session() as session:
        tags = _aggregate(session, first)
    assert tags == {"memaudit.verdict": "pass", "memaudit.promotion": "allowed"}
    again = _audit(db, flags, version=3, policy_id=gate, status=AuditStatus.QUEUED)
    with db.session() as session:
        tags, _ = verdict_tags(
            session, SETTINGS, session.get(Audit, again), "mlflow", "support-bot"
        )
    assert {key: tags[key] for key in tags if key.endswith(("verdict", "promotion", "reason"))} == {
        "memaudit.gate.verdict": "pending",
        "memaudit.gate.promotion": "blocked",
        "memaudit.verdict": "pending",
        "memaudit.promotion": "blocked",
        "memaudit.verdict_reason": f"waiting for gate's audit {again}",
    }
    # The numbers and report shown stay the last reached verdict's.
    assert tags["memaudit.audit_id"] == first


def _own_baseline(
    db: Database, name: str, thresholds: list[dict], extracted: Sequence[bool]
) -> str:
    """A policy audit of version 1 that is its own baseline (the champion's first audit), its
    verdict as finalize reaches it."""
    policy_id = _policy(db, name, thresholds)
    audit_id = _audit(db, extracted, policy_id=policy_id)
    with db.session() as session:
        row = session.get(Audit, audit_id)
        row.baseline = {"ref": "champion", "model_uri": URI.format(1), "version": "1"}
        row.baseline["audit_id"] = row.baseline_audit_id = audit_id
        verdict, pending = gates.verdict_of(
            session, row, session.get(AuditPolicy, policy_id), row.summary
        )
        assert not pending
        row.verdict = verdict
    return audit_id


def test_an_audit_that_is_its_own_baseline_judges_only_its_absolute_conditions(db) -> None:
    flags = _flags(100, range(40))
    alone = _own_baseline(db, "alone", [RATE], flags)
    with db.session() as session:
        verdict = session.get(Audit, alone).verdict
        assert audit_outcome(session.get(Audit, alone)) is None  # nothing judged, nothing told
    assert (verdict["status"], verdict["promotion"]) == ("baseline", "blocked")
    assert verdict["comparisons"] == [
        {
            "metric": RATE["metric"],
            "status": "not_compared",
            "explanation": f"{RATE['metric']} not compared: this audit is the baseline",
            "relative": True,
        }
    ]
    # An absolute condition beside it decides: 40% extracted is over the 10% allowed.
    ceiling = {**RATE, "op": "<=", "value": 0.1}
    both = _own_baseline(db, "both", [ceiling], flags)
    with db.session() as session:
        verdict = session.get(Audit, both).verdict
    assert (verdict["status"], verdict["promotion"]) == ("fail", "blocked")


def test_an_audit_that_judged_nothing_leaves_the_earlier_verdict_on_the_version(db) -> None:
    """After a code-version change the champion is audited again as its own baseline: the
    verdict its earlier audit reached stays its policy's and the aggregate's."""
    flags = _flags(100, range(5))
    again = _own_baseline(db, "gate", [RATE], flags)
    with db.session() as session:
        row = session.get(Audit, again)
        policy_id = row.policy_id
        earlier = Audit(
            status=AuditStatus.SUCCEEDED,
            model_uri=row.model_uri,
            dataset_uri="dataset:x",
            dataset_sha256=SHA,
            n_samples=100,
            checks=row.checks,
            labels={},
            summary=row.summary,
            policy_id=policy_id,
            verdict=_verdict("pass", "allowed"),
            created_at=row.created_at - timedelta(days=1),
        )
        session.add(earlier)
        session.flush()
        earlier_id = earlier.id
    with db.session() as session:
        tags, _ = verdict_tags(
            session, SETTINGS, session.get(Audit, again), "mlflow", "support-bot"
        )
    assert tags["memaudit.gate.verdict"] == "pass"
    assert tags["memaudit.gate.audit_id"] == tags["memaudit.audit_id"] == earlier_id
    assert (tags["memaudit.verdict"], tags["memaudit.promotion"]) == ("pass", "allowed")
    with db.session() as session:  # with no earlier verdict, the version says it was not judged
        session.delete(session.get(Audit, earlier_id))
    with db.session() as session:
        tags, _ = verdict_tags(
            session, SETTINGS, session.get(Audit, again), "mlflow", "support-bot"
        )
    assert tags["memaudit.gate.verdict"] == tags["memaudit.verdict"] == "baseline"
    assert tags["memaudit.promotion"] == "blocked"


def test_an_audit_started_only_as_a_baseline_never_replaces_the_versions_verdict(db) -> None:
    gate = _policy(db, "gate", [{**RATE, "op": "<=", "value": 0.5}])
    flags = _flags(100, range(5))
    first = _audit(db, flags, policy_id=gate, verdict=_verdict("pass", "allowed"))
    extra = _audit(db, _flags(100, range(90)), policy_id=gate, status=AuditStatus.RUNNING)
    with db.session() as session:
        session.get(Audit, first).idempotency_key = idempotency_key(gate, URI.format(1))
        row = session.get(Audit, extra)
        row.labels = {"policy": "gate", BASELINE_LABEL: "champion"}
        row.idempotency_key = idempotency_key(gate, URI.format(1), "baseline:abc")
    with db.session() as session:  # running, it keeps nothing waiting
        tags = _aggregate(session, first)
    assert tags == {"memaudit.verdict": "pass", "memaudit.promotion": "allowed"}
    with db.session() as session:
        row = session.get(Audit, extra)
        row.status, row.verdict = AuditStatus.SUCCEEDED, _verdict("fail")
    with db.session() as session:
        tags, _ = verdict_tags(
            session, SETTINGS, session.get(Audit, extra), "mlflow", "support-bot"
        )
    assert tags["memaudit.gate.verdict"] == tags["memaudit.verdict"] == "pass"
    assert tags["memaudit.audit_id"] == first


def test_a_finished_comparable_audit_is_preferred_to_a_newer_one_still_running(db) -> None:
    gate = _policy(db, "gate", [RATE])
    flags = _flags(50, range(5))
    done = _audit(db, flags, policy_id=gate)
    running = _audit(db, flags, policy_id=gate, status=AuditStatus.RUNNING)
    with db.session() as session:
        policy = session.get(AuditPolicy, gate)
        like = session.get(Audit, running)
        session.get(Audit, running).created_at = session.get(Audit, done).created_at + timedelta(1)
        session.flush()
        assert reusable_audit(session, policy, URI.format(1), like, besides="x").id == done
        session.get(Audit, done).status = AuditStatus.FAILED
        session.flush()  # none succeeded: the running one is waited for
        assert reusable_audit(session, policy, URI.format(1), like, besides="x").id == running


def test_a_policy_that_no_longer_matches_stops_gating_and_its_tags_go(db) -> None:
    """Whichever audit of the version asks, the answer is the same: a policy disabled while its
    audit ran neither counts in the aggregate nor keeps its tags, even when that audit asks."""
    gate, floor = _policy(db, "gate", []), _policy(db, "floor", [], baseline=None)
    flags = _flags(50, range(5))
    passed = _audit(db, flags, policy_id=gate, verdict=_verdict("pass", "allowed"))
    failed = _audit(db, flags, policy_id=floor, verdict=_verdict("fail"))
    with db.session() as session:
        session.get(AuditPolicy, floor).enabled = False
    answers = []
    for asking in (passed, failed):
        with db.session() as session:
            answers.append(_tags(session, asking))
    assert answers[0] == answers[1]
    tags, optional = answers[0]
    assert (tags["memaudit.verdict"], tags["memaudit.promotion"]) == ("pass", "allowed")
    assert tags["memaudit.audit_id"] == passed
    assert not [key for key in tags if key.startswith("memaudit.floor.")]
    assert {"memaudit.floor.verdict", "memaudit.floor.promotion"} <= set(optional)
    # No policy gates it any more: the version names no audit's numbers or report either.
    with db.session() as session:
        session.get(AuditPolicy, gate).enabled = False
    with db.session() as session:
        tags, optional = _tags(session, passed)
    assert tags["memaudit.verdict"] == "baseline" and "memaudit.audit_id" not in tags
    assert {"memaudit.audit_id", "memaudit.report_url", "memaudit.gate.verdict"} <= set(optional)


def test_a_verdict_waiting_for_its_baseline_does_not_stand_for_the_versions_numbers(db) -> None:
    """The reached verdict's audit stays the one the version names (reconciliation repairs a
    lost write-back of the verdict by that id) until the waiting one reaches its own."""
    gate = _policy(db, "gate", [RATE])
    flags = _flags(50, range(5))
    first = _audit(db, flags, version=3, policy_id=gate, verdict=_verdict("pass", "allowed"))
    again = _audit(
        db, flags, version=3, policy_id=gate, verdict=pending_verdict({"audit_id": first})
    )
    with db.session() as session:
        session.get(Audit, again).verdict_pending = True
    with db.session() as session:
        tags, _ = _tags(session, again)
    assert tags["memaudit.audit_id"] == first
    assert (tags["memaudit.gate.verdict"], tags["memaudit.verdict"]) == ("pending", "pending")
    with db.session() as session:
        row = session.get(Audit, again)
        row.verdict, row.verdict_pending = _verdict("fail"), False
    with db.session() as session:
        tags, _ = _tags(session, first)
    assert tags["memaudit.audit_id"] == tags["memaudit.gate.audit_id"] == again
    assert (tags["memaudit.gate.verdict"], tags["memaudit.verdict"]) == ("fail", "fail")
