"""the Weights & Biases registry: team grants over its artifacts (issue #33 item 6)

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


DEFAULT_TEAM = "default"


def upgrade() -> None:
    # Teams an admin made are granted no W&B artifact until granted, as for a new team; the
    # default team, which 0005 granted every registry (a single-team service), gets this one.
    # A plain ADD COLUMN, even on SQLite: a batch copy of `teams` would drop the table that
    # keys, datasets and audits refer to.
    op.add_column(
        "teams", sa.Column("wandb_artifacts", sa.JSON(), nullable=False, server_default="[]")
    )
    teams = sa.table("teams", sa.column("id", sa.String), sa.column("wandb_artifacts", sa.JSON))
    op.execute(
        teams.update().where(teams.c.id == DEFAULT_TEAM).values(wandb_artifacts=["*"])
    )


def downgrade() -> None:
    op.drop_column("teams", "wandb_artifacts")  # SQLite >= 3.35 drops a column in place
