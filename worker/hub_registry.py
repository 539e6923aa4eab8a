"""The Hugging Face Hub: a finished policy audit's verdict written back to the audited repository.

Two marks that a gate reading the Hub can act on, each written once per audit (a retried
write-back finds them and adds nothing):

- a discussion on the repository, titled with the policy's verdict and the audit id, whose body
  holds the promotion, the headline numbers, every policy's verdict on the commit and the
  aggregate, and the report's link (the same keys MLflow gets as version tags);
- a tag on the audited commit, `memaudit-<promotion>-<audit id>` (the policy's promotion), its
  message the policy's verdict:
  `HfApi().list_repo_refs(repo).tags` filtered on the commit is all a gate needs.

The tag goes last: a gate that sees it can trust the discussion is there. Only audits started by
a policy are written back (a hand-submitted audit of someone's public model posts nothing), and
only when `MEMAUDIT_HF_TOKEN` holds a write token; the token is sent to `MEMAUDIT_HF_ENDPOINT`
and nowhere else, never logged and never returned.
"""

from __future__ import annotations

import logging

from core.config import Settings
from core.db import Database
from core.inspection import hf_models
from core.models import Audit, AuditPolicy, AuditStatus
from worker.model_registry import OWN_HUB_TAG_PREFIX
from worker.registry_verdicts import judges_version, verdict_tags, version_tags

log = logging.getLogger(__name__)


def tag_name(audit_id: str, promotion: str) -> str:
    return f"{OWN_HUB_TAG_PREFIX}{promotion}-{audit_id}"


def discussion_title(audit_id: str, verdict: str, commit: str) -> str:
    return f"memaudit: {verdict} for {commit[:12]} (audit {audit_id})"


def discussion_body(own: dict[str, str], tags: dict[str, str], commit: str, policy: str) -> str:
    """Markdown a reader of the repository's Community tab can act on: this audit's verdict
    first, then every tag the commit has now (each policy's verdict, the aggregate)."""
    rows = "\n".join(f"| `{key}` | {value} |" for key, value in tags.items())
    return (
        f"**memaudit verdict: {own['memaudit.verdict']}** "
        f"(promotion: **{own['memaudit.promotion']}**) for commit `{commit}`, "
        f"policy `{policy}`.\n\n| | |\n|---|---|\n{rows}\n\n"
        f"Report: {own['memaudit.report_url']}\n"
    )


def write_back(db: Database, settings: Settings, audit_id: str) -> dict[str, str]:
    """Post the verdict of this finished Hub policy audit to its repository; {} when there is
    nothing to write (another kind of audit, no token)."""
    with db.session() as session:
        audit = session.get(Audit, audit_id)
        if (
            audit is None
            or audit.status not in AuditStatus.FINAL
            or audit.verdict_pending  # written once its baseline's audit has ended
            or audit.policy_id is None
            or audit.model_uri is None
            or not audit.model_uri.startswith(hf_models.PREFIX)
            or not settings.hf_token
            or not judges_version(audit)  # it judged nothing: the earlier marks stand
        ):
            return {}
        repo, commit = hf_models.parse_uri(audit.model_uri)
        # The marks are this audit's; the body also lists the keys MLflow gets for the commit
        # (each policy's `memaudit.<policy>.*`, the aggregate, `pending` until all end).
        own = version_tags(audit, settings)
        tags, _ = verdict_tags(session, settings, audit, "huggingface", repo)
        policy_row = session.get(AuditPolicy, audit.policy_id)
        policy = policy_row.name if policy_row else (audit.labels or {}).get("policy", "")
    verdict, promotion = own["memaudit.verdict"], own["memaudit.promotion"]
    if hf_models.offline():
        log.warning(
            "audit %s: not written back to the Hub, HF_HUB_OFFLINE is set for this worker", audit_id
        )
        return {}
    from huggingface_hub import HfApi

    api = HfApi(endpoint=settings.hf_endpoint or None, token=settings.hf_token)
    title = discussion_title(audit_id, verdict, commit)
    posted = next(
        (
            found
            for found in api.get_repo_discussions(repo, discussion_type="discussion")
            if found.title == title
        ),
        None,
    )
    if posted is None:
        posted = api.create_discussion(
            repo, title, description=discussion_body(own, tags, commit, policy)
        )
    tag = tag_name(audit_id, promotion)
    message = f"memaudit verdict {verdict}: {own['memaudit.report_url']}"
    api.create_tag(repo, tag=tag, tag_message=message, revision=commit, exist_ok=True)
    log.info("audit %s: verdict written back to %s (tag %s)", audit_id, repo, tag)
    return {**tags, "hub.discussion": posted.url, "hub.tag": tag}
