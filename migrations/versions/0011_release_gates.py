"""baseline-relative gates (issue #33 item 1): a policy's baseline, and on each audit the
baseline it was compared with and whether its verdict still waits for that baseline's audit

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_policies") as batch:
        batch.add_column(sa.Column("baseline", sa.String(300), nullable=True))
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("baseline", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("baseline_audit_id", sa.String(32), nullable=True))
        batch.add_column(
            sa.Column(
                "verdict_pending", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.create_index("ix_audits_baseline_audit_id", ["baseline_audit_id"])


def downgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.drop_index("ix_audits_baseline_audit_id")
        batch.drop_column("verdict_pending")
        batch.drop_column("baseline_audit_id")
        batch.drop_column("baseline")
    with op.batch_alter_table("audit_policies") as batch:
        batch.drop_column("baseline")
