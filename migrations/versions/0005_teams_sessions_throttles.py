"""teams own keys, audits, datasets and policies; server-side browser sessions; sign-in
throttle windows; counts of refused events

Every existing row joins the team `default`, which is granted everything, so a 0.1 deployment
keeps working as one team. A dataset record becomes per team (two teams may store the same
bytes), and an idempotency key unique per team.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DEFAULT_TEAM = "default"
# Names for the unnamed unique constraints of 0001 (PostgreSQL's own, and batch-mode names on
# SQLite, where a table is rebuilt to change a constraint).
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _drop_unique(table: str, column: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(f"{table}_{column}_key", table, type_="unique")
        return
    with op.batch_alter_table(table, naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint(f"uq_{table}_{column}", type_="unique")


def _restore_unique(table: str, column: str) -> None:
    name = (
        f"{table}_{column}_key"
        if op.get_bind().dialect.name == "postgresql"
        else f"uq_{table}_{column}"
    )
    with op.batch_alter_table(table, naming_convention=NAMING) as batch_op:
        batch_op.create_unique_constraint(name, [column])


def _add_team(table: str) -> None:
    with op.batch_alter_table(table) as batch_op:
        batch_op.add_column(
            sa.Column(
                "team_id", sa.String(length=32), nullable=False, server_default=DEFAULT_TEAM
            )
        )
        batch_op.create_foreign_key(f"fk_{table}_team_id", "teams", ["team_id"], ["id"])


def upgrade() -> None:
    teams = op.create_table(
        "teams",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("model_folders", sa.JSON(), nullable=False),
        sa.Column("data_folders", sa.JSON(), nullable=False),
        sa.Column("mlflow_models", sa.JSON(), nullable=False),
        sa.Column("hf_repos", sa.JSON(), nullable=False),
        sa.Column("chat_endpoints", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.execute(
        teams.insert().values(
            id=DEFAULT_TEAM,
            name=DEFAULT_TEAM,
            model_folders=["*"],
            data_folders=["*"],
            mlflow_models=["*"],
            hf_repos=["*"],
            chat_endpoints=["*"],
            created_at=sa.func.now(),
        )
    )
    for table in ("api_keys", "datasets", "audit_policies", "audits"):
        _add_team(table)
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.create_index("ix_api_keys_team_id", ["team_id"], unique=False)
    _drop_unique("datasets", "sha256")
    with op.batch_alter_table("datasets") as batch_op:
        batch_op.create_unique_constraint("uq_datasets_team_sha256", ["team_id", "sha256"])
    _drop_unique("audits", "idempotency_key")
    with op.batch_alter_table("audits") as batch_op:
        batch_op.create_unique_constraint(
            "uq_audits_team_idempotency_key", ["team_id", "idempotency_key"]
        )
        batch_op.create_index("ix_audits_team_created", ["team_id", "created_at"], unique=False)
    op.create_table(
        "browser_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_browser_sessions_key_id", "browser_sessions", ["key_id"])
    op.create_index("ix_browser_sessions_expires_at", "browser_sessions", ["expires_at"])
    op.create_table(
        "throttle_windows",
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client", "window_start"),
    )
    op.create_table(
        "event_counts",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("event_counts")
    op.drop_table("throttle_windows")
    op.drop_index("ix_browser_sessions_expires_at", table_name="browser_sessions")
    op.drop_index("ix_browser_sessions_key_id", table_name="browser_sessions")
    op.drop_table("browser_sessions")
    with op.batch_alter_table("audits") as batch_op:
        batch_op.drop_index("ix_audits_team_created")
        batch_op.drop_constraint("uq_audits_team_idempotency_key", type_="unique")
    _restore_unique("audits", "idempotency_key")
    with op.batch_alter_table("datasets") as batch_op:
        batch_op.drop_constraint("uq_datasets_team_sha256", type_="unique")
    _restore_unique("datasets", "sha256")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_index("ix_api_keys_team_id")
    for table in ("audits", "audit_policies", "datasets", "api_keys"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_team_id", type_="foreignkey")
            batch_op.drop_column("team_id")
    op.drop_table("teams")
