"""a policy says what an `inconclusive` verdict does to a promotion (block, by default)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_policies") as batch_op:
        batch_op.add_column(
            sa.Column("on_inconclusive", sa.String(16), nullable=False, server_default="block")
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_policies") as batch_op:
        batch_op.drop_column("on_inconclusive")
