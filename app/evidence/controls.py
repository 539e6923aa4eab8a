"""The controls auditors cite for memorisation testing, and which parts of a pack serve each.

What each control asks is paraphrased, never quoted, and kept to what its text says; every entry
also names what it asks that one audit cannot show. A pack maps evidence to controls; it never
says a system complies with one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# What a check kind contributes, as an attack or a measure a control can name.
MEMBERSHIP_INFERENCE = "membership_inference"
EXTRACTION = "extraction"
MITIGATION = "mitigation"
INDICATOR = "memorisation_indicator"

KIND_ROLES: dict[str, str] = {
    "membership": MEMBERSHIP_INFERENCE,
    "unlearning": MEMBERSHIP_INFERENCE,  # membership attacks on the forget set
    "extraction": EXTRACTION,
    "cfg_basin": EXTRACTION,  # generations compared with their nearest training image
    "cfg_mitigation": MITIGATION,
}
ROLE_TEXT = {
    MEMBERSHIP_INFERENCE: "membership inference test: can training records be told from "
    "held-out records by the model's behaviour",
    EXTRACTION: "extraction probe: does the model reproduce its training data",
    MITIGATION: "effect of a mitigation of training-data copying",
    INDICATOR: "memorisation indicator (not an attack): per-record signals of memorisation",
}


@dataclass(frozen=True)
class Control:
    framework: str
    control: str
    title: str
    reference: str
    asks: str  # a paraphrase of the control's text, not a quotation
    served_by: tuple[str, ...]  # the roles whose evidence an auditor can cite for it
    not_covered: tuple[str, ...]


CONTROLS: tuple[Control, ...] = (
    Control(
        framework="GASP AICF",
        control="AIG-035",
        title="Training Data Memorisation and Extraction Controls",
        reference="https://gasp-aicf.pages.dev/controls/AIG-035",
        asks="A system that may have memorised its training data is assessed for extraction "
        "risk before it is deployed and again after each retraining, through membership "
        "inference tests, direct probing for training data and a review of system-prompt "
        "settings; one above a documented risk threshold is mitigated; the method and the "
        "results are recorded.",
        served_by=(MEMBERSHIP_INFERENCE, EXTRACTION, MITIGATION),
        not_covered=(
            "the review of system-prompt configurations",
            "the mitigations themselves (output filtering, differential privacy in training, "
            "limits on output length)",
            "that the evaluation is repeated before each deployment and after each retraining: "
            "one pack evidences one audit of one model version",
            "a documented risk threshold, unless the audit ran under a policy (see verdict)",
        ),
    ),
    Control(
        framework="EU AI Act (Regulation (EU) 2024/1689)",
        control="Art. 15",
        title="Accuracy, robustness and cybersecurity",
        reference="https://eur-lex.europa.eu/eli/reg/2024/1689/oj",
        asks="High-risk AI systems achieve an appropriate level of accuracy, robustness and "
        "cybersecurity throughout their lifecycle; paragraph 5 asks for technical solutions to "
        "AI-specific vulnerabilities, including, where appropriate, measures to prevent, "
        "detect and respond to confidentiality attacks.",
        served_by=(MEMBERSHIP_INFERENCE, EXTRACTION),
        not_covered=(
            "accuracy and robustness (paragraphs 1 to 4)",
            "the other vulnerabilities paragraph 5 names: data and model poisoning, adversarial "
            "examples and model evasion, model flaws",
            "the measures taken against confidentiality attacks: this pack measures exposure",
            "whether the system is high-risk and whether it conforms: a legal determination "
            "this pack does not make",
        ),
    ),
    Control(
        framework="NIST AI RMF 1.0 (NIST AI 100-1)",
        control="MEASURE 2.7",
        title="AI system security and resilience",
        reference="https://doi.org/10.6028/NIST.AI.100-1",
        asks="The security and resilience of the AI system, as identified in the MAP function, "
        "are evaluated and documented.",
        served_by=(MEMBERSHIP_INFERENCE, EXTRACTION),
        not_covered=(
            "security and resilience beyond leakage of training data (evasion, poisoning, "
            "availability, the surrounding infrastructure)",
            "the MAP-function risk identification this evaluation answers to",
        ),
    ),
    Control(
        framework="NIST AI RMF 1.0 (NIST AI 100-1)",
        control="MEASURE 2.10",
        title="Privacy risk",
        reference="https://doi.org/10.6028/NIST.AI.100-1",
        asks="The privacy risk of the AI system, as identified in the MAP function, is "
        "examined and documented.",
        served_by=(MEMBERSHIP_INFERENCE, EXTRACTION, INDICATOR),
        not_covered=(
            "privacy risks other than leakage of training data (data handled at inference, "
            "re-identification by linkage)",
            "whether the audited data holds personal data: the pack names it by hash only",
        ),
    ),
)


def role_of(kind: str) -> str:
    return KIND_ROLES.get(kind, INDICATOR)


def _caveats(methods: Sequence[Mapping[str, Any]], readings: Mapping[str, Any]) -> list[str]:
    """What weakens the membership evidence, in the report's own words."""
    found = []
    membership = readings.get("membership") or {}
    tested = any(
        isinstance(score.get("auroc"), Mapping) and score["auroc"].get("value") is not None
        for score in (membership.get("scores") or {}).values()
    )
    if any(m["kind"] == "membership" for m in methods) and not tested:
        found.append("no member labels: records were ranked by membership scores, not tested")
    blind = membership.get("blind_baseline") or {}
    if blind.get("reading") == "confounded":
        found.append(
            "the blind baseline separates members from non-members without the model: the "
            "split is confounded and membership scores on it are inconclusive"
        )
    elif blind.get("reading") == "not_assessed":
        found.append(f"the split was not checked by a blind baseline: {blind.get('reason', '')}")
    return found


def control_map(
    methods: Sequence[Mapping[str, Any]], readings: Mapping[str, Any], has_verdict: bool
) -> list[dict[str, Any]]:
    """Each control, the pack items (JSON Pointers into the payload) an auditor can cite for
    it, and what it asks that this audit does not show."""
    entries = []
    for control in CONTROLS:
        evidence = [
            {"item": f"/methods/{index}", "what": f"{method['kind']}: {ROLE_TEXT[method['role']]}"}
            for index, method in enumerate(methods)
            if method["role"] in control.served_by
        ]
        served = bool(evidence)
        if served:
            evidence += [
                {"item": "/results", "what": "headline figures, readings and warnings"},
                {"item": "/sample_sizes", "what": "records and rows per check"},
                {"item": "/subject", "what": "the model and data, by URI and sha256"},
                {"item": "/provenance", "what": "code version, devices, timings"},
            ]
            if has_verdict:
                evidence.append({"item": "/verdict", "what": "the policy's thresholds and result"})
        entries.append(
            {
                "framework": control.framework,
                "control": control.control,
                "title": control.title,
                "reference": control.reference,
                "asks_paraphrased": control.asks,
                "evidence_in_this_pack": "present" if served else "none",
                "evidence": evidence,
                "caveats": _caveats(methods, readings) if served else [],
                "not_covered": list(control.not_covered),
            }
        )
    return entries
