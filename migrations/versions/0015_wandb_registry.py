"""the Weights & Biases registry: team grants over its artifacts (issue #33 item 6)

Revision ID: 0015
Revises: 0014
"""

from alembic import op  # noqa: F401

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
