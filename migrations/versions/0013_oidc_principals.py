"""principals signed in through the identity provider (issue #33 item 5)

People who sign in through OIDC become api_keys rows of kind `user` (no usable key), found
again by `subject` (issuer and `sub`); a sign-in in progress keeps its PKCE verifier, state and
nonce in oidc_sign_ins until the identity provider sends the browser back (single use).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="key")
        )
        batch_op.add_column(sa.Column("subject", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        batch_op.create_index("ix_api_keys_subject", ["subject"], unique=True)
    op.create_table(
        "oidc_sign_ins",
        sa.Column("id_hash", sa.String(length=64), primary_key=True),
        sa.Column("state", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("next_path", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_oidc_sign_ins_expires_at", "oidc_sign_ins", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oidc_sign_ins_expires_at", table_name="oidc_sign_ins")
    op.drop_table("oidc_sign_ins")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_index("ix_api_keys_subject")
        batch_op.drop_column("email")
        batch_op.drop_column("subject")
        batch_op.drop_column("kind")
