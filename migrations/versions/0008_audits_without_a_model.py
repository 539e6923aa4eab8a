"""dataset audits run without a model: an audit's model URI and family may be null

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audits") as batch_op:
        batch_op.alter_column("model_uri", existing_type=sa.Text(), nullable=True)
        batch_op.alter_column(
            "model_family", existing_type=sa.Text(), nullable=True, existing_server_default=""
        )


def downgrade() -> None:
    # The older schema has no way to say "no model": a dataset audit keeps its rows and reads
    # as a model with an empty URI, which no loader opens.
    op.execute("UPDATE audits SET model_uri = '' WHERE model_uri IS NULL")
    op.execute("UPDATE audits SET model_family = '' WHERE model_family IS NULL")
    with op.batch_alter_table("audits") as batch_op:
        batch_op.alter_column("model_uri", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column(
            "model_family", existing_type=sa.Text(), nullable=False, existing_server_default=""
        )
