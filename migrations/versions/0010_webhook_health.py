"""webhook health: the latest refused deliveries per source, kept for the deliveries page

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_refusals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.String(500), nullable=False),
        sa.Column("delivery_id", sa.String(200), nullable=True),
        sa.Column("event", sa.String(100), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_webhook_refusals_source_id", "webhook_refusals", ["source", "id"])
    op.create_index("ix_webhook_refusals_received_at", "webhook_refusals", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_refusals_received_at", table_name="webhook_refusals")
    op.drop_index("ix_webhook_refusals_source_id", table_name="webhook_refusals")
    op.drop_table("webhook_refusals")
