"""the append-only audit log (issue #33 item 5)

Revision ID: 0014
Revises: 0013

Who created or cancelled audits and who changed policies, keys or teams. The database itself
refuses to change or remove an entry: a trigger aborts every UPDATE and DELETE (and, on
PostgreSQL, TRUNCATE), whoever connects. No foreign keys: nothing deleted elsewhere can cascade
into the log.

A later migration that rebuilds this table on SQLite (a batch operation copies the table and
drops the old one) must create the triggers again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLE = "audit_log"
REFUSAL = "audit_log is append-only"

POSTGRES_UP = [
    f"""
    CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{REFUSAL}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    f"""
    CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE PROCEDURE audit_log_refuse_change()
    """,
    f"""
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE PROCEDURE audit_log_refuse_change()
    """,
]
POSTGRES_DOWN = ["DROP FUNCTION IF EXISTS audit_log_refuse_change()"]  # after the table

SQLITE_UP = [
    f"""
    CREATE TRIGGER audit_log_no_{op_name.lower()} BEFORE {op_name} ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{REFUSAL}: {op_name} refused'); END
    """
    for op_name in ("UPDATE", "DELETE")
]


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("actor_id", sa.String(32), nullable=True),
        sa.Column("actor_name", sa.String(200), nullable=False),
        sa.Column("actor_kind", sa.String(32), nullable=False),
        sa.Column("actor_team_id", sa.String(32), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=True),
        sa.Column("client", sa.String(100), nullable=True),
    )
    op.create_index("ix_audit_log_created_at", TABLE, ["created_at"])
    op.create_index("ix_audit_log_actor", TABLE, ["actor_id", "id"])
    op.create_index("ix_audit_log_action", TABLE, ["action", "id"])
    op.create_index("ix_audit_log_target", TABLE, ["target_type", "target_id", "id"])
    dialect = op.get_bind().dialect.name
    triggers = {"postgresql": POSTGRES_UP, "sqlite": SQLITE_UP}
    if dialect not in triggers:  # a log anyone could rewrite is not an audit log
        raise NotImplementedError(f"no append-only trigger for {dialect}")
    for statement in triggers[dialect]:
        op.execute(statement)


def downgrade() -> None:
    # Dropping the table drops its triggers (DROP runs no row trigger on either database).
    op.drop_table(TABLE)
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_DOWN:
            op.execute(statement)
