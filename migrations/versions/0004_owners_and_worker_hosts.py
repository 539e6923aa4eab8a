"""who uploaded each dataset; the hosts that run workers (a SQLite database serves one)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_by", sa.String(length=32), nullable=True))
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audits_created_by_status", ["created_by", "status"], unique=False
        )
    op.create_table(
        "worker_hosts",
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("hostname"),
    )


def downgrade() -> None:
    op.drop_table("worker_hosts")
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.drop_index("ix_audits_created_by_status")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("created_by")
