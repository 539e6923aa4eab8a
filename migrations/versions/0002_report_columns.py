"""report columns: model family and version; indexed sort keys and token view per sample

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NO_VALUE = "-1e300"  # core.models.NO_VALUE: below every real score, so sort keys are never NULL
SORT_SLOTS = (1, 2, 3, 4)


def upgrade() -> None:
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_family", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("model_version", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("row_counts", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.create_index(batch_op.f("ix_audits_model_family"), ["model_family"], unique=False)
    # Audits written before families existed form a family of one URI each.
    op.execute("UPDATE audits SET model_family = model_uri WHERE model_family = ''")
    with op.batch_alter_table("sample_results", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("score", sa.Float(), nullable=False, server_default=sa.text(NO_VALUE))
        )
        batch_op.add_column(sa.Column("member", sa.Boolean(), nullable=True))
        for slot in SORT_SLOTS:
            batch_op.add_column(
                sa.Column(
                    f"sort_{slot}", sa.Float(), nullable=False, server_default=sa.text(NO_VALUE)
                )
            )
        batch_op.add_column(sa.Column("detail", sa.JSON(), nullable=True))
        batch_op.create_index(
            "ix_sample_results_score", ["audit_id", "check", "score", "sample_index"]
        )
        batch_op.create_index(
            "ix_sample_results_member_score",
            ["audit_id", "check", "member", "score", "sample_index"],
        )
        for slot in SORT_SLOTS:
            batch_op.create_index(
                f"ix_sample_results_sort_{slot}",
                ["audit_id", "check", f"sort_{slot}", "sample_index"],
            )
        batch_op.create_index(
            "ix_sample_results_search", ["audit_id", "check", "sample_id", "score", "sample_index"]
        )


def downgrade() -> None:
    with op.batch_alter_table("sample_results", schema=None) as batch_op:
        batch_op.drop_index("ix_sample_results_search")
        for slot in SORT_SLOTS:
            batch_op.drop_index(f"ix_sample_results_sort_{slot}")
            batch_op.drop_column(f"sort_{slot}")
        batch_op.drop_index("ix_sample_results_member_score")
        batch_op.drop_index("ix_sample_results_score")
        batch_op.drop_column("detail")
        batch_op.drop_column("member")
        batch_op.drop_column("score")
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audits_model_family"))
        batch_op.drop_column("model_version")
        batch_op.drop_column("row_counts")
        batch_op.drop_column("model_family")
